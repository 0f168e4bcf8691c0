"""Claim 2 (paper Cor. 1 / Thm 3): the empirical OT violation converges at the parametric
rate n^-1/2.

U ~ Beta(3, 2) and V ~ Beta(2, 3) (U dominates V), n samples of each. The population value
OT_h(mu) = integral_0^1 h(Q_U(t) - Q_V(t)) dt comes from SciPy's exact quantile functions by
adaptive quadrature; the empirical one is aot_loss.unpaired on the samples (float64). For
each n, R replicates give the mean absolute error E|OT_h(mu_n) - OT_h(mu)| and the bias
|E OT_h(mu_n) - OT_h(mu)|. The log-log slope of each against n is fitted by least squares,
with a 95% bootstrap interval over replicates. Writes a figure to docs/img/.

    python experiments/rate.py [--replicates 400] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from scipy import integrate, stats

import aot_loss

ROOT = Path(__file__).resolve().parents[1]
SIZES = [16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384]
COSTS = {
    "logistic": (1.0, lambda d: np.logaddexp(0.0, -d)),
    "squared_hinge": (0.3, lambda d: np.maximum(0.3 - d, 0.0) ** 2),
}
U_DIST, V_DIST = stats.beta(3, 2), stats.beta(2, 3)


def population(h) -> float:
    value, _ = integrate.quad(
        lambda t: h(U_DIST.ppf(t) - V_DIST.ppf(t)), 0.0, 1.0, epsabs=1e-13, epsrel=1e-12, limit=200
    )
    return value


def slope(sizes: np.ndarray, errors: np.ndarray) -> float:
    return float(np.polyfit(np.log(sizes), np.log(errors), 1)[0])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--replicates", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bootstrap", type=int, default=2000)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    sizes = np.array(SIZES, dtype=float)
    results, curves = {}, {}
    for name, (beta, h) in COSTS.items():
        target = population(h)
        values = np.empty((len(SIZES), args.replicates))
        for i, n in enumerate(SIZES):
            u = torch.from_numpy(U_DIST.rvs(size=(args.replicates, n), random_state=rng))
            v = torch.from_numpy(V_DIST.rvs(size=(args.replicates, n), random_state=rng))
            values[i] = aot_loss.unpaired(u, v, loss=name, beta=beta, reduction="none").numpy()
        abs_err = np.abs(values - target).mean(1)
        bias = np.abs(values.mean(1) - target)
        boot_mae, boot_bias = [], []
        for _ in range(args.bootstrap):
            pick = rng.integers(0, args.replicates, args.replicates)
            boot_mae.append(slope(sizes, np.abs(values[:, pick] - target).mean(1)))
            boot_bias.append(slope(sizes, np.abs(values[:, pick].mean(1) - target)))
        results[name] = {
            "beta": beta,
            "population": target,
            "mean_abs_error": abs_err.tolist(),
            "bias": bias.tolist(),
            "slope_mean_abs_error": slope(sizes, abs_err),
            "slope_mean_abs_error_ci95": np.percentile(boot_mae, [2.5, 97.5]).tolist(),
            "slope_bias": slope(sizes, bias),
            "slope_bias_ci95": np.percentile(boot_bias, [2.5, 97.5]).tolist(),
        }
        curves[name] = (abs_err, bias)
        r = results[name]
        print(
            f"{name:14s} OT(mu) = {target:.6f}  slope of E|OT_n - OT| = {r['slope_mean_abs_error']:+.3f} "
            f"[{r['slope_mean_abs_error_ci95'][0]:+.3f}, {r['slope_mean_abs_error_ci95'][1]:+.3f}]  "
            f"slope of |E OT_n - OT| = {r['slope_bias']:+.3f} "
            f"[{r['slope_bias_ci95'][0]:+.3f}, {r['slope_bias_ci95'][1]:+.3f}]"
        )
    out = Path(__file__).parent / "results" / "rate.json"
    out.write_text(json.dumps({"args": vars(args), "sizes": SIZES, "results": results}, indent=2) + "\n")
    print(f"wrote {out}")
    _plot(sizes, curves, ROOT / "docs" / "img" / "repro_rate.png")


def _plot(sizes: np.ndarray, curves: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.subplots()
    for (name, (abs_err, bias)), color in zip(curves.items(), ("#1f77b4", "#d62728"), strict=True):
        ax.loglog(sizes, abs_err, "o-", color=color, label=f"{name}: E|OT_n − OT|")
        ax.loglog(sizes, bias, "s--", color=color, alpha=0.6, label=f"{name}: |E OT_n − OT|")
        ax.loglog(sizes, abs_err[0] * (sizes / sizes[0]) ** -0.5, ":", color="gray")
    ax.set_xlabel("n (samples of U and of V)")
    ax.set_ylabel("error of the empirical OT violation")
    ax.set_title("Convergence of the empirical violation (dotted: slope −1/2)")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3, which="both")
    fig.savefig(path, dpi=130)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
