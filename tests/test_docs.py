"""Every Python block of README.md and docs/*.md runs, in order, page by page.

A page's blocks share one namespace, as a reader's session would. What a page leaves to the
reader (their rewards, their model, their batches) is supplied by the small stand-ins below,
built only when a block names them; `group="world"` runs in a process group of one rank.
Blocks written as doctests (`>>>`) are checked by doctest, outputs included.
"""

from __future__ import annotations

import doctest
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from optional import import_or_skip

import aot_loss
from aot_loss._optional import OPTIONAL

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def blocks(page: Path) -> list[str]:
    return BLOCK.findall(page.read_text())


PAGES = [page for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))] if blocks(page)]


def _sample(n: int, seed: int, shift: float = 0.0, grad: bool = False) -> torch.Tensor:
    return (torch.randn(n, generator=torch.Generator().manual_seed(seed)) + shift).requires_grad_(grad)


def _llama() -> torch.nn.Module:
    from test_llm_logps import tiny_model

    return tiny_model("llama", torch.float32)


def _batch(side: str, keys: list[str]) -> dict[str, object]:
    from test_llm_reference import as_batch

    return as_batch(side, keys=keys)


def _lora(model: torch.nn.Module) -> torch.nn.Module:
    peft = import_or_skip("peft")
    return peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))


def _dataset() -> object:
    datasets = import_or_skip("datasets")
    from test_llm_trl import ROWS

    return datasets.Dataset.from_list(ROWS)


def _unpaired_dataset() -> object:
    datasets = import_or_skip("datasets")
    from test_llm_trl_kto import ROWS

    return datasets.Dataset.from_list(ROWS)


def _tokenizer() -> object:
    from test_llm_data import make_tokenizer

    return make_tokenizer()


def _ddp_model() -> torch.nn.Module:
    return torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(3, 1))


# What a page leaves to its reader, each built when a block first names it (from what the page
# has set so far, where it depends on it): rewards and log-probabilities, a DDP model, and a
# tiny random Llama with a word-level tokenizer for the LLM pages.
STAND_INS: dict[str, Callable[[Namespace], object]] = {
    "r_pos": lambda ns: _sample(32, 1, 0.3, grad=True),
    "r_neg": lambda ns: _sample(24, 2, grad=True),
    "pc": lambda ns: _sample(16, 3, grad=True),
    "pr": lambda ns: _sample(16, 4, grad=True),
    "rc": lambda ns: _sample(16, 5),
    "rr": lambda ns: _sample(16, 6),
    "x": lambda ns: torch.randn(4, 8, requires_grad=True),
    "policy_chosen_logps": lambda ns: _sample(16, 7, -20.0, grad=True),
    "policy_rejected_logps": lambda ns: _sample(16, 8, -21.0, grad=True),
    "ref_chosen_logps": lambda ns: _sample(16, 9, -20.0),
    "ref_rejected_logps": lambda ns: _sample(16, 10, -21.0),
    "reference_chosen_logps": lambda ns: ns["ref_chosen_logps"],
    "reference_rejected_logps": lambda ns: ns["ref_rejected_logps"],
    "beta": lambda ns: 0.1,
    "label_smoothing": lambda ns: 0.1,
    "dpo_chosen": lambda ns: _sample(32, 11, 0.5),
    "dpo_rejected": lambda ns: _sample(32, 12),
    "policy_margins": lambda ns: _sample(16, 13, 0.2),
    "reference_margins": lambda ns: _sample(16, 14),
    "ddp_model": lambda ns: _ddp_model(),
    "x_pos": lambda ns: torch.randn(6, 3),
    "x_neg": lambda ns: torch.randn(5, 3),
    "n_pos": lambda ns: 6,
    "optimizer": lambda ns: torch.optim.SGD(ns["ddp_model"].parameters(), lr=0.1),
    "tokenizer": lambda ns: _tokenizer(),
    "model": lambda ns: _llama(),
    "policy": lambda ns: _llama(),
    "ref_model": lambda ns: _llama(),
    "reference": lambda ns: _llama(),
    "peft_policy": lambda ns: _lora(_llama()),
    "chosen_batch": lambda ns: _batch("right", ["c0", "c1", "c2", "c3"]),
    "rejected_batch": lambda ns: _batch("left", ["r0", "r1", "r2", "r3"]),
    "input_ids": lambda ns: ns["chosen_batch"]["input_ids"],
    "attention_mask": lambda ns: ns["chosen_batch"]["attention_mask"],
    "completion_mask": lambda ns: ns["chosen_batch"]["completion_mask"],
    "keys": lambda ns: ns["chosen_batch"]["keys"],
    "batches_with_keys": lambda ns: [
        ns[name] for name in ("chosen_batch", "rejected_batch", "batch") if name in ns
    ],
    "log": lambda ns: print,
    "dataset": lambda ns: _dataset(),
    "unpaired_dataset": lambda ns: _unpaired_dataset(),
}


