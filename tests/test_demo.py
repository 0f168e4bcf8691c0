"""The demo (`python -m aot_loss demo`): end to end as documented, and its parts."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from optional import import_or_skip

from aot_loss import demo

ROOT = Path(__file__).resolve().parents[1]
# A progress bar's final line (stderr), and the figures that depend on the machine's speed.
BAR = re.compile(r"^ *(AOT unpaired|AOT paired|DPO) \[#+\] \d+/\d+ steps, \d+ it/s$")
TIMING = re.compile(r"( in )\d+( s)$|(steps, )\d+( it/s)$")


def run_module(*args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "aot_loss", *args], capture_output=True, text=True, timeout=300, **kwargs
    )


def documented_output() -> list[str]:
    """The terminal output that docs/diagnostics.md shows for `python -m aot_loss demo`."""
    page = (ROOT / "docs" / "diagnostics.md").read_text()
    (block,) = re.findall(r"^```text\n(building the task.*?)^```", page, re.S | re.M)
    return block.splitlines()


def _timeless(lines):
    return [TIMING.sub(lambda m: f"{m[1] or m[3]}N{m[2] or m[4]}", line) for line in lines]


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """`python -m aot_loss demo` exactly as documented, in a fresh folder, through the pure
    install's kernels (the README's command builds no native library)."""
    import_or_skip("matplotlib")  # the documented run writes the figures
    cwd = tmp_path_factory.mktemp("demo")
    result = run_module("demo", cwd=cwd, env={**os.environ, "AOT_LOSS_DISABLE_NATIVE": "1"})
    assert result.returncode == 0, result.stderr
    return result, cwd


@pytest.mark.install_independent
def test_the_docs_show_what_the_documented_command_prints(default_run):
    """Every line of docs/diagnostics.md's output block, but the seconds and the steps per
    second: the table, the legend, the files, the reading and the progress bars. If this
    fails after a change that moves the figures, rerun the command at the new commit and
    paste its output (and the commit) into the page."""
    result, _ = default_run
    documented = documented_output()
    bars = [line for line in documented if BAR.match(line)]
    printed = [line for line in documented if not BAR.match(line)]
    assert _timeless(result.stdout.splitlines()) == _timeless(printed)
    assert _timeless(result.stderr.splitlines()) == _timeless(bars)


@pytest.mark.install_independent
def test_compare_prints_what_the_docs_show_on_the_demos_scores(default_run):
    """docs/dominance-tests.md's worked example: `python -m aot_loss compare` on the files the
    documented demo run wrote (the shell's glob order: sorted), output line for line."""
    _, cwd = default_run
    page = (ROOT / "docs" / "dominance-tests.md").read_text()
    (block,) = re.findall(r"^```text\n\$ (python -m aot_loss compare .*?)\n(.*?)^```", page, re.S | re.M)
    command, documented = block
    args = command.split()[4:]
    files = sorted(str(p.relative_to(cwd)) for p in (cwd / "aot_demo" / "scores").glob("*.jsonl"))
    assert args[0] == "aot_demo/scores/*.jsonl" and len(files) == 1 + len(demo.LOSSES)
    result = run_module("compare", *files, *args[1:], "--no-progress", cwd=cwd)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == documented.splitlines()
    rows = [json.loads(line) for line in (cwd / "aot_demo" / "scores" / "dpo.jsonl").read_text().splitlines()]
    assert len(rows) == 1024 and set(rows[0]) == {"prompt", "task_score", "reward_chosen", "reward_rejected"}


@pytest.mark.install_independent
def test_the_default_run_writes_the_figures_and_the_table(default_run):
    result, cwd = default_run
    out = cwd / "aot_demo"
    assert (out / "reward_quantiles.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "margin_quantiles.png").read_bytes()[:4] == b"\x89PNG"
    report = json.loads((out / "metrics.json").read_text())
    assert report["args"]["steps"] == 300 and report["args"]["threads"] == 1
    rows = report["rows"]
    assert set(rows) == {"reference", *demo.LOSSES}
    for name in demo.LOSSES:
        row = rows[name]
        assert set(row) == {key for key, _ in demo.COLUMNS}
        for key in ("fsd_violation", "violation_ratio", "margin_violation", "reward_accuracy", "task_score"):
            assert 0.0 <= row[key] <= 1.0
        assert row["reward_margin_q10"] <= row["reward_margin_q50"] <= row["reward_margin_q90"]
        # Training on the preferences makes every method's own samples score better.
        assert row["task_score"] > rows["reference"]["task_score"]
    assert demo.format_table(rows) in result.stdout


def test_the_reading_follows_the_table():
    rows = {
        "reference": {"task_score": 0.2},
        "AOT unpaired": {"fsd_violation": 0.002, "margin_violation": 0.4, "task_score": 0.45},
        "AOT paired": {"fsd_violation": 0.0, "margin_violation": 0.01, "task_score": 0.84},
    }
    lines = demo.reading(rows)
    assert len(lines) == 3
    assert "dominate its rejected ones (FSD violation <= 0.002)" in lines[0]
    assert "AOT unpaired keeps 40% of its margin quantiles below the reference's (AOT paired 1%)" in lines[1]
    assert "by rank, not by prompt" in lines[2]
    rows["AOT unpaired"] |= {"fsd_violation": 0.2, "margin_violation": 0.02}
    lines = demo.reading(rows)
    assert len(lines) == 2  # no lag to explain
    assert (
        "AOT unpaired's chosen rewards fall below its rejected ones at 20% of the quantile levels" in lines[0]
    )
    assert "AOT unpaired keeps 2% of its margin quantiles" in lines[1]


def test_help_documents_the_options():
    result = run_module("demo", "--help")
    assert result.returncode == 0
    for option in ("--steps", "--batch", "--beta", "--lr", "--seed", "--out", "--quick", "--no-progress"):
        assert option in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--steps", "0"], "--steps must be >= 1, got 0"), (["--beta", "-1"], "--beta and --lr must be > 0")],
)
def test_bad_options_are_named(args, message):
    result = run_module("demo", *args)
    assert result.returncode == 2 and message in result.stderr


def test_score_is_the_share_of_answer_tokens_found_in_the_prompt():
    prompts = torch.tensor([[1, 2, 3, 4], [5, 5, 5, 5]])
    answers = torch.tensor([[1, 9, 9, 9, 2, 2, 9, 9], [5, 5, 5, 5, 5, 5, 5, 5]])
    assert demo.score(prompts, answers).tolist() == [3 / 8, 1.0]


def test_pairs_prefer_the_better_scored_answer_and_carry_reference_logps():
    torch.manual_seed(0)
    reference = demo.TinyLM().eval()
    pairs = demo.make_pairs(reference, 50, torch.Generator().manual_seed(1))
    assert pairs.prompts.shape == (50, demo.PROMPT_LEN) and pairs.chosen.shape == (50, demo.ANSWER_LEN)
    assert bool((demo.score(pairs.prompts, pairs.chosen) > demo.score(pairs.prompts, pairs.rejected)).all())
    with torch.no_grad():
        expected = demo.answer_logps(reference, pairs.prompts, pairs.chosen)
    torch.testing.assert_close(pairs.ref_chosen, expected)


def test_answer_logps_sums_the_answer_tokens_only():
    torch.manual_seed(0)
    model = demo.TinyLM()
    prompts, answers = torch.randint(1, demo.VOCAB, (3, 4)), torch.randint(0, demo.VOCAB, (3, 8))
    tokens = torch.cat([prompts, torch.zeros(3, 1, dtype=torch.long), answers], dim=1)
    logits, _ = model(tokens)
    logps = torch.log_softmax(logits, -1)
    expected = sum(logps[:, 4 + t, :].gather(-1, answers[:, t : t + 1]).squeeze(-1) for t in range(8))
    torch.testing.assert_close(demo.answer_logps(model, prompts, answers), expected)


def test_table_prints_missing_values_as_dashes():
    table = demo.format_table({"reference": {"task_score": 0.25}})
    assert table.splitlines()[1].split() == ["reference", *["-"] * (len(demo.COLUMNS) - 1), "0.250"]
