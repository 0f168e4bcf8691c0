"""PolicyWithReference, ReferenceCache and the LLM losses on tiny random models (offline)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from optional import import_or_skip
from test_llm_logps import SEQUENCES, batch, tiny_model
from tolerances import tol

import aot_loss
from aot_loss.llm import PolicyWithReference, ReferenceCache, paired_loss, sequence_logps, unpaired_loss

peft = import_or_skip("peft")


def as_batch(side: str = "right", sequences=SEQUENCES, keys=None) -> dict:
    ids, attention, completion = batch(side, sequences)
    out = {"input_ids": ids, "attention_mask": attention, "completion_mask": completion}
    if keys is not None:
        out["keys"] = keys
    return out


def lora(model):
    config = peft.LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    return peft.get_peft_model(model, config)


def perturb(model: torch.nn.Module, scale: float = 0.05) -> None:
    """Move the policy away from its reference, as training would."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale)


def test_copy_reference_is_frozen_and_unchanged_by_training():
    model = PolicyWithReference(tiny_model("gpt2", resid_pdrop=0.1))
    before = {n: p.clone() for n, p in model.reference.named_parameters()}
    optimizer = torch.optim.SGD(model.policy.parameters(), lr=0.5)
    model.train()
    assert model.policy.training and not model.reference.training
    for _ in range(3):
        out = unpaired_loss(model, as_batch(), torch.tensor([True, False, True, False]), beta=1.0)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    assert all(not p.requires_grad and p.grad is None for p in model.reference.parameters())
    assert all(torch.equal(p, before[n]) for n, p in model.reference.named_parameters())
    assert not all(torch.equal(p, before[n]) for n, p in model.policy.named_parameters())
    assert out.loss.requires_grad and not model.reference.training


def test_reference_runs_in_eval_mode_without_gradients():
    model = PolicyWithReference(tiny_model("gpt2", resid_pdrop=0.5, embd_pdrop=0.5)).train()
    first = model.reference_logps(*as_batch().values())
    second = model.reference_logps(*as_batch().values())
    assert torch.equal(first, second) and not first.requires_grad  # no dropout, no graph


def test_adapter_disabled_reference_equals_the_base_model():
    base = tiny_model("llama")
    with torch.no_grad():
        want = sequence_logps(base, *as_batch("left").values())
    model = PolicyWithReference(lora(base), reference="adapters")
    assert model.reference is None
    model.train()
    got = model.reference_logps(*as_batch("left").values())
    torch.testing.assert_close(got, want, **tol("float64"))
    assert model.policy.training  # the policy's mode is restored after the reference pass
    policy = model.policy_logps(*as_batch("left").values())
    assert not torch.allclose(policy, want)  # the adapters are active for the policy
    policy.sum().backward()
    grads = [n for n, p in model.policy.named_parameters() if p.grad is not None]
    assert grads and all("lora_" in n for n in grads)


def test_cached_reference_equals_the_live_reference_and_round_trips():
    policy = tiny_model("gpt2")
    live = PolicyWithReference(policy)
    perturb(policy)
    keys = ["a", "b", "c", "d"]
    halves = [
        as_batch(sequences=SEQUENCES[:2], keys=keys[:2]),
        as_batch(sequences=SEQUENCES[2:], keys=keys[2:]),
    ]
    cache = ReferenceCache.build(live.reference, halves)
    restored = ReferenceCache()
    restored.load_state_dict(cache.state_dict())
    assert len(restored) == 4
    cached = PolicyWithReference(policy, reference=restored)
    want = live.rewards(*as_batch().values())
    got = cached.rewards(*as_batch().values(), keys=keys)
    torch.testing.assert_close(got, want, **tol("float64"))
    out = unpaired_loss(cached, as_batch(keys=keys), torch.tensor([True, True, False, False]), beta=0.5)
    torch.testing.assert_close(out.chosen_rewards, want[:2].detach(), **tol("float64"))


def test_cache_values_may_be_any_real_scalar():
    cache = ReferenceCache({"a": -1, "b": np.float32(-2.5), "c": torch.tensor(-3.25)})
    assert cache.lookup(["c", "b", "a"]).tolist() == [-3.25, -2.5, -1.0]


def test_an_explicit_reference_model():
    policy, reference = tiny_model("gpt2"), tiny_model("gpt2")
    perturb(policy)
    model = PolicyWithReference(policy, reference=reference)
    assert not any(p.requires_grad for p in reference.parameters())
    with torch.no_grad():
        want = sequence_logps(policy, *as_batch().values()) - sequence_logps(reference, *as_batch().values())
    torch.testing.assert_close(model.rewards(*as_batch().values()), want)


