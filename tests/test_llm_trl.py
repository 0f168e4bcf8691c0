"""AOTDPOTrainer against TRL's own DPOTrainer on a tiny GPT-2 with an in-memory tokenizer."""

from __future__ import annotations

import copy

import pytest
import torch
from optional import import_or_skip
from tolerances import approx, tol

trl = import_or_skip("trl")
datasets = import_or_skip("datasets")
transformers = import_or_skip("transformers")

from test_llm_data import make_tokenizer  # noqa: E402
from test_llm_logps import VOCAB, tiny_model  # noqa: E402

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


def tiny_moe(dtype=torch.float32):
    """A two-expert Mixtral small enough for a CPU step; its router adds an auxiliary loss."""
    torch.manual_seed(0)
    config = transformers.MixtralConfig(
        num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, hidden_size=16,
        intermediate_size=32, vocab_size=VOCAB, max_position_embeddings=64, num_local_experts=2,
        num_experts_per_tok=1,
    )  # fmt: skip
    return transformers.MixtralForCausalLM(config).to(dtype).eval()


def make_trainer(
    cls,
    loss_type,
    tmp_path,
    label_smoothing: float = 0.1,
    model=tiny_model,
    reference=True,
    config=None,
    **kwargs,
):
    torch.manual_seed(0)
    tokenizer = make_tokenizer()
    policy = model("gpt2", torch.float32) if model is tiny_model else model()
    with torch.no_grad():  # a policy away from its reference, so rewards are not all zero
        for p in policy.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    settings = dict(
        output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=2, loss_type=loss_type, beta=0.5,
        label_smoothing=label_smoothing, learning_rate=1e-2, report_to=[], logging_steps=1, use_cpu=True,
        save_strategy="no", disable_tqdm=True, bf16=False,  # float32: comparable to 1e-5
    )  # fmt: skip
    ref = None
    if reference:
        ref = model("gpt2", torch.float32) if model is tiny_model else model()
    return cls(
        model=policy, ref_model=ref, args=trl.DPOConfig(**(settings | (config or {}))),
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
    logged, trls = ours._metrics["eval"], theirs._metrics["eval"]  # eval mode outside train()
    assert set(trls) <= set(logged) and logged["aot/dominance_violation"]
    for name in ("entropy", "logits/chosen", "mean_token_accuracy", "rewards/margins", "logps/rejected"):
        assert logged[name] == pytest.approx(trls[name], **approx("float32_relative")), name


@pytest.mark.parametrize(
    ("options", "smoothing"),
    [
        ({"loss": "hinge"}, 0.0),
        ({"sort": "soft", "soft_strength": 2.0}, 0.1),
        ({"order": 2, "quantile_range": (0.1, 0.9)}, 0.1),
    ],
)
def test_aot_options_reach_the_loss(options, smoothing, tmp_path):
    trainer = make_trainer(AOTDPOTrainer, "aot", tmp_path, smoothing, aot_options=options)
    batch = first_batch(trainer)
    with torch.no_grad():
        got = trainer.compute_loss(trainer.model, batch)
        tensors = batch["input_ids"], batch["attention_mask"], batch["completion_mask"]
        pc, pr = sequence_logps(trainer.model, *tensors).chunk(2)
        rc, rr = sequence_logps(trainer.ref_model, *tensors).chunk(2)
    want = aot_loss.paired(pc, pr, rc, rr, beta=0.5, label_smoothing=smoothing, **options)
    torch.testing.assert_close(got, want, **tol("float32_paths"))


@pytest.mark.parametrize(
    ("loss_type", "options", "kwargs", "error", "message"),
    [
        ("aot", {"loss": "hinge"}, {}, ValueError, r"label_smoothing=0.1 applies to loss='logistic' only"),
        ("aot", {"sort": "soft", "soft_strength": -1.0}, {}, ValueError, r"soft_strength must be .*, got -1.0"),
        ("aot", {"pos_weights": torch.ones(4)}, {}, ValueError, r"aot_options got an unknown option 'pos_weights'; the options are \('loss', "),
        ("aot_unpaired", {"backend": "cuda"}, {}, ValueError, r"backend must be one of \('auto', 'torch', 'native'\), got 'cuda'"),
        ("sigmoid", {"loss": "hinge"}, {}, ValueError, r"aot_options need an 'aot' or 'aot_unpaired' term in loss_type, got loss_type=\['sigmoid'\]"),
        ("aot", {}, {"chunk_size": 0}, ValueError, r"chunk_size must be a positive int or None, got 0"),
        ("aot", {}, {"chunk_size": 2.0}, ValueError, r"chunk_size must be a positive int or None, got 2.0"),
        ("aot", {"group": "all"}, {}, ValueError, r"group must be .*, got 'all'"),
        ("aot_pair", {}, {}, ValueError, r"loss_type 'aot_pair' is TRL's old name \(before 0.28\) for the unpaired loss, now 'aot_unpaired'"),
    ],
)  # fmt: skip
def test_bad_options_fail_when_built(loss_type, options, kwargs, error, message, tmp_path):
    with pytest.raises(error, match=message):
        make_trainer(AOTDPOTrainer, loss_type, tmp_path, aot_options=options, **kwargs)


def test_trls_own_refusals_stand(tmp_path):
    """f-divergences other than the reverse KL have no AOT form: TRL's message, unchanged."""
    with pytest.raises(
        ValueError, match=r"`f_divergence_type='forward_kl'` is only supported for the following"
    ):
        make_trainer(AOTDPOTrainer, "aot", tmp_path, config={"f_divergence_type": "forward_kl"})


@pytest.mark.parametrize("loss_type", ["aot", "aot_unpaired"])
def test_two_training_steps(loss_type, tmp_path):
    trainer = make_trainer(AOTDPOTrainer, loss_type, tmp_path, aot_options={"sort": "soft"})
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


def one_step(cls, tmp_path, loss_type, **kwargs):
    """The training loss and the parameters after one SGD step (SGD: an update proportional to
    the gradient, so float32 rounding stays rounding; Adam's first step is its sign)."""
    trainer = make_trainer(cls, loss_type, tmp_path, **kwargs)
    trainer.args.max_steps, trainer.args.optim = 1, "sgd"
    output = trainer.train()
    parameters = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    return output.training_loss, parameters, trainer


def assert_same_step(ours, theirs):
    assert ours[0] == pytest.approx(theirs[0], **approx("float32_relative"))
    assert ours[1].keys() == theirs[1].keys() and ours[1]
    for name, value in ours[1].items():
        torch.testing.assert_close(value, theirs[1][name], **tol("float32_model"), msg=name)


SETTINGS = {
    "loss_weights": ("aot", {"config": {"loss_weights": [0.5]}}),
    "mixed_terms": (["aot", "sft"], {"config": {"loss_weights": [1.0, 0.5]}}),
    "mixed_unpaired": (["sigmoid", "aot_unpaired"], {"config": {"loss_weights": [0.3, 2.0]}}),
    "ld_alpha": ("aot", {"config": {"ld_alpha": 0.5}}),
    "ld_alpha_unpaired": ("aot_unpaired", {"config": {"ld_alpha": 0.5}}),
    "precompute": ("aot_unpaired", {"config": {"precompute_ref_log_probs": True}}),
    "accumulation": ("aot", {"config": {"per_device_train_batch_size": 2, "gradient_accumulation_steps": 2}}),
    "moe_router_loss": ("aot", {"model": tiny_moe, "config": {"router_aux_loss_coef": 0.01}}),
    "padding_free": ("aot_unpaired", {"config": {"padding_free": True}}),  # TRL 1.16 turns it off, saying so
}


@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_one_step_equals_trls_with_the_same_setting(setting, tmp_path):
    loss_type, kwargs = SETTINGS[setting]
    ours = one_step(AOTDPOTrainer, tmp_path, loss_type, **kwargs)
    theirs = one_step(trl.DPOTrainer, tmp_path, loss_type, **kwargs)
    assert_same_step(ours, theirs)
    if setting == "moe_router_loss":
        assert ours[2].aux_loss_enabled and ours[2].state.log_history[0]["aux_loss"] > 0


CHUNKED = {  # the settings whose passes chunk_size reaches: both models, WPO fields, precomputed, MoE
    "plain": ("aot", {}),
    "wpo": (["aot_unpaired", "sigmoid"], {"config": {"use_weighting": True}}),
    "precompute_and_sft": (["aot", "sft"], {"config": {"precompute_ref_log_probs": True, "loss_weights": [1, 0.5]}}),
    "moe_router_loss": ("aot_unpaired", {"model": tiny_moe, "config": {"router_aux_loss_coef": 0.01}}),
}  # fmt: skip


class _RowsSeen:
    """TRL's chunked log-probability function, recording the number of rows of each call."""

    def __init__(self, function):
        self.function, self.rows = function, []

    def apply(self, hidden, *args):
        self.rows.append(hidden.shape[0])
        return self.function.apply(hidden, *args)


@pytest.mark.parametrize("setting", sorted(CHUNKED))
def test_chunk_size_step_equals_trls(setting, tmp_path, monkeypatch):
    """With chunk_size the head scores completion positions only, in chunks: the same step,
    the same metrics as TRL's own trainer (which, on CPU, scores every position at once; with
    WPO weights, which TRL refuses for AOT, as this trainer without chunk_size)."""
    loss_type, kwargs = CHUNKED[setting]
    seen = _RowsSeen(trl.trainer.utils._ChunkedLogProbFunction)
    monkeypatch.setattr(trl.trainer.utils, "_ChunkedLogProbFunction", seen)
    baseline = AOTDPOTrainer if setting.startswith("wpo") else trl.DPOTrainer  # TRL refuses WPO for AOT
    theirs = one_step(baseline, tmp_path, loss_type, **kwargs)
    full_rows, seen.rows = seen.rows, []
    ours = one_step(AOTDPOTrainer, tmp_path, loss_type, chunk_size=3, **kwargs)
    assert_same_step(ours, theirs)
    logged, trls = ours[2].state.log_history[0], theirs[2].state.log_history[0]
    for name in ("entropy", "logits/chosen", "logits/rejected", "mean_token_accuracy", "rewards/margins"):
        assert logged[name] == pytest.approx(trls[name], **approx("float32_relative")), name
    assert trl.trainer.utils._ChunkedLogProbFunction is seen  # restored after each step
    batch = first_batch(ours[2])
    completion = int(batch["completion_mask"][:, 1:].sum())
    assert max(seen.rows) <= 3 and sum(seen.rows) % completion == 0 and sum(seen.rows) >= completion
    assert min(full_rows) > completion  # TRL's own head: every position of the batch


def test_one_step_with_peft_adapters_equals_trls(tmp_path):
    peft = import_or_skip("peft")
    lora = peft.LoraConfig(
        r=4, lora_alpha=8, target_modules=["c_attn"], fan_in_fan_out=True, lora_dropout=0.0
    )
    kwargs = {"reference": False, "peft_config": lora}
    ours = one_step(AOTDPOTrainer, tmp_path, "aot_unpaired", **kwargs)
    theirs = one_step(trl.DPOTrainer, tmp_path, "aot_unpaired", **kwargs)
    assert_same_step(ours, theirs)
    assert all("lora" in name for name in ours[1])


def _wpo_weights(model, input_ids, attention_mask, completion_mask):
    """TRL's WPO weight from the definition: exp of the mean over completion tokens of
    log pi(token) - log sum_v pi_v^2, from the full logits (TRL reads its fused head)."""
    logp = torch.log_softmax(
        model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1].float(), -1
    )
    token = logp.gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    mask = completion_mask[:, 1:].float()
    aligned = (token - torch.logsumexp(2 * logp, -1)) * mask
    return torch.exp(aligned.sum(1) / mask.sum(1).clamp_min(1))


