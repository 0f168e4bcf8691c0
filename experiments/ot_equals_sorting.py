"""Claim 1 (paper Thm 1, eq. 10): for a convex cost h the sorted (quantile) coupling is an
optimal transport plan, so aot_loss's value equals the linear-programming optimum over all
couplings; for the non-convex 0/1 cost 1[d < 0] it is not.

Random problems with equal and unequal sizes, uniform and random weights. The optimum is
scipy.optimize.linprog over the transport polytope (no sorting anywhere); with n = m the
minimum over all n! permutations is a second oracle.

    python experiments/ot_equals_sorting.py [--trials 300] [--seed 0]
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import linprog

import aot_loss

COSTS = {  # name: (aot_loss loss, NumPy cost)
    "logistic (beta 1)": ("logistic", lambda d: np.logaddexp(0.0, -d)),
    "squared_hinge (beta 0.5)": ("squared_hinge", lambda d: np.maximum(0.5 - d, 0.0) ** 2),
    "least_squares (beta 0.5)": ("least_squares", lambda d: (0.5 - d) ** 2),
    "hinge (beta 0.5)": ("hinge", lambda d: np.maximum(0.5 - d, 0.0)),
    "0/1: 1[d < 0] (not convex)": (lambda d: (d < 0).to(d.dtype), lambda d: (d < 0).astype(float)),
}
BETA = {"logistic": 1.0}


def ot_linprog(u, v, a, b, h) -> float:
    n, m = len(u), len(v)
    cost = h(u[:, None] - v[None, :]).ravel()
    rows = np.kron(np.eye(n), np.ones(m))
    cols = np.kron(np.ones(n), np.eye(m))
    res = linprog(cost, A_eq=np.vstack([rows, cols]), b_eq=np.concatenate([a, b]), bounds=(0, None))
    return float(res.fun)


def ot_permutations(u, v, h) -> float:
    return min(float(np.mean(h(u - v[list(p)]))) for p in itertools.permutations(range(len(v))))


def sorted_value(u, v, a, b, loss) -> float:
    beta = BETA.get(loss, 0.5) if isinstance(loss, str) else 1.0
    kw = {} if a is None else {"pos_weights": torch.tensor(a), "neg_weights": torch.tensor(b)}
    return aot_loss.unpaired(torch.tensor(u), torch.tensor(v), loss=loss, beta=beta, **kw).item()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    cases = [
        ("n = m = 6, uniform", 6, 6, False),
        ("n = 7, m = 4, uniform", 7, 4, False),
        ("n = 5, m = 6, weighted", 5, 6, True),
    ]
    results = []
    for label, n, m, weighted in cases:
        for name, (loss, h) in COSTS.items():
            gaps, perm_gaps = [], []
            for _ in range(args.trials):
                u, v = rng.normal(0, 1, n), rng.normal(0.2, 1, m)
                a = rng.random(n) + 0.05 if weighted else np.ones(n)
                b = rng.random(m) + 0.05 if weighted else np.ones(m)
                a, b = a / a.sum(), b / b.sum()
                value = sorted_value(u, v, a if weighted else None, b if weighted else None, loss)
                gaps.append(value - ot_linprog(u, v, a, b, h))
                if n == m and not weighted and len(perm_gaps) < 50:  # n! = 720 couplings each
                    perm_gaps.append(value - ot_permutations(u, v, h))
            gaps_arr = np.array(gaps)
            row = {
                "case": label,
                "cost": name,
                "trials": args.trials,
                "max_abs_gap": float(np.abs(gaps_arr).max()),
                "share_sorted_above_optimum": float(np.mean(gaps_arr > 1e-7)),
                "max_excess": float(gaps_arr.max()),
                "max_abs_gap_vs_permutations": float(np.abs(perm_gaps).max()) if perm_gaps else None,
            }
            results.append(row)
            perms = (
                "" if not perm_gaps else f"  permutations: max |gap| {row['max_abs_gap_vs_permutations']:.1e}"
            )
            print(
                f"{label:24s} {name:28s} max |sorted - LP| {row['max_abs_gap']:.1e}  "
                f"sorted > optimum in {100 * row['share_sorted_above_optimum']:5.1f}% of trials{perms}"
            )
    out = Path(__file__).parent / "results" / "ot_equals_sorting.json"
    out.write_text(json.dumps({"args": vars(args), "results": results}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
