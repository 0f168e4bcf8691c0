"""Train a toy scorer with aot_loss.unpaired and show first-order dominance before and after.

A small MLP scores "responses" (feature vectors). Its reward is the log-ratio against a
frozen copy of itself, r(x) = s_theta(x) - s_ref(x), as log pi - log pi_ref is for an LLM.
Chosen and rejected responses come from overlapping clouds, with different counts. AOT
(unpaired) pushes every quantile of the chosen rewards above the matching quantile of the
rejected rewards; the script prints held-out dominance diagnostics before and after.

    python examples/toy_scorer.py [--steps 300] [--loss logistic] [--beta 1.0] [--seed 0]
"""

from __future__ import annotations

import argparse
import copy

import numpy as np
import torch

import aot_loss


def make_task(n_pos: int, n_neg: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Chosen and rejected feature vectors; chosen lean along a hidden direction."""
    direction = torch.linspace(-1.0, 1.0, 8)
    x_pos = torch.randn(n_pos, 8, generator=generator) + 0.35 * direction
    x_neg = torch.randn(n_neg, 8, generator=generator) - 0.35 * direction
    return x_pos, x_neg


def dominance_report(r_pos: np.ndarray, r_neg: np.ndarray) -> dict[str, float]:
    """Violation area of FSD (share of t where Q_pos(t) < Q_neg(t)) and quantile gaps."""
    t = (np.arange(2000) + 0.5) / 2000
    gap = np.quantile(r_pos, t, method="inverted_cdf") - np.quantile(r_neg, t, method="inverted_cdf")
    return {
        "violation": float(np.mean(gap < 0)),
        "gap@10%": float(gap[200]),
        "gap@50%": float(gap[1000]),
        "gap@90%": float(gap[1800]),
        "P(r+ > r-)": float(np.mean(r_pos[:, None] > r_neg[None, :])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=300, help="optimiser steps (default 300)")
    parser.add_argument(
        "--loss", default="logistic", help="AOT cost: logistic, squared_hinge, least_squares, hinge"
    )
    parser.add_argument(
        "--beta", type=float, default=1.0, help="temperature (logistic) or margin (default 1.0)"
    )
    parser.add_argument(
        "--batch", type=int, default=64, help="chosen samples per step; rejected get 3/4 of it"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    policy = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
    reference = copy.deepcopy(policy).requires_grad_(False).eval()
    criterion = aot_loss.UnpairedAOTLoss(loss=args.loss, beta=args.beta)
    optimiser = torch.optim.Adam(policy.parameters(), lr=1e-2)
    train_pos, train_neg = make_task(4000, 3000, gen)
    test_pos, test_neg = make_task(2000, 1500, gen)

    def rewards(x: torch.Tensor) -> torch.Tensor:
        return (policy(x) - reference(x)).squeeze(-1)

    def report() -> dict[str, float]:
        with torch.no_grad():
            return dominance_report(rewards(test_pos).numpy(), rewards(test_neg).numpy())

    # With a frozen copy as reference every reward starts at exactly 0, so "before" is the
    # scorer's own ordering, which is what the reward starts from.
    with torch.no_grad():
        base = dominance_report(policy(test_pos).squeeze(-1).numpy(), policy(test_neg).squeeze(-1).numpy())
    for step in range(1, args.steps + 1):
        i = torch.randint(0, len(train_pos), (args.batch,), generator=gen)
        j = torch.randint(0, len(train_neg), (args.batch * 3 // 4,), generator=gen)  # unequal sizes
        loss = criterion(rewards(train_pos[i]), rewards(train_neg[j]))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % max(1, args.steps // 5) == 0 or step == args.steps:
            print(f"step {step:4d}/{args.steps}  AOT {args.loss} loss {loss.item():.4f}")
    after = report()

    print(f"\nheld-out dominance of chosen over rejected rewards ({len(test_pos)} vs {len(test_neg)})")
    print(f"{'metric':12s} {'initial scorer':>15s} {'after AOT':>10s}")
    for key in after:
        print(f"{key:12s} {base[key]:15.3f} {after[key]:10.3f}")


if __name__ == "__main__":
    main()