@pytest.mark.parametrize("loss_type", ["aot", "aot_unpaired"])
def test_wpo_weights_are_the_masses_of_the_weighted_coupling(loss_type, tmp_path):
    trainer = make_trainer(AOTDPOTrainer, [loss_type, "sigmoid"], tmp_path, config={"use_weighting": True})
    batch = first_batch(trainer)
    with torch.no_grad():
        got = trainer.compute_loss(trainer.model, batch)
        tensors = batch["input_ids"], batch["attention_mask"], batch["completion_mask"]
        completion = batch["completion_mask"].clone()
        completion[:, 0] = 0  # a token at position 0 is not scored
        pc, pr = sequence_logps(trainer.model, tensors[0], tensors[1], completion).chunk(2)
        rc, rr = sequence_logps(trainer.ref_model, tensors[0], tensors[1], completion).chunk(2)
        wc, wr = _wpo_weights(trainer.model, *tensors).chunk(2)
        # the sigmoid term as TRL weighs it (TRL's own trainer, the same weights), plus the AOT term
        sigmoid = make_trainer(trl.DPOTrainer, "sigmoid", tmp_path, config={"use_weighting": True})
        trls = sigmoid.compute_loss(sigmoid.model, batch)
    if loss_type == "aot":
        term = aot_loss.paired(pc, pr, rc, rr, beta=0.5, label_smoothing=0.1, weights=wc * wr)
    else:
        term = aot_loss.unpaired(
            pc - rc, pr - rr, beta=0.5, label_smoothing=0.1, pos_weights=wc, neg_weights=wr
        )
    torch.testing.assert_close(got, trls + term, **tol("float32_paths"))
    unweighted = make_trainer(AOTDPOTrainer, [loss_type, "sigmoid"], tmp_path)
    with torch.no_grad():
        assert abs(unweighted.compute_loss(unweighted.model, batch).item() - got.item()) > 1e-3


