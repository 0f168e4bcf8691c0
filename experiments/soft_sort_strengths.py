"""The soft sort against the hard sort for a few strengths, on 64 summed log-ratio rewards
(a normal of scale 30 nats with a heavy right tail, the spread of Figure 1b's margins).
Writes docs/img/soft_sort_strengths.png (run by hand; needs matplotlib).

    python experiments/soft_sort_strengths.py
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

import aot_loss

ROOT = Path(__file__).resolve().parents[1]
STRENGTHS = (1.0, 0.1, 0.03, 0.01)


def main() -> None:
    g = torch.Generator().manual_seed(0)
    rewards = torch.randn(64, generator=g, dtype=torch.float64) * 30
    rewards[-4:] = torch.tensor([150.0, 220.0, 400.0, 700.0], dtype=torch.float64)  # a tail of outliers
    hard = torch.sort(rewards).values
    fig, ax = plt.subplots(figsize=(7.0, 4.2), dpi=130)
    ax.plot(hard, hard, color="black", lw=1.2, label="hard sort")
    for strength in STRENGTHS:
        soft = aot_loss.soft_sort(rewards, strength=strength)
        label = f"strength {strength:g} (spacing {1 / strength:.3g})"
        ax.plot(hard, soft, marker="o", ms=2.5, lw=0.8, label=label)
    ax.set_xlabel("hard-sorted reward (nats)")
    ax.set_ylabel("soft-sorted reward (nats)")
    ax.set_title("L2 soft sort of 64 rewards: gaps wider than 1/strength are pooled")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = ROOT / "docs" / "img" / "soft_sort_strengths.png"
    fig.savefig(path)
    for strength in STRENGTHS:
        soft = aot_loss.soft_sort(rewards, strength=strength)
        print(
            f"strength {strength:5g}: max |soft - hard| = {(soft - hard).abs().max():7.2f} nats, "
            f"top value {soft[-1]:7.2f} (hard {hard[-1]:.0f})"
        )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
