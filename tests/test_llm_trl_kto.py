"""AOTKTOTrainer on TRL's unpaired (prompt, completion, label) data: one step against an
independent computation (aot-loss's own sequence_logps, then aot_loss.unpaired with unequal
counts), imbalanced and one-sided batches, training, refusals."""

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
from aot_loss.llm.trl import AOTKTOTrainer  # noqa: E402

# 1 desirable : 4 undesirable, as the imbalanced data set
ROWS = [
    {"prompt": "what is the cat", "completion": " the cat sat", "label": True},
    {"prompt": "why", "completion": " the dog ran fast", "label": False},
    {"prompt": "what is a mat", "completion": " slow", "label": False},
    {"prompt": "the dog", "completion": " sat on a cat", "label": False},
    {"prompt": "the cat", "completion": " bad dog", "label": False},
]
BETA = 0.5


def make_policy():
    """The same policy on every call: a tiny GPT-2 moved away from its reference, so rewards are
    not all zero. (A copy of a trainer's model would not do: TRL patches its forward.)"""
    torch.manual_seed(0)
    policy = tiny_model("gpt2", torch.float32)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return policy


def make_trainer(tmp_path, rows=ROWS, loss_type="aot_unpaired", config=None, **kwargs):
    policy = make_policy()
    settings = dict(
        output_dir=str(tmp_path), per_device_train_batch_size=len(rows), max_steps=1, loss_type=loss_type,
        beta=BETA, learning_rate=0.1, report_to=[], logging_steps=1, use_cpu=True, save_strategy="no",
        disable_tqdm=True, bf16=False, optim="sgd", max_grad_norm=0.0,  # plain SGD: no clipping
    )  # fmt: skip
    return AOTKTOTrainer(
        model=policy, ref_model=tiny_model("gpt2", torch.float32), args=trl.KTOConfig(**(settings | (config or {}))),
        train_dataset=datasets.Dataset.from_list(rows), processing_class=make_tokenizer(), **kwargs,
    )  # fmt: skip


def _batch(trainer):
    return next(iter(trainer.get_train_dataloader()))


def _independent_loss(trainer, model, batch, masses=None, **options):
    """The rewards from aot-loss's own log-probabilities (not TRL's fused head), then the loss."""
    completion = batch["completion_mask"].clone()
    completion[:, 0] = 0  # as TRL: nothing predicts a token at position 0
    tensors = batch["input_ids"], batch["attention_mask"], completion
    with torch.no_grad():
        reference = sequence_logps(trainer.ref_model, *tensors)
    rewards = sequence_logps(model, *tensors) - reference
    label = torch.as_tensor(batch["label"], dtype=torch.bool)
    if masses is not None:
        options |= {"pos_weights": masses[label], "neg_weights": masses[~label]}
    return aot_loss.unpaired(rewards[label], rewards[~label], beta=BETA, **options)


def _assert_same_step(trainer, start, batch, want):
    """The trainer's loss on ``batch`` is ``want`` (computed from ``start``, a copy of its
    policy), and its one SGD step on that (whole) batch is the step taken by hand."""
    with torch.no_grad():
        got = trainer.compute_loss(trainer.model, batch)
    torch.testing.assert_close(got, want.detach(), **tol("float32_paths"))
    want.backward()
    output = trainer.train()
    assert output.training_loss == pytest.approx(want.item(), **approx("float32_relative"))
    moved = dict(trainer.model.named_parameters())
    for name, p in start.named_parameters():
        expected = p.detach() - 0.1 * (p.grad if p.grad is not None else torch.zeros_like(p))
        torch.testing.assert_close(moved[name].detach(), expected, **tol("float32_model"), msg=name)


@pytest.mark.parametrize(
    ("options", "chunk_size"),
    [({}, None), ({}, 2), ({"loss": "hinge"}, None), ({"order": 2, "label_smoothing": 0.1}, None)],
)
def test_one_step_equals_the_independent_computation(options, chunk_size, tmp_path):
    trainer = make_trainer(tmp_path, aot_options=options, chunk_size=chunk_size)
    batch = _batch(trainer)
    assert sum(batch["label"]) == 1 and len(batch["label"]) == 5  # unequal counts: 1 against 4
    start = make_policy()
    want = _independent_loss(trainer, start, batch, **options)
    _assert_same_step(trainer, start, batch, want)
    logged = trainer.state.log_history[0]
    assert logged["aot/one_sided_batches"] == 0.0 and 0.0 <= logged["aot/dominance_violation"] <= 1.0
    assert "entropy" in logged and "logps/chosen" in logged  # TRL's own metrics


