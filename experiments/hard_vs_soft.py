"""Claim 8 (paper Table 7): hard and soft sorting train about equally well. And how far the
soft sort moves the values it couples, at the paper's strength 0.1 and stronger ones.

On the demo's task (`python -m aot_loss demo`: a GRU policy answers 4-token prompts with 8
tokens, a hidden rule picks the chosen answer), AOT paired and AOT unpaired train from the
same start with the same batches, once with `sort="hard"` and once with `sort="soft"` per
strength, for several seeds (each seed draws its own start model and data). Per run: the
demo's held-out metrics, and over training the share of steps at which the soft sort moved
any coupled value, and the mean |soft - hard| of the sorted values over their standard
deviation. Writes experiments/results/hard_vs_soft.json.

    python experiments/hard_vs_soft.py [--seeds 0 1 2] [--strengths 0.1 1 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch import Tensor

import aot_loss
from aot_loss import demo

RESULTS = Path(__file__).parent / "results" / "hard_vs_soft.json"
METRICS = ("task_score", "fsd_violation", "margin_violation", "reward_accuracy", "reward_margin_q50")


class Displacement:
    """Records, per call, how far the soft sort moves the sorted values of each sample."""

    def __init__(self, strength: float) -> None:
        self.strength, self.moved, self.relative = strength, [], []

    @torch.no_grad()
    def record(self, *samples: Tensor) -> None:
        for x in samples:
            hard = torch.sort(x.double()).values
            gap = (aot_loss.soft_sort(x.double(), strength=self.strength) - hard).abs()
            self.moved.append(float(gap.max() > 1e-9 * (1 + hard.abs().max())))
            self.relative.append((gap.mean() / hard.std().clamp_min(1e-12)).item())


def loss_fn(variant: str, soft: Displacement | None) -> demo.Loss:
    """AOT `variant`: hard sort for `soft=None`, else soft sort at `soft.strength`, recording
    how far it moves U and V."""

    def loss(pc: Tensor, pr: Tensor, rc: Tensor, rr: Tensor, beta: float) -> Tensor:
        u, v = (pc - pr, rc - rr) if variant == "paired" else (pc - rc, pr - rr)
        options: dict = {"beta": beta}
        if soft is not None:
            soft.record(u, v)
            options |= {"sort": "soft", "soft_strength": soft.strength}
        if variant == "paired":
            return aot_loss.paired(pc, pr, rc, rr, **options)
        return aot_loss.unpaired(u, v, **options)

    return loss


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--strengths", type=float, nargs="+", default=[0.1, 1.0, 10.0])
    parser.add_argument("--steps", type=int, default=300, help="the demo's default")
    args = parser.parse_args()
    task = argparse.Namespace(
        steps=args.steps, batch=64, pairs=4096, held_out=1024, beta=1.0, lr=1e-2, seed=0
    )
    runs: dict[str, list[dict]] = {}
    began = time.perf_counter()
    for seed in args.seeds:
        task.seed = seed
        start, train_pairs, held_out = demo.build_task(task)
        runs.setdefault("start model", []).append(
            {"seed": seed, "task_score": demo.task_score(start, held_out.prompts, seed)}
        )
        for variant in ("paired", "unpaired"):
            for strength in [None, *args.strengths]:  # None: the hard sort
                name = f"AOT {variant}, " + ("hard" if strength is None else f"soft {strength:g}")
                displacement = None if strength is None else Displacement(strength)
                fn = loss_fn(variant, displacement)
                policy = demo.train(start, train_pairs, name, fn, task, progress=False)
                row = demo.evaluate(policy, held_out, seed).row()
                if displacement is not None:
                    row["steps_moved"] = statistics.mean(displacement.moved)
                    row["relative_displacement"] = statistics.mean(displacement.relative)
                runs.setdefault(name, []).append({"seed": seed, **row})
                print(f"seed {seed} {name:28s} " + " ".join(f"{k} {row[k]:.4f}" for k in METRICS), flush=True)
    summary = {
        name: {
            key: (statistics.mean(r[key] for r in rows), statistics.pstdev(r[key] for r in rows))
            for key in rows[0]
            if key != "seed"
        }
        for name, rows in runs.items()
    }
    print(f"\nmean (sd) over seeds {args.seeds}, {time.perf_counter() - began:.0f} s:")
    keys = [*METRICS, "steps_moved", "relative_displacement"]
    print(f"{'run':28s}" + "".join(f"{k:>24s}" for k in keys))
    for name, row in summary.items():
        cells = [f"{row[k][0]:.4f} ({row[k][1]:.4f})" if k in row else "-" for k in keys]
        print(f"{name:28s}" + "".join(f"{c:>24s}" for c in cells))
    RESULTS.write_text(json.dumps({"args": vars(args), "summary": summary, "runs": runs}, indent=1) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
