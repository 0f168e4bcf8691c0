"""The demo (`python -m aot_loss demo`): end to end in its reduced mode, and its parts."""

import json
import subprocess
import sys

import pytest
import torch
from optional import import_or_skip

from aot_loss import demo


def run_module(*args):
    return subprocess.run(
        [sys.executable, "-m", "aot_loss", *args], capture_output=True, text=True, timeout=300
    )


def test_quick_demo_end_to_end(tmp_path):
    import_or_skip("matplotlib")
    result = run_module("demo", "--quick", "--no-progress", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    for name in ("reference", *demo.LOSSES):
        assert f"\n{name}" in result.stdout
    assert (tmp_path / "reward_quantiles.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "margin_quantiles.png").read_bytes()[:4] == b"\x89PNG"
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert report["args"]["steps"] == 120 and report["args"]["quick"] is True
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
    assert table.splitlines()[1].split() == ["reference", *["-"] * 7, "0.250"]