class Namespace(dict):
    """The locals of a page's blocks: a name the page has not set comes from STAND_INS."""

    def __missing__(self, name: str) -> object:
        if name not in STAND_INS:
            raise KeyError(name)
        self[name] = STAND_INS[name](self)
        return self[name]


@pytest.fixture
def world_of_one(tmp_path):
    """A gloo process group of one rank, so that `group="world"` runs as written."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


@pytest.fixture
def trl_on_cpu(monkeypatch):
    """TRL's DPOConfig and KTOConfig as the pages write them, plus what a CPU and a one-step
    run need (their default bf16 refuses a CPU). Without TRL, a page that imports it fails on the import."""
    try:
        import trl
    except ImportError:
        return
    cpu = {"use_cpu": True, "bf16": False, "max_steps": 1}
    quiet = {"report_to": [], "save_strategy": "no", "disable_tqdm": True}
    for name, batch in (("DPOConfig", 4), ("KTOConfig", 5)):  # the sizes of the stand-in data sets
        config = getattr(trl, name)
        size = {"per_device_train_batch_size": batch}

        def on_cpu(*args, config=config, size=size, **kwargs):
            return config(*args, **{**cpu, **size, **quiet, **kwargs})

        monkeypatch.setattr(trl, name, on_cpu)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_page_runs(page, tmp_path, monkeypatch, world_of_one, trl_on_cpu):
    monkeypatch.chdir(tmp_path)  # files the blocks write (plots, TRL's output_dir) land here
    env = Namespace()
    for number, code in enumerate(blocks(page)):
        if code.lstrip().startswith(">>>"):
            test = doctest.DocTestParser().get_doctest(
                code, {"torch": torch, "aot_loss": aot_loss}, page.name, str(page), 0
            )
            runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
            runner.run(test)
            assert runner.failures == 0, f"{page.name}, block {number}: a doctest failed (output above)"
        else:
            try:
                exec(compile(code, f"{page.name}, block {number}", "exec"), {"__name__": "__docs__"}, env)
            except ImportError as error:
                if (error.name or "").split(".")[0] not in OPTIONAL:
                    raise
                pytest.skip(f"{page.name}, block {number}: {error}")  # says what to install


@pytest.mark.parametrize(
    ("which", "runs"), [("demo", "python -m aot_loss demo"), ("tests", "python -m pytest")]
)
def test_ci_reads_the_readme_commands_as_written(which, runs):
    """.ci/run runs what .ci/readme_command prints: the README's own line, byte for byte."""
    out = subprocess.run(
        [sys.executable, str(ROOT / ".ci" / "readme_command"), which],
        capture_output=True,
        text=True,
        check=True,
    )
    command = out.stdout.rstrip("\n")
    assert f"```bash\n{command}\n```" in (ROOT / "README.md").read_text()
    assert command.startswith("python3 -m venv .venv && ") and command.endswith(runs)