MASSES = [1.0, 0.5, 2.0, 0.0, 1.5]  # per row of ROWS: the desirable one, then four undesirable


def test_a_weights_column_gives_each_example_its_mass(tmp_path):
    rows = [row | {"w": w} for row, w in zip(ROWS, MASSES, strict=True)]
    trainer = make_trainer(tmp_path, rows, aot_options={"weights": "w"})
    batch = _batch(trainer)  # the column survives TRL's preprocessing and collation
    masses = batch["w"]
    assert sorted(masses.tolist()) == sorted(MASSES)
    start = make_policy()
    want = _independent_loss(trainer, start, batch, masses=masses)
    uniform = _independent_loss(trainer, start, batch)
    assert abs(want.item() - uniform.item()) > 1e-4  # the masses matter
    _assert_same_step(trainer, start, batch, want)


def test_a_weights_column_survives_precomputed_references(tmp_path):
    rows = [row | {"w": w} for row, w in zip(ROWS, MASSES, strict=True)]
    live = make_trainer(tmp_path, rows, aot_options={"weights": "w"})
    precomputed = make_trainer(
        tmp_path, rows, config={"precompute_ref_log_probs": True}, aot_options={"weights": "w"}
    )
    batch = _batch(precomputed)
    assert "ref_logps" in batch and "w" in batch
    with torch.no_grad():
        got = precomputed.compute_loss(precomputed.model, batch)
        want = live.compute_loss(live.model, {k: v for k, v in batch.items() if k != "ref_logps"})
    torch.testing.assert_close(got, want, **tol("float32_paths"))


@pytest.mark.parametrize(
    ("column", "values", "error", "message"),
    [
        (3, MASSES, TypeError, r"aot_options\['weights'\] must name a dataset column \(a str\), got 3"),
        ("weight", MASSES, ValueError, r"aot_options\['weights'\]='weight' names no column of the dataset, whose columns are"),
        ("w", [1.0, -1.0, 1.0, 1.0, 1.0], ValueError, r"the weights column 'w' must hold a finite number >= 0 per example, got -1.0"),
        ("w", [1.0, 1.0, float("nan"), 1.0, 1.0], ValueError, r"the weights column 'w' must hold a finite number >= 0 per example, got nan"),
        ("w", [0.0, 1.0, 1.0, 1.0, 1.0], ValueError, r"pos_weights must not contain a row with zero total mass"),
        ("w", ["1", "1", "1", "1", "1"], ValueError, r"the weights column 'w' must hold a finite number >= 0 per example, got '1'"),
    ],
)  # fmt: skip
def test_bad_weights_say_why(column, values, error, message, tmp_path):
    rows = [row | {"w": w} for row, w in zip(ROWS, values, strict=True)]
    with pytest.raises(error, match=message):
        trainer = make_trainer(tmp_path, rows, aot_options={"weights": column})
        trainer.train()


@pytest.mark.parametrize("label", [True, False])
def test_a_one_sided_batch_has_zero_loss_and_gradient_and_is_counted(label, tmp_path):
    rows = [row | {"label": label} for row in ROWS]
    trainer = make_trainer(tmp_path, rows)
    batch = _batch(trainer)
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    assert loss.item() == 0.0
    grads = [p.grad for p in trainer.model.parameters() if p.requires_grad]
    assert all(g is not None and not g.any() for g in grads)
    assert trainer._metrics["train"]["aot/one_sided_batches"] == [1.0]
    assert "aot/dominance_violation" not in trainer._metrics["train"]


def test_one_sided_batches_log_as_a_count(tmp_path):
    rows = [row | {"label": False} for row in ROWS] * 2
    trainer = make_trainer(
        tmp_path, rows, config={"per_device_train_batch_size": 5, "max_steps": 2, "logging_steps": 2}
    )
    trainer.train()
    assert trainer.state.log_history[0]["aot/one_sided_batches"] == 2.0


def test_two_steps_move_every_trainable_parameter(tmp_path):
    trainer = make_trainer(tmp_path, config={"max_steps": 2, "per_device_train_batch_size": 5})
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    reference = copy.deepcopy(trainer.ref_model.state_dict())
    trainer.train()
    assert all(not torch.equal(p, before[n]) for n, p in trainer.model.named_parameters() if p.requires_grad)
    assert all(torch.equal(p, reference[n]) for n, p in trainer.ref_model.state_dict().items())


