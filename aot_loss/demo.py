"""The demo: AOT unpaired, AOT paired and DPO on a small preference task, side by side.

`python -m aot_loss demo` builds a task in which a tiny autoregressive language model (a
GRU over 16 tokens) answers a prompt of 4 tokens with 8 tokens, and a hidden rule scores an
answer by the share of its tokens that occur in the prompt. The start model (also the frozen
reference) samples two answers per prompt; the better-scored one is chosen. From the same
start, with the same batches, it trains one policy per method, then reports on held-out
pairs how far the rewards log pi/pi_ref of chosen answers are from dominating those of
rejected ones (the paper's claim is that AOT closes that gap at every quantile), the
quantiles of the reward margins, the reward accuracy, and the rule's score of answers that
each policy samples. It writes the paper's Figure 1 views as PNGs (with matplotlib) and the
table as JSON.

Everything goes through the public API: aot_loss.unpaired, aot_loss.paired, aot_loss.metrics
and aot_loss.plot.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import metrics
from ._optional import install_command
from .functional import paired, unpaired

VOCAB, PROMPT_LEN, ANSWER_LEN, SEP = 16, 4, 8, 0  # token 0 separates prompt and answer


@dataclass(frozen=True)
class Pairs:
    """Prompts with a chosen and a rejected answer, and the reference's log-probs of both."""

    prompts: Tensor  # (N, PROMPT_LEN) tokens in 1..VOCAB-1
    chosen: Tensor  # (N, ANSWER_LEN)
    rejected: Tensor  # (N, ANSWER_LEN)
    ref_chosen: Tensor  # (N,) log pi_ref(chosen | prompt)
    ref_rejected: Tensor  # (N,)