OPTIONS = [{"beta": 0.5}, {"loss": "hinge", "beta": 0.3}, {"loss": "squared_hinge", "beta": 1.0, "reduction": "sum"}, {"sort": "soft", "soft_strength": 2.0}, {"beta": 0.5, "order": 2, "quantile_range": (0.0, 0.5)}]  # fmt: skip


@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("with_weights", [False, True])
def test_paired_loss_equals_the_core_function_on_hand_computed_rewards(options, with_weights):
    if with_weights and options.get("sort") == "soft":
        pytest.skip("weights are refused with sort='soft'")
    policy = tiny_model("llama")
    model = PolicyWithReference(policy)
    perturb(policy)
    chosen = as_batch("left", SEQUENCES[:2])
    rejected = as_batch("left", [(p, [40, 41, 42, 43]) for p, _ in SEQUENCES[2:]])  # longer: padded
    weights = torch.tensor([1.0, 3.0]) if with_weights else None
    out = paired_loss(model, chosen, rejected, weights=weights, **options)
    with torch.no_grad():
        pc, pr = (sequence_logps(policy, *b.values()) for b in (chosen, rejected))
        rc, rr = (sequence_logps(model.reference, *b.values()) for b in (chosen, rejected))
    want = aot_loss.paired(pc, pr, rc, rr, weights=weights, **options)
    torch.testing.assert_close(out.loss.detach(), want, **tol("float64_sums"))
    torch.testing.assert_close(out.chosen_rewards, pc - rc)
    assert out.metrics["reward_accuracy"] == ((pc - rc) > (pr - rr)).double().mean().item()
    assert out.metrics["dominance_violation"] == aot_loss.metrics.fsd_violation(pc - pr, rc - rr).item()


@pytest.mark.parametrize("options", OPTIONS)
def test_unpaired_loss_equals_the_core_function_on_hand_computed_rewards(options):
    policy = tiny_model("gpt2")
    model = PolicyWithReference(policy)
    perturb(policy)
    desirable = torch.tensor([True, False, False, True])
    weights = None if options.get("sort") == "soft" else torch.tensor([1.0, 2.0, 0.5, 1.0])
    out = unpaired_loss(model, as_batch(), desirable, weights=weights, **options)
    with torch.no_grad():
        r = sequence_logps(policy, *as_batch().values()) - sequence_logps(
            model.reference, *as_batch().values()
        )
    split = {} if weights is None else {"pos_weights": weights[desirable], "neg_weights": weights[~desirable]}
    want = aot_loss.unpaired(r[desirable], r[~desirable], **split, **options)
    torch.testing.assert_close(out.loss.detach(), want, **tol("float64_sums"))
    wins = [float(a > b) for a in r[desirable] for b in r[~desirable]]
    assert out.metrics["reward_accuracy"] == pytest.approx(sum(wins) / len(wins))
    assert set(out.metrics) >= {
        "chosen_reward_q10",
        "chosen_reward_q50",
        "rejected_reward_q90",
        "dominance_violation",
    }


def test_thirty_steps_on_a_toy_preference_lower_the_loss_and_raise_the_quantile_margin():
    torch.manual_seed(0)
    policy = tiny_model("gpt2", torch.float32)
    model = PolicyWithReference(policy, chunk_size=8)
    prompts = [[int(t) for t in torch.randint(3, 40, (3,))] for _ in range(8)]
    good = as_batch("right", [(p, [50, 51, 52]) for p in prompts])  # the preferred continuation
    bad = as_batch("right", [(p, [60, 61]) for p in prompts])
    optimizer = torch.optim.Adam(policy.parameters(), lr=3e-3)
    history = []
    for _ in range(30):
        out = paired_loss(model, good, bad, beta=1.0)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        margin = out.metrics["chosen_reward_q50"] - out.metrics["rejected_reward_q50"]
        history.append(
            (out.loss.item(), margin, out.metrics["chosen_reward_q10"] - out.metrics["rejected_reward_q90"])
        )
    (loss0, margin0, tail0), (loss1, margin1, tail1) = history[0], history[-1]
    assert loss1 < 0.5 * loss0, history
    assert margin1 > margin0 + 1.0 and tail1 > tail0, history