def test_other_loss_types_are_trls(tmp_path):
    trainer = make_trainer(tmp_path, loss_type="apo_zero_unpaired")
    ours = trainer.compute_loss(trainer.model, _batch(trainer))
    theirs_trainer = trl.KTOTrainer(
        model=trainer.model, ref_model=trainer.ref_model, args=trainer.args,
        train_dataset=datasets.Dataset.from_list(ROWS), processing_class=make_tokenizer(),
    )  # fmt: skip
    torch.testing.assert_close(ours, theirs_trainer.compute_loss(trainer.model, _batch(trainer)))


@pytest.mark.parametrize(
    ("config", "options", "message"),
    [
        ({"desirable_weight": 1.33}, {}, r"desirable_weight=1.33 has no effect on loss_type='aot_unpaired'"),
        ({"undesirable_weight": 0.5}, {}, r"undesirable_weight=0.5 has no effect"),
        ({}, {"beta": 0.2}, r"aot_options must not set 'beta': it comes from the KTOConfig"),
        ({}, {"reduction": "sum"}, r"aot_options must not set 'reduction'"),
        ({}, {"pos_weights": None}, r"aot_options got an unknown option 'pos_weights'"),
        ({}, {"loss": "cubic"}, r"loss must be one of"),
        (
            {"loss_type": "kto"},
            {"loss": "hinge"},
            r"aot_options need loss_type='aot_unpaired', got loss_type='kto'",
        ),
        (
            {"loss_type": "kto"},
            {"weights": "label"},
            r"aot_options need loss_type='aot_unpaired', got loss_type='kto'",
        ),
    ],
)
def test_refused_settings_say_why(config, options, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        make_trainer(tmp_path, config=config, aot_options=options)


def _global_batch(trainer):
    """All of ROWS in one batch, in their order, as the trainer collates them."""
    return trainer.data_collator([trainer.train_dataset[i] for i in range(len(ROWS))])


def _rank_share(batch, rank):
    """Rank 0 gets rows 0-2 (1 desirable, 2 undesirable), rank 1 rows 3-4 (no desirable one)."""
    rows = slice(0, 3) if rank == 0 else slice(3, 5)
    return {k: (v[rows] if isinstance(v, (torch.Tensor, list)) else v) for k, v in batch.items()}


def _loss_and_grads(trainer, batch):
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    return loss.detach(), {
        n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None
    }


def _weighted(weighted: bool) -> dict:
    """make_trainer's arguments for the weighted or unweighted global run."""
    if not weighted:
        return {}
    rows = [row | {"w": w} for row, w in zip(ROWS, MASSES, strict=True)]
    return {"rows": rows, "aot_options": {"weights": "w"}}


def kto_worker(rank: int, k: int, port: int, out_dir: str, weighted: bool) -> None:
    """One rank of an accelerate (multi-CPU) run: its share of the global batch, coupled over
    the group; the gradients averaged as DDP averages them."""
    import os
    from pathlib import Path

    env = {"RANK": rank, "LOCAL_RANK": rank, "WORLD_SIZE": k, "LOCAL_WORLD_SIZE": k, "MASTER_PORT": port}
    os.environ.update({name: str(value) for name, value in env.items()}, MASTER_ADDR="127.0.0.1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    kwargs = _weighted(weighted)
    options = kwargs.pop("aot_options", {}) | {"group": "world"}
    trainer = make_trainer(Path(out_dir), aot_options=options, **kwargs)
    loss, grads = _loss_and_grads(trainer, _rank_share(_global_batch(trainer), rank))
    for grad in grads.values():
        torch.distributed.all_reduce(grad)
        grad /= k
    result = {"loss": loss, "grads": grads, "type": str(trainer.accelerator.distributed_type)}
    torch.save(result, Path(out_dir) / f"rank{rank}.pt")
    trainer.accelerator.wait_for_everyone()
    trainer.accelerator.end_training()


@pytest.mark.parametrize("weighted", [False, True])
def test_two_ranks_with_group_world_equal_one_process_on_the_global_batch(weighted, tmp_path):
    import socket

    from test_distributed import spawn

    with socket.socket() as s:  # a free port for accelerate's env:// rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spawn(kto_worker, (2, port, str(tmp_path), weighted), 2, deadline_s=180.0)
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    assert {r["type"] for r in results} == {"DistributedType.MULTI_CPU"}
    trainer = make_trainer(tmp_path, **_weighted(weighted))
    loss, grads = _loss_and_grads(trainer, _global_batch(trainer))
    for result in results:  # every rank: the global loss, and DDP's average is the global gradient
        torch.testing.assert_close(result["loss"], loss, **tol("float32_processes"))
        assert result["grads"].keys() == grads.keys()
        for name, grad in grads.items():
            torch.testing.assert_close(result["grads"][name], grad, **tol("float32_model"), msg=name)


@pytest.mark.parametrize("chunk_size", [None, 3])
def test_precomputed_reference_logps_give_the_same_loss(chunk_size, tmp_path):
    live = make_trainer(tmp_path)
    precomputed = make_trainer(tmp_path, config={"precompute_ref_log_probs": True}, chunk_size=chunk_size)
    batch = next(iter(precomputed.get_train_dataloader()))
    assert "ref_logps" in batch
    with torch.no_grad():
        got = precomputed.compute_loss(precomputed.model, batch)
        want = live.compute_loss(live.model, {k: v for k, v in batch.items() if k != "ref_logps"})
    torch.testing.assert_close(got, want, **tol("float32_paths"))


def test_peft_policy_with_its_adapters_disabled_is_the_reference(tmp_path):
    """A new LoRA adapter (peft_config): TRL's reference is the policy with its adapters
    disabled, which the independent computation reads with peft's own disable_adapter."""
    peft = import_or_skip("peft")
    lora = peft.LoraConfig(
        r=4, lora_alpha=8, target_modules=["c_attn"], fan_in_fan_out=True, lora_dropout=0.0
    )
    settings = dict(
        output_dir=str(tmp_path), per_device_train_batch_size=5, loss_type="aot_unpaired", beta=BETA,
        report_to=[], use_cpu=True, bf16=False, disable_tqdm=True, save_strategy="no",
    )  # fmt: skip
    trainer = AOTKTOTrainer(
        model=tiny_model("gpt2", torch.float32), ref_model=None, args=trl.KTOConfig(**settings),
        train_dataset=datasets.Dataset.from_list(ROWS), processing_class=make_tokenizer(), peft_config=lora,
    )  # fmt: skip
    torch.manual_seed(1)
    with torch.no_grad():  # the adapters away from zero (their start), so the policy differs from the base
        for name, p in trainer.model.named_parameters():
            if "lora_B" in name:
                p.add_(torch.randn_like(p) * 0.1)
    batch = _batch(trainer)
    completion = batch["completion_mask"].clone()
    completion[:, 0] = 0
    tensors = batch["input_ids"], batch["attention_mask"], completion
    with torch.no_grad():
        got = trainer.compute_loss(trainer.model, batch)
        rewards = sequence_logps(trainer.model, *tensors)
        with trainer.model.disable_adapter():
            rewards = rewards - sequence_logps(trainer.model, *tensors)
    label = torch.as_tensor(batch["label"], dtype=torch.bool)
    assert rewards.abs().max() > 1e-3  # the adapters matter
    want = aot_loss.unpaired(rewards[label], rewards[~label], beta=BETA)
    torch.testing.assert_close(got, want, **tol("float32_paths"))


def test_a_mixture_of_experts_router_loss_is_added_as_trl_adds_it(tmp_path):
    from test_llm_trl import tiny_moe

    losses, logged = [], None
    for coef in (0.0, 0.01):
        settings = dict(
            output_dir=str(tmp_path), per_device_train_batch_size=5, loss_type="aot_unpaired", beta=BETA,
            report_to=[], use_cpu=True, bf16=False, disable_tqdm=True, save_strategy="no",
            router_aux_loss_coef=coef,
        )  # fmt: skip
        trainer = AOTKTOTrainer(
            model=tiny_moe(), ref_model=tiny_moe(), args=trl.KTOConfig(**settings),
            train_dataset=datasets.Dataset.from_list(ROWS), processing_class=make_tokenizer(),
        )  # fmt: skip
        with torch.no_grad():
            losses.append(trainer.compute_loss(trainer.model, _batch(trainer)))
        logged = trainer._metrics["eval"].get("aux_loss")
    assert trainer.aux_loss_enabled and logged and logged[-1] > 0
    torch.testing.assert_close(losses[1] - losses[0], torch.tensor(0.01 * logged[-1]), **tol("float32"))