def test_trl_alone_refuses_wpo_weights_for_aot(tmp_path):
    with pytest.raises(NotImplementedError, match="WPO-style weighting is not implemented for 'aot'"):
        make_trainer(trl.DPOTrainer, "aot", tmp_path, config={"use_weighting": True})


@pytest.mark.parametrize("loss_type", ["aot", "aot_unpaired"])
def test_trls_own_train_loss_types_test_passes_with_the_trainer_substituted(loss_type, tmp_path):
    """TRL's tests/test_dpo_trainer.py::test_train_loss_types, with AOTDPOTrainer in place of
    DPOTrainer, a tiny Qwen2 built from a config (its copy the reference) and an in-memory data
    set in place of the Hub's (offline), and a CPU in float32: train with evaluation every 3
    steps, then every parameter has moved."""
    torch.manual_seed(0)
    config = transformers.Qwen2Config(
        num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, hidden_size=16,
        intermediate_size=32, vocab_size=VOCAB, max_position_embeddings=64,
    )  # fmt: skip
    training_args = trl.DPOConfig(
        output_dir=str(tmp_path), loss_type=loss_type, label_smoothing=0.0, learning_rate=0.1, report_to="none",
        eval_strategy="steps", eval_steps=3, use_cpu=True, bf16=False, disable_tqdm=True, save_strategy="no",
    )  # fmt: skip
    model = transformers.Qwen2ForCausalLM(config)
    reference = copy.deepcopy(model)  # TRL loads it from the Hub id; here, a copy of the start
    trainer = AOTDPOTrainer(
        model=model,
        ref_model=reference,
        args=training_args,
        processing_class=make_tokenizer(),
        train_dataset=datasets.Dataset.from_list(ROWS * 4),
        eval_dataset=datasets.Dataset.from_list(ROWS),
    )
    previous_trainable_params = {n: param.clone() for n, param in trainer.model.named_parameters()}
    trainer.train()
    assert trainer.state.log_history[-1]["train_loss"] is not None
    assert any("eval_loss" in entry for entry in trainer.state.log_history)
    for n, param in previous_trainable_params.items():
        new_param = trainer.model.get_parameter(n)
        assert not torch.equal(param, new_param), f"Parameter {n} has not changed."
