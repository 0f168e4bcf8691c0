"""AOTDPOTrainer against TRL's own DPOTrainer on a tiny GPT-2 with an in-memory tokenizer."""

from __future__ import annotations

import copy

import pytest
import torch
from optional import import_or_skip
from tolerances import approx, tol

trl = import_or_skip("trl")
datasets = import_or_skip("datasets")

from test_llm_data import make_tokenizer  # noqa: E402
from test_llm_logps import tiny_model  # noqa: E402

import aot_loss  # noqa: E402
from aot_loss.llm import sequence_logps  # noqa: E402
from aot_loss.llm.trl import AOTDPOTrainer  # noqa: E402

# TRL joins prompt and completion texts as they are: completions start with a space.
ROWS = [
    {"prompt": "what is the cat", "chosen": " the cat sat", "rejected": " bad dog"},
    {"prompt": "why", "chosen": " good", "rejected": " the dog ran fast"},
    {"prompt": "what is a mat", "chosen": " a mat", "rejected": " slow"},
    {"prompt": "the dog", "chosen": " ran fast", "rejected": " sat on a cat"},
]


def make_trainer(cls, loss_type: str, tmp_path, label_smoothing: float = 0.1, **kwargs):
    torch.manual_seed(0)
    tokenizer = make_tokenizer()
    policy = tiny_model("gpt2", torch.float32)
    with torch.no_grad():  # a policy away from its reference, so rewards are not all zero
        for p in policy.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    config = trl.DPOConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=2, loss_type=loss_type, beta=0.5,
        label_smoothing=label_smoothing, learning_rate=1e-2, report_to=[], logging_steps=1, use_cpu=True,
        save_strategy="no", disable_tqdm=True, bf16=False,  # float32: comparable to 1e-5
    )  # fmt: skip
    return cls(
        model=policy, ref_model=tiny_model("gpt2", torch.float32), args=config,
        train_dataset=datasets.Dataset.from_list(ROWS), processing_class=tokenizer, **kwargs,
    )  # fmt: skip


def first_batch(trainer):
    return next(iter(trainer.get_train_dataloader()))


@pytest.mark.parametrize("loss_type", ["aot", "aot_unpaired"])
def test_loss_equals_trls_own_formula(loss_type, tmp_path):
    ours, theirs = (
        make_trainer(AOTDPOTrainer, loss_type, tmp_path),
        make_trainer(trl.DPOTrainer, loss_type, tmp_path),
    )
    batch = first_batch(ours)
    with torch.no_grad():
        got = ours.compute_loss(ours.model, batch)
        want = theirs.compute_loss(theirs.model, batch)
    torch.testing.assert_close(got, want, **tol("float32_paths"))
    assert got.item() != pytest.approx(0.6931, **approx("coarse"))  # the rewards are not all zero
    logged = ours._metrics["eval"]  # the model is in eval mode outside train()
    assert logged["rewards/accuracies"] and logged["aot/dominance_violation"]


@pytest.mark.parametrize(
    ("options", "smoothing"),
    [
        ({"loss": "hinge"}, 0.0),
        ({"sort": "soft", "soft_strength": 2.0}, 0.1),
        ({"order": 2, "quantile_range": (0.1, 0.9)}, 0.1),
    ],
)
def test_aot_options_reach_the_loss(options, smoothing, tmp_path):
    trainer = make_trainer(AOTDPOTrainer, "aot", tmp_path, smoothing, aot_options=options, chunk_size=3)
    batch = first_batch(trainer)
    with torch.no_grad():
        got = trainer.compute_loss(trainer.model, batch)
        tensors = batch["input_ids"], batch["attention_mask"], batch["completion_mask"]
        pc, pr = sequence_logps(trainer.model, *tensors).chunk(2)
        rc, rr = sequence_logps(trainer.ref_model, *tensors).chunk(2)
    want = aot_loss.paired(pc, pr, rc, rr, beta=0.5, label_smoothing=smoothing, **options)
    torch.testing.assert_close(got, want, **tol("float32_paths"))


@pytest.mark.parametrize(
    ("loss_type", "options", "chunk_size", "error", "message"),
    [
        ("aot", {"loss": "hinge"}, None, ValueError, r"label_smoothing=0.1 applies to loss='logistic' only"),
        ("aot", {"sort": "soft", "soft_strength": -1.0}, None, ValueError, r"soft_strength must be .*, got -1.0"),
        ("aot", {"pos_weights": torch.ones(4)}, None, ValueError, r"aot_options got an unknown option 'pos_weights'; the options are \('loss', "),
        ("aot_unpaired", {"backend": "cuda"}, None, ValueError, r"backend must be one of \('auto', 'torch', 'native'\), got 'cuda'"),
        ("sigmoid", {"loss": "hinge"}, None, ValueError, r"aot_options apply to loss_type 'aot' or 'aot_unpaired' alone, got loss_type=\['sigmoid'\]"),
        ("aot", {}, 0, ValueError, r"chunk_size must be a positive int or None, got 0"),
        ("aot", {"group": "all"}, None, ValueError, r"group must be .*, got 'all'"),
        ("aot_pair", {}, None, ValueError, r"loss_type 'aot_pair' is TRL's old name \(before 0.28\) for the unpaired loss, now 'aot_unpaired'"),
    ],
)  # fmt: skip
def test_bad_options_fail_when_built(loss_type, options, chunk_size, error, message, tmp_path):
    with pytest.raises(error, match=message):
        make_trainer(AOTDPOTrainer, loss_type, tmp_path, aot_options=options, chunk_size=chunk_size)


@pytest.mark.parametrize("loss_type", ["aot", "aot_unpaired"])
def test_two_training_steps(loss_type, tmp_path):
    trainer = make_trainer(AOTDPOTrainer, loss_type, tmp_path, aot_options={"sort": "soft"}, chunk_size=4)
    policy_before = copy.deepcopy(trainer.model.state_dict())
    reference_before = copy.deepcopy(trainer.ref_model.state_dict())
    output = trainer.train()
    assert output.global_step == 2 and torch.isfinite(torch.tensor(output.training_loss))
    assert any(not torch.equal(p, policy_before[n]) for n, p in trainer.model.state_dict().items())
    assert all(torch.equal(p, reference_before[n]) for n, p in trainer.ref_model.state_dict().items())
    logged = [entry for entry in trainer.state.log_history if "aot/dominance_violation" in entry]
    assert len(logged) == 2


def test_other_loss_types_go_to_trl(tmp_path):
    ours, theirs = (
        make_trainer(AOTDPOTrainer, "sigmoid", tmp_path),
        make_trainer(trl.DPOTrainer, "sigmoid", tmp_path),
    )
    batch = first_batch(ours)
    with torch.no_grad():
        torch.testing.assert_close(
            ours.compute_loss(ours.model, batch), theirs.compute_loss(theirs.model, batch)
        )


@pytest.mark.parametrize("name", ["beta", "label_smoothing", "reduction"])
def test_options_owned_by_the_config_are_refused(name, tmp_path):
    with pytest.raises(ValueError, match=rf"aot_options must not set '{name}'"):
        make_trainer(AOTDPOTrainer, "aot", tmp_path, aot_options={name: 0.2})
