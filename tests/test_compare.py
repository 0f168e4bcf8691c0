"""python -m aot_loss compare on files written here: every format, the report, every bad file."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from aot_loss.__main__ import main
from aot_loss.stats import rank


def _write_models(tmp_path):
    rng = np.random.default_rng(0)
    values = {
        "low": rng.normal(0.0, 1.0, 150),
        "mid": rng.normal(0.5, 1.0, 120),
        "high": rng.normal(1.0, 1.0, 90),
    }
    (tmp_path / "low.jsonl").write_text(
        "".join(json.dumps({"reward": x, "id": i}) + "\n" for i, x in enumerate(values["low"]))
    )
    (tmp_path / "mid.csv").write_text(
        "id,reward\n" + "".join(f"{i},{float(x)!r}\n" for i, x in enumerate(values["mid"]))
    )
    np.save(tmp_path / "high.npy", values["high"])
    (tmp_path / "low.txt").write_text("\n".join(repr(float(x)) for x in values["low"]) + "\n")
    return values


def _run(capsys, *argv):
    main(["compare", *map(str, argv), "--bootstrap", "200", "--no-progress"])
    return capsys.readouterr().out


def test_every_format_and_the_report(tmp_path, capsys):
    values = _write_models(tmp_path)
    out = _run(capsys, tmp_path / "low.jsonl", tmp_path / "mid.csv", tmp_path / "high.npy", "--seed", "3")
    expected = rank(values, num_bootstrap=200, seed=3)
    assert expected.names == ("high", "mid", "low")
    lines = out.splitlines()
    assert lines[1].split()[:3] == ["high", "90", f"{values['high'].mean():.4g}"]
    row = next(line for line in lines if line.startswith("high") and " mid " in line)
    assert row.split()[3] == f"{expected.epsilon_upper[0, 1].item():.4f}" and row.split()[4] == "yes"
    assert "1. high (2 wins)" in out and "3. low (0 wins)" in out
    assert "verdict: high almost dominates every other model." in out
    assert "Bonferroni over 3 pairs, 200 resamples" in out


def test_txt_names_and_second_order(tmp_path, capsys):
    _write_models(tmp_path)
    out = _run(capsys, f"base={tmp_path / 'low.txt'}", f"same={tmp_path / 'low.jsonl'}", "--order", "2")
    assert "lower-tail means (second order)" in out
    row = next(line for line in out.splitlines() if line.startswith("base") and " same " in line)
    assert row.split()[2] == "0.5000"  # identical samples: no order either way
    assert "verdict: no model almost dominates another" in out


def test_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    _write_models(tmp_path)
    out = _run(
        capsys, tmp_path / "low.jsonl", tmp_path / "high.npy", "--order", "2", "--plot", tmp_path / "q.png"
    )
    assert f"wrote {tmp_path / 'q.png'}" in out and (tmp_path / "q.png").stat().st_size > 0


@pytest.mark.parametrize(
    "name, content, extra, message",
    [
        ("a.jsonl", '{"reward": 1}\n{"score": 2}\n', [], r"a.jsonl:2: no field 'reward'"),
        (
            "a.jsonl",
            '{"reward": 1}\n{"reward": "x"}\n',
            [],
            r"a.jsonl:2: field 'reward' is not a number: 'x'",
        ),
        (
            "a.jsonl",
            '{"reward": 1}\n{"reward": true}\n',
            [],
            r"a.jsonl:2: field 'reward' is not a number: True",
        ),
        ("a.jsonl", '{"reward": 1}\n{"reward": NaN}\n', [], r"a.jsonl:2: field 'reward' is not finite"),
        ("a.jsonl", "{oops\n", [], r"a.jsonl:1: not a JSON object"),
        ("a.jsonl", '{"r": 1}\n', ["--field", "r2"], r"a.jsonl:1: no field 'r2'"),
        ("a.csv", "x,y\n1,2\n", [], r"a.csv:1: no column 'reward'"),
        ("a.csv", "reward\n1\nbad\n", [], r"a.csv:3: field 'reward' is not a number: 'bad'"),
        ("a.txt", "1.0\n\n2.5\nthree\n", [], r"a.txt:4: the line is not a number: 'three'"),
        ("a.txt", "\n\n", [], r"a.txt: no scores"),
        ("a.parquet", "", [], r"a.parquet: unknown file type '.parquet'"),
    ],
)
def test_a_bad_file_names_the_file_and_line_and_exits_2(tmp_path, capsys, name, content, extra, message):
    (tmp_path / name).write_text(content)
    np.save(tmp_path / "b.npy", np.arange(5.0))
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", str(tmp_path / name), str(tmp_path / "b.npy"), *extra])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "files, message",
    [
        (["missing.jsonl", "b.npy"], r"missing.jsonl: no such file"),
        (["b.npy"], r"at least two models"),
        (["b.npy", "b.npy"], r"two models are named 'b'"),
        (["matrix.npy", "b.npy"], r"matrix.npy: expected a 1-D numeric array"),
        (["inf.npy", "b.npy"], r"inf.npy: entry 1 is not finite"),
    ],
)
def test_bad_sets_of_files_exit_2(tmp_path, capsys, monkeypatch, files, message):
    monkeypatch.chdir(tmp_path)
    np.save("b.npy", np.arange(5.0))
    np.save("matrix.npy", np.ones((2, 2)))
    np.save("inf.npy", np.array([1.0, np.inf]))
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", *files])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err


def test_the_command_runs_as_a_module_without_traceback(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"reward": "x"}\n')
    np.save(tmp_path / "b.npy", np.arange(5.0))
    result = subprocess.run(
        [sys.executable, "-m", "aot_loss", "compare", str(tmp_path / "a.jsonl"), str(tmp_path / "b.npy")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "a.jsonl:1: field 'reward' is not a number: 'x'" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_progress_bar_appears_only_past_a_second(monkeypatch, capsys):
    from aot_loss import compare

    clock = iter([0.0, 0.5, 0.9, 1.5, 2.0])
    monkeypatch.setattr(compare.time, "perf_counter", lambda: next(clock))
    bar = compare._ProgressBar()  # reads 0.0
    bar(100, 400)  # 0.5 s: nothing yet
    bar(200, 400)  # 0.9 s
    assert capsys.readouterr().err == ""
    bar(300, 400)  # 1.5 s: shown from now on (stderr is not a terminal: only the last line)
    bar(400, 400)
    assert capsys.readouterr().err == f"bootstrap [{'#' * 30}] 400/400\n"


def test_a_fast_bootstrap_draws_no_bar(tmp_path, capsys):
    _write_models(tmp_path)
    main(["compare", str(tmp_path / "low.jsonl"), str(tmp_path / "high.npy"), "--bootstrap", "20"])
    assert capsys.readouterr().err == ""
