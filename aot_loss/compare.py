"""python -m aot_loss compare: do one model's scores dominate another's, beyond noise?

Reads each model's per-sample scores (rewards, judge scores) from a file, prints each model's
size, mean and 10/50/90 % quantiles, every pair's violation ratio epsilon and its upper
confidence bound (the almost stochastic order test of ``aot_loss.stats``, Bonferroni over all
pairs), and the ranking. Files: .jsonl (a numeric field of each JSON object), .csv (a
column), .npy (a 1-D array) or .txt (one number per line); a model is named by its file's
stem, or ``name=path``.

    python -m aot_loss compare aot_demo/scores/*.jsonl --field task_score
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from . import stats
from ._optional import install_command


class ScoreFileError(ValueError):
    """A file that cannot be read as scores; the message names the file and the line."""


def read_scores(path: Path, field: str) -> np.ndarray:
    """The float64 scores in ``path`` (see the module's docstring for the formats)."""
    if not path.is_file():
        raise ScoreFileError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            values = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as error:
            raise ScoreFileError(f"{path}: not a NumPy array file ({error})") from None
        if values.ndim != 1 or values.dtype.kind not in "iuf":
            raise ScoreFileError(
                f"{path}: expected a 1-D numeric array, got {values.dtype} of shape {values.shape}"
            )
        return _finite(path, values.astype(np.float64))
    if suffix not in (".jsonl", ".csv", ".txt"):
        raise ScoreFileError(f"{path}: unknown file type {suffix!r} (use .jsonl, .csv, .npy or .txt)")
    with path.open(newline="" if suffix == ".csv" else None, encoding="utf-8") as file:
        if suffix == ".csv":
            rows = csv.DictReader(file)
            if rows.fieldnames is None or field not in rows.fieldnames:
                raise ScoreFileError(f"{path}:1: no column {field!r} (columns: {rows.fieldnames})")
            pairs = [(rows.line_num, row[field]) for row in rows]
        else:
            pairs = [(number, line.strip()) for number, line in enumerate(file, 1) if line.strip()]
    values = []
    for number, text in pairs:
        value: object = text
        if suffix == ".jsonl":
            try:
                record = json.loads(text)
            except json.JSONDecodeError:
                raise ScoreFileError(f"{path}:{number}: not a JSON object") from None
            if not isinstance(record, dict) or field not in record:
                raise ScoreFileError(f"{path}:{number}: no field {field!r}")
            value = record[field]
        values.append(_number(path, number, value, field if suffix != ".txt" else None))
    if not values:
        raise ScoreFileError(f"{path}: no scores")
    return np.array(values, dtype=np.float64)


def _number(path: Path, line: int, value: object, field: str | None) -> float:
    what = f"field {field!r}" if field is not None else "the line"
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ScoreFileError(f"{path}:{line}: {what} is not a number: {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ScoreFileError(f"{path}:{line}: {what} is not a number: {value!r}") from None
    if not math.isfinite(number):
        raise ScoreFileError(f"{path}:{line}: {what} is not finite: {value!r}")
    return number


def _finite(path: Path, values: np.ndarray) -> np.ndarray:
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise ScoreFileError(f"{path}: entry {bad[0]} is not finite ({values[bad[0]]})")
    if values.size == 0:
        raise ScoreFileError(f"{path}: no scores")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's options."""
    parser.add_argument(
        "files", nargs="+", metavar="[NAME=]FILE", help="per-sample scores of each model (two or more)"
    )
    parser.add_argument(
        "--field", default="reward", help="the field (.jsonl) or column (.csv) to read (default reward)"
    )
    parser.add_argument(
        "--order", type=int, choices=(1, 2), default=1, help="1: quantiles, 2: tail means (default 1)"
    )
    parser.add_argument("--confidence", type=float, default=0.95, help="confidence level (default 0.95)")
    parser.add_argument(
        "--threshold", type=float, default=0.5, help="almost dominance when epsilon_upper < it (default 0.5)"
    )
    parser.add_argument("--bootstrap", type=int, default=1000, help="resamples per pair (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the resampling (default 0)")
    parser.add_argument(
        "--plot", type=Path, default=None, help="write the models' quantile curves to this PNG"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Read the files, test every pair, print the report; bad input exits with status 2."""
    scores: dict[str, np.ndarray] = {}
    for spec in args.files:
        name, _, location = spec.rpartition("=") if "=" in spec else ("", "", spec)
        path = Path(location)
        name = name or path.stem
        if name in scores:
            parser.error(f"two models are named {name!r}: name them with NAME=FILE")
        try:
            scores[name] = read_scores(path, args.field)
        except ScoreFileError as error:
            parser.error(str(error))
    if len(scores) < 2:
        parser.error("compare needs the scores of at least two models")
    if args.plot is not None and not _has_matplotlib():
        parser.error(f"--plot needs matplotlib ({install_command('matplotlib')})")
    try:
        ranking = stats.rank(
            scores,
            order=args.order,
            confidence=args.confidence,
            threshold=args.threshold,
            num_bootstrap=args.bootstrap,
            seed=args.seed,
            progress=None if args.no_progress else _ProgressBar(),
        )
    except ValueError as error:
        parser.error(str(error))
    print(report(scores, ranking, args))
    if args.plot is not None:
        _plot(scores, ranking.names, args.order, args.plot)
        print(f"wrote {args.plot}")


def report(scores: dict[str, np.ndarray], ranking: stats.Ranking, args: argparse.Namespace) -> str:
    """The printed report: models, pairs, ranking and verdict."""
    names, k = ranking.names, len(ranking.names)
    width = max(8, *(len(n) for n in names))
    what = "quantiles (first order)" if args.order == 1 else "lower-tail means (second order)"
    comparisons = k * (k - 1) // 2
    lines = [f"{'model':<{width}}  {'n':>7}  {'mean':>10}  {'q10':>10}  {'q50':>10}  {'q90':>10}"]
    for name in names:
        x = scores[name]
        q10, q50, q90 = np.quantile(x, [0.1, 0.5, 0.9])
        lines.append(
            f"{name:<{width}}  {x.size:>7d}  {x.mean():>10.4g}  {q10:>10.4g}  {q50:>10.4g}  {q90:>10.4g}"
        )
    lines += [
        "",
        f"almost stochastic dominance of {what}: epsilon = violation ratio, epsilon_upper = its",
        f"{args.confidence:g} upper bound (Bonferroni over {comparisons} pair{_s(comparisons)}, "
        f"{args.bootstrap} resamples); A dominates B when epsilon_upper < {args.threshold:g}",
        f"{'A':<{width}}  {'B':<{width}}  {'epsilon':>8}  {'eps_upper':>9}  A dominates B",
    ]
    epsilon = {}  # once per pair: eps(B, A) = 1 - eps(A, B), as the ranking's bounds use it
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            epsilon[a, b] = stats.violation_ratio(scores[a], scores[b], order=args.order)
            epsilon[b, a] = 1.0 - epsilon[a, b]
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            if i == j:
                continue
            eps = epsilon[a, b]
            upper = ranking.epsilon_upper[i, j].item()
            verdict = "yes" if upper < args.threshold else "no"
            lines.append(f"{a:<{width}}  {b:<{width}}  {eps:>8.4f}  {upper:>9.4f}  {verdict}")
    lines += ["", "ranking (wins = models it almost dominates):"]
    lines += [
        f"{place}. {name} ({wins} win{_s(wins)})"
        for place, (name, wins) in enumerate(zip(names, ranking.wins, strict=True), 1)
    ]
    lines.append(_verdict(ranking))
    return "\n".join(lines)


def _s(count: int) -> str:
    return "" if count == 1 else "s"


def _verdict(ranking: stats.Ranking) -> str:
    names, wins = ranking.names, ranking.wins
    k = len(names)
    if wins[0] == k - 1:
        return f"verdict: {names[0]} almost dominates every other model."
    if wins[0] == 0:
        return "verdict: no model almost dominates another at this threshold and confidence."
    return (
        f"verdict: {names[0]} almost dominates {wins[0]} of the other {k - 1} models; no model dominates all."
    )


class _ProgressBar:
    """A bar on stderr, drawn once the bootstrap has taken more than a second."""

    def __init__(self) -> None:
        self.began = time.perf_counter()
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        if not self.shown and time.perf_counter() - self.began < 1.0:
            return
        self.shown = True
        filled = int(30 * done / total)
        tty = sys.stderr.isatty()
        line = f"bootstrap [{'#' * filled}{'.' * (30 - filled)}] {done}/{total}"
        if tty or done == total:
            sys.stderr.write(("\r" if tty else "") + line + ("\n" if done == total else ""))
            sys.stderr.flush()


def _has_matplotlib() -> bool:
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def _plot(scores: dict[str, np.ndarray], names: tuple[str, ...], order: int, out: Path) -> None:
    """Quantile curves of every model (and their lower-tail means L(t)/t for order 2)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 2 if order == 2 else 1
    figure, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4), squeeze=False)
    for name in names:
        x = np.sort(scores[name])
        t = np.arange(1, x.size + 1) / x.size
        axes[0, 0].step(np.concatenate([[0.0], t]), np.concatenate([[x[0]], x]), where="pre", label=name)
        if order == 2:
            axes[0, 1].plot(t, np.cumsum(x) / np.arange(1, x.size + 1), label=name)
    axes[0, 0].set(title="quantile functions Q(t)", xlabel="level t", ylabel="score")
    if order == 2:
        axes[0, 1].set(title="lower-tail means L(t)/t", xlabel="level t", ylabel="mean of the lowest t")
    for axis in axes[0]:
        axis.legend()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(out, dpi=120)
    plt.close(figure)