def _model():
    return PolicyWithReference(tiny_model("gpt2"))


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: PolicyWithReference(tiny_model("gpt2"), reference="adapters"), ValueError, r"reference='adapters' needs a PEFT model .* got GPT2LMHeadModel"),
        (lambda: PolicyWithReference(tiny_model("gpt2"), reference="frozen"), ValueError, r"reference must be 'copy', 'adapters', a model or a ReferenceCache, got 'frozen'"),
        (lambda: PolicyWithReference(tiny_model("gpt2"), reference=3), TypeError, r"reference must be 'copy', 'adapters', a model or a ReferenceCache, got 3"),
        (lambda: PolicyWithReference(model := tiny_model("gpt2"), reference=model), ValueError, r"reference must not be the policy itself"),
        (lambda: PolicyWithReference(tiny_model("gpt2"), reference=ReferenceCache()).rewards(*as_batch().values()), ValueError, r"the reference is a ReferenceCache: pass the batch's keys"),
        (lambda: PolicyWithReference(tiny_model("gpt2"), reference=ReferenceCache({"a": 0.0})).rewards(*as_batch().values(), keys=["a", "b", "c", "d"]), KeyError, r"no entry for keys \['b', 'c', 'd'\]"),
        (lambda: PolicyWithReference(tiny_model("gpt2"), reference=ReferenceCache()).rewards(*as_batch().values(), keys=["a"]), ValueError, r"keys has 1 entries for a batch of 4 sequences"),
        (lambda: ReferenceCache.build(tiny_model("gpt2"), [as_batch()]), ValueError, r"needs a 'keys' entry"),
        (lambda: unpaired_loss(_model(), as_batch(), torch.tensor([1, 0, 1, 0])), ValueError, r"desirable must be a bool tensor of shape \(4,\), got \(torch.int64, \(4,\)\)"),
        (lambda: unpaired_loss(_model(), as_batch(), torch.tensor([True, False])), ValueError, r"desirable must be a bool tensor of shape \(4,\)"),
        (lambda: unpaired_loss(_model(), as_batch(), torch.tensor([True] * 4)), ValueError, r"r_neg must not be empty"),
        (lambda: unpaired_loss(_model(), {"input_ids": as_batch()["input_ids"]}, torch.tensor([True] * 4)), ValueError, r"a batch needs 'attention_mask'"),
        (lambda: paired_loss(_model(), as_batch(), as_batch(sequences=SEQUENCES[:3])), ValueError, r"chosen and rejected must have the same number of rows \(pairs\), got 4 and 3"),
        (lambda: paired_loss(_model(), as_batch(), as_batch(), beta=-1.0), ValueError, r"beta must be a finite number > 0, got -1.0"),
        (lambda: paired_loss(_model(), as_batch() | {"attention_mask": torch.ones(4, 9, dtype=torch.long)}, as_batch()), ValueError, r"attention_mask must have the shape of input_ids \(4, 7\), got \(4, 9\)"),
        (lambda: unpaired_loss(_model(), as_batch(), torch.tensor([True, False] * 2), weights=torch.ones(5)), ValueError, r"weights must have shape \(4,\), one per sequence, got \(5,\)"),
        (lambda: unpaired_loss(_model(), as_batch(), torch.tensor([True, False] * 2), weights=[1.0] * 4), TypeError, r"weights must be a torch.Tensor or None, got list"),
        (lambda: PolicyWithReference(tiny_model("gpt2"), chunk_size=0), ValueError, r"chunk_size must be a positive int or None, got 0"),
        (lambda: PolicyWithReference(tiny_model("gpt2"), average=1), TypeError, r"average must be a bool, got 1"),
        (lambda: ReferenceCache({"a": "-1.5"}), TypeError, r"ReferenceCache values must be real numbers, got '-1.5' for key 'a'"),
        (lambda: ReferenceCache({"a": -1.0, "b": float("nan")}), ValueError, r"must be finite log-probabilities, got nan for key 'b'"),
        (lambda: ReferenceCache().load_state_dict({"keys": ["a"], "logps": torch.tensor([float("-inf")])}), ValueError, r"got -inf for key 'a'"),
        # a zip error, a KeyError and an AttributeError before
        (lambda: ReferenceCache().load_state_dict({"keys": ["a", "b"], "logps": torch.tensor([1.0])}), ValueError, r"state has 2 keys but 1 logps; they must pair up"),
        (lambda: ReferenceCache().load_state_dict({"keys": ["a"]}), ValueError, r"state lacks \['logps'\]"),
        (lambda: ReferenceCache().load_state_dict([("a", -1.0)]), TypeError, r"state must be a mapping with 'keys' and 'logps'.*got list"),
        (lambda: ReferenceCache().load_state_dict({"keys": ["a"], "logps": [-1.0]}), TypeError, r"state\['logps'\] must be a 1-D tensor, got list"),
    ],
)  # fmt: skip
def test_bad_inputs_get_clear_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()