class TinyLM(nn.Module):
    """An embedding, a GRU and a linear head: next-token logits over the vocabulary."""

    def __init__(self, dim: int = 64) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, dim)
        self.rnn = nn.GRU(dim, dim, batch_first=True)
        self.head = nn.Linear(dim, VOCAB)

    def forward(self, tokens: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        hidden, state = self.rnn(self.embed(tokens), state)
        return self.head(hidden), state


def answer_logps(model: TinyLM, prompts: Tensor, answers: Tensor) -> Tensor:
    """Summed log-probabilities of the answer tokens given prompt and separator: (N,)."""
    tokens = torch.cat([prompts, torch.full_like(prompts[:, :1], SEP), answers], dim=1)
    logits, _ = model(tokens[:, :-1])
    logps = F.log_softmax(logits[:, -ANSWER_LEN:], dim=-1)
    return logps.gather(-1, answers.unsqueeze(-1)).squeeze(-1).sum(-1)


@torch.no_grad()
def sample_answers(model: TinyLM, prompts: Tensor, generator: torch.Generator) -> Tensor:
    """Ancestral sampling of ANSWER_LEN tokens per prompt: (N, ANSWER_LEN)."""
    prefix = torch.cat([prompts, torch.full_like(prompts[:, :1], SEP)], dim=1)
    logits, state = model(prefix)
    tokens = []
    for _ in range(ANSWER_LEN):
        token = torch.multinomial(F.softmax(logits[:, -1], dim=-1), 1, generator=generator)
        tokens.append(token)
        logits, state = model(token, state)
    return torch.cat(tokens, dim=1)


def score(prompts: Tensor, answers: Tensor) -> Tensor:
    """The hidden rule: the share of answer tokens that occur in the prompt, in [0, 1]."""
    return (answers.unsqueeze(-1) == prompts.unsqueeze(1)).any(-1).double().mean(-1)


def make_pairs(reference: TinyLM, n: int, generator: torch.Generator) -> Pairs:
    """n prompts with two sampled answers each whose scores differ; the higher is chosen."""
    prompts: list[Tensor] = []
    first: list[Tensor] = []
    second: list[Tensor] = []
    while sum(len(p) for p in prompts) < n:
        batch = torch.randint(1, VOCAB, (2 * n, PROMPT_LEN), generator=generator)
        a, b = sample_answers(reference, batch, generator), sample_answers(reference, batch, generator)
        keep = score(batch, a) != score(batch, b)
        prompts.append(batch[keep])
        first.append(a[keep])
        second.append(b[keep])
    p, a, b = (torch.cat(x)[:n] for x in (prompts, first, second))
    a_wins = (score(p, a) > score(p, b)).unsqueeze(-1)
    chosen, rejected = torch.where(a_wins, a, b), torch.where(a_wins, b, a)
    with torch.no_grad():
        ref_chosen, ref_rejected = answer_logps(reference, p, chosen), answer_logps(reference, p, rejected)
    return Pairs(p, chosen, rejected, ref_chosen, ref_rejected)


Loss = Callable[[Tensor, Tensor, Tensor, Tensor, float], Tensor]  # (pc, pr, rc, rr, beta)


def _dpo(pc: Tensor, pr: Tensor, rc: Tensor, rr: Tensor, beta: float) -> Tensor:
    """DPO (TRL's "sigmoid" loss): -log sigmoid(beta ((pc - rc) - (pr - rr))), averaged."""
    return F.softplus(-beta * ((pc - rc) - (pr - rr))).mean()


LOSSES: dict[str, Loss] = {
    "AOT unpaired": lambda pc, pr, rc, rr, beta: unpaired(pc - rc, pr - rr, beta=beta),
    "AOT paired": lambda pc, pr, rc, rr, beta: paired(pc, pr, rc, rr, beta=beta),
    "DPO": _dpo,
}


def train(
    start: TinyLM, data: Pairs, name: str, loss_fn: Loss, args: argparse.Namespace, progress: bool
) -> TinyLM:
    """Fine-tune a copy of ``start`` with ``loss_fn(pc, pr, rc, rr, beta)`` (``name`` labels
    the progress bar); the batches depend on the seed only."""
    policy = copy.deepcopy(start).train()
    optimiser = torch.optim.Adam(policy.parameters(), lr=args.lr)
    order = torch.Generator().manual_seed(args.seed + 1)
    for _ in _progress(range(args.steps), f"{name:>12s}", enabled=progress):
        idx = torch.randint(0, len(data.prompts), (args.batch,), generator=order)
        prompts = data.prompts[idx]
        pc = answer_logps(policy, prompts, data.chosen[idx])
        pr = answer_logps(policy, prompts, data.rejected[idx])
        loss = loss_fn(pc, pr, data.ref_chosen[idx], data.ref_rejected[idx], args.beta)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    return policy.eval()


@dataclass(frozen=True)
class Evaluation:
    """Held-out rewards and margins of one policy, and the rule's score of its samples."""

    r_chosen: Tensor
    r_rejected: Tensor
    margins: Tensor  # log pi(chosen) - log pi(rejected), per pair
    ref_margins: Tensor
    task_scores: Tensor  # the rule's score of the policy's sampled answer, per held-out prompt

    def row(self) -> dict[str, float]:
        """The table's columns."""
        gap = self.r_chosen - self.r_rejected
        q10, q50, q90 = torch.quantile(gap, torch.tensor([0.1, 0.5, 0.9], dtype=gap.dtype)).tolist()
        return {
            "fsd_violation": metrics.fsd_violation(self.r_chosen, self.r_rejected).item(),
            "ssd_violation": metrics.ssd_violation(self.r_chosen, self.r_rejected).item(),
            "violation_ratio": metrics.fsd_violation_ratio(self.r_chosen, self.r_rejected).item(),
            "margin_violation": metrics.fsd_violation(self.margins, self.ref_margins).item(),
            "reward_margin_q10": q10,
            "reward_margin_q50": q50,
            "reward_margin_q90": q90,
            "reward_accuracy": (gap > 0).double().mean().item(),
            "task_score": self.task_scores.mean().item(),
        }


@torch.no_grad()
def evaluate(policy: TinyLM, held_out: Pairs, seed: int) -> Evaluation:
    pc = answer_logps(policy, held_out.prompts, held_out.chosen)
    pr = answer_logps(policy, held_out.prompts, held_out.rejected)
    return Evaluation(
        r_chosen=pc - held_out.ref_chosen,
        r_rejected=pr - held_out.ref_rejected,
        margins=pc - pr,
        ref_margins=held_out.ref_chosen - held_out.ref_rejected,
        task_scores=task_scores(policy, held_out.prompts, seed),
    )


def task_scores(policy: TinyLM, prompts: Tensor, seed: int) -> Tensor:
    """The hidden rule's score of an answer the policy samples for each of ``prompts``."""
    samples = sample_answers(policy, prompts, torch.Generator().manual_seed(seed + 2))
    return score(prompts, samples)


COLUMNS = (
    ("fsd_violation", "FSD viol."),
    ("ssd_violation", "SSD viol."),
    ("violation_ratio", "viol. ratio"),
    ("margin_violation", "margin viol."),
    ("reward_margin_q10", "margin q10"),
    ("reward_margin_q50", "q50"),
    ("reward_margin_q90", "q90"),
    ("reward_accuracy", "reward acc."),
    ("task_score", "task score"),
)


def format_table(rows: dict[str, dict[str, float]]) -> str:
    """A fixed-width table, one line per method; missing values print as '-'."""
    widths = [max(len(title), 7) for _, title in COLUMNS]
    lines = ["method        " + "  ".join(t.rjust(w) for (_, t), w in zip(COLUMNS, widths, strict=True))]
    for name, row in rows.items():
        cells = [f"{row[key]:.3f}" if key in row else "-" for key, _ in COLUMNS]
        lines.append(f"{name:<14s}" + "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True)))
    return "\n".join(lines)


def build_task(args: argparse.Namespace) -> tuple[TinyLM, Pairs, Pairs]:
    """The start model (also the reference), and training and held-out pairs sampled from it,
    all from ``args.seed``."""
    torch.manual_seed(args.seed)
    start = TinyLM().eval()
    data_gen = torch.Generator().manual_seed(args.seed)
    return start, make_pairs(start, args.pairs, data_gen), make_pairs(start, args.held_out, data_gen)


def run(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Build the task, train every method, print the table and what it shows, write the plots
    and JSON. Runs on ``args.threads`` intra-op threads (restored afterwards)."""
    began = time.perf_counter()
    progress = not args.no_progress
    threads_before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        print(
            f"building the task: {args.pairs} training and {args.held_out} held-out pairs, "
            f"{_threads_note(args.threads)}",
            flush=True,
        )
        start, train_pairs, held_out = build_task(args)
        policies = {name: train(start, train_pairs, name, fn, args, progress) for name, fn in LOSSES.items()}
        evaluations = {name: evaluate(policy, held_out, args.seed) for name, policy in policies.items()}
        reference_scores = task_scores(start, held_out.prompts, args.seed)
    finally:
        torch.set_num_threads(threads_before)
    rows = {"reference": {"task_score": reference_scores.mean().item()}}
    rows |= {n: e.row() for n, e in evaluations.items()}

    print(f"\nheld-out metrics ({args.held_out} pairs; rewards are log pi/pi_ref, beta={args.beta}):")
    print(format_table(rows))
    print(
        "FSD viol.: share of quantile levels where chosen rewards fall below rejected ones (0 is "
        "dominance);\nSSD viol.: the same for their lower-tail means (second order, implied by "
        "the first);\nviol. ratio: the FSD violation's area over the total area; margin viol.: the "
        "same for the policy's\nmargins against the reference's; margin q10/q50/q90: quantiles of "
        "r_chosen - r_rejected per pair;\ntask score: the hidden rule's score of answers sampled "
        "from each policy."
    )
    args.out.mkdir(parents=True, exist_ok=True)
    written = [args.out / "metrics.json"]
    written[0].write_text(json.dumps({"args": _jsonable(args), "rows": rows}, indent=2) + "\n")
    written.append(_write_scores(reference_scores, evaluations, args.out / "scores"))
    if importlib.util.find_spec("matplotlib") is None:
        print(f"matplotlib is not installed: no plots ({install_command('matplotlib')})")
    else:
        written += _plots(evaluations, args.out)
    print(f"wrote {', '.join(str(p) for p in written)} in {time.perf_counter() - began:.0f} s")
    print("\n" + "\n".join(textwrap.fill(line, 110) for line in reading(rows)))
    print(f"Beyond noise? python -m aot_loss compare {args.out / 'scores'}/*.jsonl --field task_score")
    return rows


def _threads_note(threads: int) -> str:
    if threads == 1:
        return "on 1 CPU thread, all a model this small needs"
    return f"on {threads} CPU threads"


def reading(rows: dict[str, dict[str, float]]) -> list[str]:
    """Two or three sentences that read the table: whether the methods reach dominance in the
    unpaired view, how they compare in the paired view, and why AOT unpaired lags there when
    it does."""
    methods = {name: row for name, row in rows.items() if "fsd_violation" in row}
    worst = max(methods, key=lambda name: methods[name]["fsd_violation"])
    if methods[worst]["fsd_violation"] <= 0.01:
        worst_fsd = methods[worst]["fsd_violation"]
        lines = [
            "Reading: every method's chosen rewards dominate its rejected ones "
            f"(FSD violation <= {worst_fsd:.3f})."
        ]
    else:
        others = ", ".join(f"{n} {r['fsd_violation']:.0%}" for n, r in methods.items() if n != worst)
        lines = [
            f"Reading: {worst}'s chosen rewards fall below its rejected ones at "
            f"{methods[worst]['fsd_violation']:.0%} of the quantile levels ({others})."
        ]
    lagging = max(methods, key=lambda name: methods[name]["margin_violation"])
    others = ", ".join(f"{n} {r['margin_violation']:.0%}" for n, r in methods.items() if n != lagging)
    lines.append(
        f"Paired view: {lagging} keeps {methods[lagging]['margin_violation']:.0%} of its margin quantiles "
        f"below the reference's ({others})."
    )
    unpaired_row, paired_row = methods.get("AOT unpaired"), methods.get("AOT paired")
    lag = unpaired_row and paired_row and unpaired_row["margin_violation"] - paired_row["margin_violation"]
    if lag and lag > 0.05:
        lines.append(
            "Why: AOT unpaired matches chosen to rejected rewards by rank, not by prompt; "
            "it ignores the pairs."
        )
    return lines


def _plots(evaluations: dict[str, Evaluation], out: Path) -> list[Path]:
    from .plot import margin_quantiles, reward_quantiles

    paths = [out / "reward_quantiles.png", out / "margin_quantiles.png"]
    reward_quantiles(
        {name: (e.r_chosen, e.r_rejected) for name, e in evaluations.items()},
        title="(a) held-out rewards log π/π_ref: chosen vs rejected",
        path=paths[0],
    )
    margin_quantiles(
        {name: (e.margins, e.ref_margins) for name, e in evaluations.items()},
        title="(b) held-out margins log π(y+) − log π(y−): policy vs reference",
        path=paths[1],
    )
    return paths


def _write_scores(reference: Tensor, evaluations: dict[str, Evaluation], folder: Path) -> Path:
    """One .jsonl per policy (and the reference), one line per held-out prompt: the rule's
    score of its sampled answer and, for the trained policies, the rewards of the held-out
    pair, for ``python -m aot_loss compare``. Returns the files' pattern."""
    folder.mkdir(parents=True, exist_ok=True)
    columns = {"reference": {"task_score": reference}} | {
        name: {"task_score": e.task_scores, "reward_chosen": e.r_chosen, "reward_rejected": e.r_rejected}
        for name, e in evaluations.items()
    }
    for name, fields in columns.items():
        values = {key: tensor.tolist() for key, tensor in fields.items()}
        lines = (
            json.dumps({"prompt": i} | {key: v[i] for key, v in values.items()})
            for i in range(len(reference))
        )
        (folder / f"{name.lower().replace(' ', '_')}.jsonl").write_text("\n".join(lines) + "\n")
    return folder / "*.jsonl"


def _jsonable(args: argparse.Namespace) -> dict[str, object]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}


def _progress(items: range, label: str, enabled: bool) -> Iterator[int]:
    """A one-line progress bar on stderr (redrawn in place on a terminal)."""
    total, tty = len(items), sys.stderr.isatty()
    began = time.perf_counter()
    for done, item in enumerate(items, 1):
        yield item
        if enabled and (tty or done == total):
            filled = 30 * done // total
            rate = done / max(time.perf_counter() - began, 1e-9)
            bar = f"{label} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total} steps, {rate:.0f} it/s"
            sys.stderr.write(("\r" if tty else "") + bar + ("\n" if done == total else ""))
            sys.stderr.flush()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's options (``python -m aot_loss demo``)."""
    parser.add_argument("--steps", type=int, default=300, help="optimiser steps per method (default 300)")
    parser.add_argument("--batch", type=int, default=64, help="pairs per step (default 64)")
    parser.add_argument("--pairs", type=int, default=4096, help="training pairs (default 4096)")
    parser.add_argument("--held-out", type=int, default=1024, help="held-out pairs (default 1024)")
    parser.add_argument(
        "--beta", type=float, default=1.0, help="the same beta for every method (default 1.0)"
    )
    parser.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate (default 1e-2)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the model, the data and the batches")
    parser.add_argument(
        "--out", type=Path, default=Path("aot_demo"), help="where the plots and metrics.json go (./aot_demo)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a reduced run for smoke tests (120 steps, 1024/256 pairs)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: the tiny model gains nothing from more)",
    )


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """Apply ``--quick`` and reject sizes below 1 and non-positive rates (exits with 2)."""
    if args.quick:
        args.steps, args.pairs, args.held_out = 120, 1024, 256
    for name in ("steps", "batch", "pairs", "held_out", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not (args.beta > 0 and args.lr > 0):
        parser.error(f"--beta and --lr must be > 0, got {args.beta} and {args.lr}")
    return args
