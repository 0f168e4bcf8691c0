"""Peak memory and step time of an AOT step on a small random Llama: full logits against
``chunk_size`` (the LM head on completion tokens only, chunk by chunk, checkpointed), same run.

A paired step (``aot_loss.llm.paired_loss``, reference a frozen copy) on 16 sequences (8 pairs)
of 512 tokens, half prompt and half completion, vocabulary 32k, float32 on CPU. Each mode runs
in a fresh process, with glibc told to return large freed blocks to the OS. Its peak memory is
the process's peak resident set over the resident set before the measured steps (model,
reference, gradients and the inputs), i.e. what a step adds at its peak. Time is the median
of the steps after one warm-up.

Goals (issue #5): chunked peak memory <= 0.35x naive, step time <= 1.2x naive. The two-pass
path (``micro_batch_size=4`` on top: the decoder's activations of 4 sequences at a time, a
second forward pass) is reported for information.

    python benchmarks/bench_llm.py            # full run, appends to benchmarks/results/
    python benchmarks/bench_llm.py --quick    # smoke run (CI): batch 4, 128 tokens, vocab 8k
"""

from __future__ import annotations

import json

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

MEMORY_GOAL, TIME_GOAL = 0.35, 1.2


def run_mode(
    chunk_size: int | None, micro_batch_size: int | None, batch: int, seq: int, vocab: int, steps: int
) -> dict[str, float]:
    """One mode in this process: step times and the peak memory growth of the steps."""
    from aot_loss.llm import PolicyWithReference, paired_loss

    policy = small_llama(vocab, seq)
    model = PolicyWithReference(policy, chunk_size=chunk_size)
    pairs = batch // 2
    chosen, rejected = halves(preference_batch(pairs, seq, vocab), pairs)
    optimizer = torch.optim.SGD(policy.parameters(), lr=1e-4)

    def step() -> None:
        out = paired_loss(model, chosen, rejected, beta=0.1, micro_batch_size=micro_batch_size)
        optimizer.zero_grad(set_to_none=False)  # gradients stay allocated: not part of the peak
        out.loss.backward()
        optimizer.step()

    return step_growth(step, steps)


def main() -> None:
    parser = bench_parser(__doc__, "batch 4, 128 tokens, vocab 8k, 1 step (smoke test)")
    parser.add_argument("--mode", help="internal: run one mode in this process and print JSON")
    args = parser.parse_args()
    shape = {"batch": 4, "seq": 128, "vocab": 8000, "steps": 1} if args.quick else {
        "batch": 16, "seq": 512, "vocab": 32000, "steps": 3,
    }  # fmt: skip
    if args.mode is not None:  # a child process: "naive" or "<chunk_size>:<micro_batch_size or 0>"
        chunk, micro = (None, None) if args.mode == "naive" else map(int, args.mode.split(":"))
        print(json.dumps(run_mode(chunk, micro or None, **shape)))
        return
    modes = {
        "naive": "naive",
        "chunked (chunk_size=1024)": "1024:0",
        "two-pass (+ micro_batch_size=4)": "1024:4",
    }
    results = {}
    for name, mode in modes.items():
        results[name] = in_fresh_process(__file__, "--mode", mode, args.quick)
    naive, chunked = results["naive"], results["chunked (chunk_size=1024)"]
    memory_ratio = chunked["peak_bytes"] / naive["peak_bytes"]
    time_ratio = chunked["step_s"] / naive["step_s"]
    two_pass = results["two-pass (+ micro_batch_size=4)"]
    rows = [{"case": name, **shape, **r} for name, r in results.items()]
    path = append_results("llm", rows, results_dir(args))
    print(f"paired AOT step, small Llama, {shape}, threads={torch.get_num_threads()}")
    for name, r in results.items():
        print(
            f"  {name:28s} step {fmt_time(r['step_s']):>9s}   peak growth {r['peak_bytes'] / 2**20:8.0f} MiB"
        )
    for what, ratio, goal in (("memory", memory_ratio, MEMORY_GOAL), ("time", time_ratio, TIME_GOAL)):
        # the goals are for the full shape; a quick run's logits are too small to judge them
        verdict = "not judged at --quick" if args.quick else f"{'ok' if ratio <= goal else 'MISS'} <= {goal}"
        print(f"  {what:6s} chunked/naive {ratio:.3f}  [{verdict}]")
    print(
        f"  two-pass: memory {two_pass['peak_bytes'] / naive['peak_bytes']:.3f}x naive, "
        f"time {two_pass['step_s'] / naive['step_s']:.3f}x naive (for information)"
    )
    print(f"appended {len(rows)} rows to {path}")


if __name__ == "__main__":
    main()