def _loss_and_grads(model, variant, seed, **kwargs):
    torch.manual_seed(seed)
    model.policy.zero_grad()
    if variant == "paired":
        chosen = as_batch("left", SEQUENCES[:2])
        rejected = as_batch("left", [(p, [40, 41, 42]) for p, _ in SEQUENCES[2:]])
        out = paired_loss(model, chosen, rejected, beta=0.5, **kwargs)
    else:
        out = unpaired_loss(model, as_batch(), torch.tensor([True, False, True, False]), beta=0.5, **kwargs)
    out.loss.backward()
    return out.loss.detach(), {
        n: p.grad.clone() for n, p in model.policy.named_parameters() if p.grad is not None
    }


def _assert_same(first, second):
    (loss, grads), (other_loss, other_grads) = first, second
    torch.testing.assert_close(other_loss, loss, **tol("float32_paths"))
    assert grads.keys() == other_grads.keys() and len(grads) > 0
    for name in grads:
        torch.testing.assert_close(other_grads[name], grads[name], **tol("float32_paths"), msg=name)


@pytest.mark.parametrize("micro", [1, 3])
@pytest.mark.parametrize("variant", ["paired", "unpaired"])
def test_two_pass_path_equals_the_naive_path_in_float32(micro, variant):
    model = PolicyWithReference(tiny_model("llama", torch.float32))
    perturb(model.policy)
    _assert_same(
        _loss_and_grads(model, variant, 5), _loss_and_grads(model, variant, 5, micro_batch_size=micro)
    )


@pytest.mark.parametrize("variant", ["paired", "unpaired"])
def test_two_pass_path_replays_dropout(variant, monkeypatch):
    """With dropout, the second pass must draw the first pass's masks: its gradients are those
    of one pass over the same micro-batches with gradients."""
    model = PolicyWithReference(tiny_model("gpt2", torch.float32, resid_pdrop=0.3, attn_pdrop=0.3)).train()
    perturb(model.policy)
    two_pass = _loss_and_grads(model, variant, 5, micro_batch_size=2)
    plain = PolicyWithReference.policy_logps

    def one_pass_by_micro_batch(self, input_ids, attention_mask, completion_mask, micro_batch_size=None):
        chunks = zip(input_ids.split(2), attention_mask.split(2), completion_mask.split(2), strict=True)
        return torch.cat([plain(self, *chunk) for chunk in chunks])

    monkeypatch.setattr(PolicyWithReference, "policy_logps", one_pass_by_micro_batch)
    _assert_same(_loss_and_grads(model, variant, 5), two_pass)


def test_two_pass_path_holds_one_micro_batch_at_a_time(monkeypatch):
    from aot_loss.llm import reference

    calls = []

    def recording(model, input_ids, *args, **kwargs):
        calls.append((input_ids.shape[0], torch.is_grad_enabled()))
        return sequence_logps(model, input_ids, *args, **kwargs)

    monkeypatch.setattr(reference, "sequence_logps", recording)
    model = PolicyWithReference(tiny_model("gpt2"))
    out = unpaired_loss(model, as_batch(), torch.tensor([True, False, True, False]), micro_batch_size=2)
    out.loss.backward()
    # the reference (4 rows), pass 1 without gradients (2 + 2), pass 2 with gradients (2 + 2)
    assert calls == [(4, False), (2, False), (2, False), (2, True), (2, True)]


def test_micro_batch_size_is_checked():
    model = PolicyWithReference(tiny_model("gpt2"))
    with pytest.raises(ValueError, match=r"micro_batch_size must be a positive int or None, got 0"):
        model.policy_logps(*as_batch().values(), micro_batch_size=0)


def test_a_cache_with_numpy_keys_reloads_with_torch_load(tmp_path):
    """NumPy scalars as keys (an index column of a DataFrame) were pickled as NumPy objects,
    which torch.load's default weights_only=True refuses; they are stored as the built-in
    values they equal, and still found under either spelling."""
    cache = ReferenceCache({np.int64(3): -1.0, (np.str_("q"), np.int32(2)): -2.0, np.float64(0.5): -3.0})
    torch.save(cache.state_dict(), tmp_path / "cache.pt")
    restored = ReferenceCache()
    restored.load_state_dict(torch.load(tmp_path / "cache.pt"))
    expected = torch.tensor([-1.0, -2.0, -3.0], dtype=torch.float64)
    torch.testing.assert_close(restored.lookup([3, ("q", 2), 0.5]), expected)
    torch.testing.assert_close(
        restored.lookup([np.int64(3), (np.str_("q"), np.int32(2)), np.float64(0.5)]), expected
    )
