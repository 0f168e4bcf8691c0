"""One training step (forward and backward) of AOTDPOTrainer, with and without ``chunk_size``,
against TRL's DPOTrainer with the same loss type, on the same model and batch: step time and
peak memory as ratios, same run.

A small random Llama (vocabulary 32k, 2 layers, hidden 128), a batch of 8 pairs (16 sequences)
of 512 tokens, half prompt and half completion, float32 on CPU; the reference a frozen copy.
Both trainers run TRL's forward passes. Off Triton devices TRL's fused LM head scores every
position, prompt and padding included, in tiles of 4096 tokens by 32768 vocabulary entries;
AOTDPOTrainer with ``chunk_size=1024`` scores the completion positions only, 1024 at a time,
with TRL's own kernel. For scale, aot-loss's own loop (``aot_loss.llm.paired_loss`` with
``chunk_size=1024``, no trainer) is timed on the same batch. Each provider runs in a fresh
process; its peak memory is the process's peak resident set over the resident set before the
measured steps, and its time the median of the steps after one warm-up.

Goals (issue #29): AOTDPOTrainer's step time <= 1.1x TRL's, with and without chunk_size; with
chunk_size, its peak memory <= 0.5x TRL's.

    python benchmarks/bench_trl.py            # full run, appends to benchmarks/results/
    python benchmarks/bench_trl.py --quick    # smoke run (CI): 4 sequences of 128 tokens, vocab 8k
"""

from __future__ import annotations

import json
import tempfile

import torch
from _harness import (
    append_results,
    bench_parser,
    fmt_time,
    halves,
    in_fresh_process,
    preference_batch,
    results_dir,
    small_llama,
    step_growth,
)

TIME_GOAL, MEMORY_GOAL = 1.1, 0.5
CHUNK_SIZE = 1024
PROVIDERS = ("trl_dpo_aot", "aot_dpo_trainer", "aot_dpo_trainer_chunked", "aot_loss_loop")
# Each judged provider's goals, as ratios to TRL's step: field of the result -> bound.
GOALS = {
    "aot_dpo_trainer": {"step_s": TIME_GOAL},
    "aot_dpo_trainer_chunked": {"step_s": TIME_GOAL, "peak_bytes": MEMORY_GOAL},
}


def run_provider(provider: str, pairs: int, seq: int, vocab: int, steps: int) -> dict[str, float]:
    """One provider in this process: step times and the peak memory growth of the steps."""
    import copy

    import datasets
    import tokenizers
    import transformers
    import trl

    from aot_loss.llm import PolicyWithReference, paired_loss
    from aot_loss.llm.trl import AOTDPOTrainer

    policy = small_llama(vocab, seq)
    reference = copy.deepcopy(policy).eval()
    batch = preference_batch(pairs, seq, vocab)
    if provider == "aot_loss_loop":
        model = PolicyWithReference(policy, reference=reference, chunk_size=CHUNK_SIZE)
        chosen, rejected = halves(batch, pairs)

        def step() -> None:
            paired_loss(model, chosen, rejected, beta=0.1).loss.backward()

    else:
        # The trainer's own data only builds it; the step runs on the synthetic batch above.
        words = {"<pad>": 0, "<unk>": 1, "</s>": 2, "a": 3, "b": 4}
        backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(words, unk_token="<unk>"))
        backend.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
        tokenizer = transformers.PreTrainedTokenizerFast(
            tokenizer_object=backend, eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
        )
        rows = [{"prompt": "a", "chosen": " b", "rejected": " a"}] * 2
        cls = trl.DPOTrainer if provider == "trl_dpo_aot" else AOTDPOTrainer
        chunking = {"chunk_size": CHUNK_SIZE} if provider == "aot_dpo_trainer_chunked" else {}
        trainer = cls(
            model=policy, ref_model=reference, processing_class=tokenizer,
            train_dataset=datasets.Dataset.from_list(rows),
            args=trl.DPOConfig(
                output_dir=tempfile.mkdtemp(), loss_type="aot", beta=0.1, use_cpu=True, bf16=False,
                report_to=[], save_strategy="no", disable_tqdm=True, per_device_train_batch_size=pairs,
            ),
            **chunking,
        )  # fmt: skip
        trainer.model.train()
        trainer.current_gradient_accumulation_steps = 1  # set by train(), read by training_step

        def step() -> None:
            trainer.training_step(trainer.model, batch)

    return step_growth(step, steps)


def main() -> None:
    parser = bench_parser(__doc__, "4 sequences of 128 tokens, vocab 8k, 1 step (smoke test)")
    parser.add_argument("--provider", help="internal: run one provider in this process and print JSON")
    args = parser.parse_args()
    shape = {"pairs": 2, "seq": 128, "vocab": 8000, "steps": 1} if args.quick else {
        "pairs": 8, "seq": 512, "vocab": 32000, "steps": 3,
    }  # fmt: skip
    if args.provider is not None:
        print(json.dumps(run_provider(args.provider, **shape)))
        return
    results = {}
    for provider in PROVIDERS:
        results[provider] = in_fresh_process(__file__, "--provider", provider, args.quick)
    trl_step = results["trl_dpo_aot"]
    rows = [{"case": "dpo_aot_step", "provider": name, **shape, **r} for name, r in results.items()]
    path = append_results("trl", rows, results_dir(args))
    threads = torch.get_num_threads()
    print(f"one paired AOT training step (forward and backward), small Llama, {shape}, threads={threads}")
    for name, r in results.items():
        time_ratio, memory_ratio = r["step_s"] / trl_step["step_s"], r["peak_bytes"] / trl_step["peak_bytes"]
        print(
            f"  {name:24s} step {fmt_time(r['step_s']):>9s} ({time_ratio:5.2f}x TRL)   peak growth "
            f"{r['peak_bytes'] / 2**20:7.0f} MiB ({memory_ratio:5.2f}x TRL)"
        )
    for name, goals in GOALS.items():
        for field, goal in goals.items():
            ratio = results[name][field] / trl_step[field]
            met = "ok" if ratio <= goal else "MISS"
            verdict = "not judged at --quick" if args.quick else f"{met} <= {goal}"
            what = "step time" if field == "step_s" else "peak memory"
            print(f"  {name} / DPOTrainer {what} {ratio:.3f}  [{verdict}]")
    print(f"appended {len(rows)} rows to {path}")


if __name__ == "__main__":
    main()
