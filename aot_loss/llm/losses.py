"""AOT losses on batches of an LLM's completions: rewards from a PolicyWithReference, the loss
from :func:`aot_loss.paired` / :func:`aot_loss.unpaired`, and metrics for logging."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import metrics as dominance
from ..functional import paired, unpaired
from .reference import Batch, PolicyWithReference, _tensors

__all__ = ["AOTOutput", "paired_loss", "unpaired_loss"]

QUANTILES = (0.1, 0.5, 0.9)


@dataclass(frozen=True)
class AOTOutput:
    """What the LLM losses return.

    Attributes:
        loss: the AOT loss, differentiable in the policy.
        metrics: floats for logging, computed on this process's samples: reward quantiles
            (`chosen_reward_q10`, `..._q50`, `..._q90` and the same for `rejected`), their
            means, `reward_accuracy` and `dominance_violation` (see the losses).
        chosen_rewards: rewards $\\log\\pi_\\theta - \\log\\pi_{ref}$ of the chosen
            (desirable) completions, detached.
        rejected_rewards: the same for the rejected (undesirable) completions.

    Shape:
        - `loss`: as for the core function (`()` for the default `reduction="mean"`).
        - `chosen_rewards`: $(n_+,)$; `rejected_rewards`: $(n_-,)$ ($n_+ = n_-$ for pairs).

    Example:
        >>> import torch
        >>> from aot_loss.llm import AOTOutput
        >>> out = AOTOutput(torch.tensor(0.5), {"reward_accuracy": 1.0}, torch.ones(2), torch.zeros(2))
        >>> out.metrics["reward_accuracy"], tuple(out.chosen_rewards.shape)
        (1.0, (2,))
    """

    loss: Tensor
    metrics: dict[str, float]
    chosen_rewards: Tensor
    rejected_rewards: Tensor


def paired_loss(
    model: PolicyWithReference,
    chosen: Batch,
    rejected: Batch,
    *,
    weights: Tensor | None = None,
    micro_batch_size: int | None = None,
    **options: Any,
) -> AOTOutput:
    r"""Paired AOT on (prompt, chosen, rejected) triples:
    [`aot_loss.paired`][aot_loss.paired] of the policy's and the reference's log-probabilities.

    $$
    \mathcal{L} = \int_0^1 h\big(Q_U(t) - Q_V(t)\big)\,dt,\quad
    U_i = \log\pi_\theta(y^+_i|x_i) - \log\pi_\theta(y^-_i|x_i),\;
    V_i = \log\pi_{ref}(y^+_i|x_i) - \log\pi_{ref}(y^-_i|x_i).
    $$

    The chosen and rejected sequences go through the policy in one forward pass (the shorter
    batch is right-padded to the longer), and through the reference in another. Metrics:
    `reward_accuracy` is the share of pairs whose chosen reward beats the rejected one;
    `dominance_violation` is [`fsd_violation`][aot_loss.metrics.fsd_violation] of U over V.

    Args:
        model: the policy and its reference.
        chosen: the chosen completions: `input_ids`, `attention_mask`, `completion_mask`
            (and `keys` for a cached reference).
        rejected: the rejected completions, row $i$ paired with `chosen` row $i$.
        weights: per-pair masses, as in [`aot_loss.paired`][aot_loss.paired].
        micro_batch_size: the memory-efficient two-pass path: the policy runs without
            gradients on `micro_batch_size` sequences at a time, the loss's gradient with
            respect to each sequence's log-probability is taken, and the backward reruns each
            micro-batch with gradients (see
            [`PolicyWithReference.policy_logps`][aot_loss.llm.PolicyWithReference.policy_logps]).
            Same values and gradients.
        **options: any option of [`aot_loss.paired`][aot_loss.paired]: `loss`, `beta`,
            `label_smoothing`, `reduction`, `sort`, `soft_strength`, `group`, ...

    Shape:
        - batch tensors: $(B, T_+)$ and $(B, T_-)$; `weights`: $(B,)$.
        - `loss`: as for `aot_loss.paired` on $(B,)$ inputs.

    Example:
        >>> import torch
        >>> from transformers import GPT2Config, GPT2LMHeadModel
        >>> from aot_loss.llm import PolicyWithReference, paired_loss
        >>> config = GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=20, bos_token_id=1, eos_token_id=2)
        >>> model = PolicyWithReference(GPT2LMHeadModel(config)).eval()  # eval: no dropout
        >>> ids = torch.tensor([[5, 6, 7], [5, 9, 9]])
        >>> batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
        ...          "completion_mask": torch.tensor([[0, 1, 1], [0, 0, 1]])}
        >>> out = paired_loss(model, batch, batch, beta=0.1)
        >>> round(out.loss.item(), 4)  # log 2: policy = reference, chosen = rejected
        0.6931
    """
    n, m = _tensors(chosen)[0].shape[0], _tensors(rejected)[0].shape[0]
    if m != n:
        raise ValueError(f"chosen and rejected must have the same number of rows (pairs), got {n} and {m}")
    both = _concat(chosen, rejected)
    keys = both.get("keys")
    ref = model.reference_logps(*_tensors(both), keys=keys)
    policy = model.policy_logps(*_tensors(both), micro_batch_size=micro_batch_size)
    pc, pr, rc, rr = policy[:n], policy[n:], ref[:n].to(policy.dtype), ref[n:].to(policy.dtype)
    loss = paired(pc, pr, rc, rr, weights=weights, **options)
    chosen_rewards, rejected_rewards = (pc - rc).detach(), (pr - rr).detach()
    stats = _reward_stats(chosen_rewards, rejected_rewards)
    stats["reward_accuracy"] = (chosen_rewards > rejected_rewards).double().mean().item()
    stats["dominance_violation"] = dominance.fsd_violation((pc - pr).detach(), rc - rr).item()
    return AOTOutput(loss, stats, chosen_rewards, rejected_rewards)


def unpaired_loss(
    model: PolicyWithReference,
    batch: Batch,
    desirable: Tensor,
    *,
    weights: Tensor | None = None,
    micro_batch_size: int | None = None,
    **options: Any,
) -> AOTOutput:
    r"""Unpaired AOT on completions labelled desirable or undesirable (counts may differ):
    [`aot_loss.unpaired`][aot_loss.unpaired] of their rewards.

    $$
    \mathcal{L} = \int_0^1 h\big(Q_{r^+}(t) - Q_{r^-}(t)\big)\,dt,\quad
    r = \log\pi_\theta(y|x) - \log\pi_{ref}(y|x).
    $$

    Metrics: `reward_accuracy` is the share of (desirable, undesirable) pairs, over all
    pairs, whose desirable reward is higher; `dominance_violation` is
    [`fsd_violation`][aot_loss.metrics.fsd_violation] of $r^+$ over $r^-$.

    Args:
        model: the policy and its reference.
        batch: the completions: `input_ids`, `attention_mask`, `completion_mask` (and `keys`
            for a cached reference).
        desirable: `True` for desirable (chosen) completions, `False` for undesirable ones.
        weights: per-completion masses, split into `pos_weights`/`neg_weights`.
        micro_batch_size: the two-pass path, as in [`paired_loss`][aot_loss.llm.paired_loss].
        **options: any option of [`aot_loss.unpaired`][aot_loss.unpaired]: `loss`, `beta`,
            `label_smoothing`, `reduction`, `sort`, `soft_strength`, `group`, ...

    Shape:
        - batch tensors: $(B, T)$; `desirable`, `weights`: $(B,)$.

    Example:
        >>> import torch
        >>> from transformers import GPT2Config, GPT2LMHeadModel
        >>> from aot_loss.llm import PolicyWithReference, unpaired_loss
        >>> config = GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=20, bos_token_id=1, eos_token_id=2)
        >>> model = PolicyWithReference(GPT2LMHeadModel(config)).eval()  # eval: no dropout
        >>> ids = torch.tensor([[5, 6, 7], [5, 9, 9], [4, 4, 3]])
        >>> batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
        ...          "completion_mask": torch.tensor([[0, 1, 1], [0, 0, 1], [0, 1, 1]])}
        >>> out = unpaired_loss(model, batch, torch.tensor([True, False, True]), beta=0.1)
        >>> round(out.loss.item(), 4), out.metrics["reward_accuracy"]
        (0.6931, 0.0)
    """
    ids = _tensors(batch)[0]
    if not isinstance(desirable, Tensor) or desirable.dtype != torch.bool or desirable.shape != ids.shape[:1]:
        shown = (
            (desirable.dtype, tuple(desirable.shape)) if isinstance(desirable, Tensor) else type(desirable)
        )
        raise ValueError(f"desirable must be a bool tensor of shape ({ids.shape[0]},), got {shown}")
    if weights is not None and not isinstance(weights, Tensor):
        raise TypeError(f"weights must be a torch.Tensor or None, got {type(weights).__name__}")
    if weights is not None and weights.shape != desirable.shape:
        shape = tuple(weights.shape)
        raise ValueError(f"weights must have shape ({ids.shape[0]},), one per sequence, got {shape}")
    desirable = desirable.to(ids.device)
    rewards = model.rewards(*_tensors(batch), keys=batch.get("keys"), micro_batch_size=micro_batch_size)
    r_pos, r_neg = rewards[desirable], rewards[~desirable]
    pos_weights, neg_weights = (None, None) if weights is None else (weights[desirable], weights[~desirable])
    loss = unpaired(r_pos, r_neg, pos_weights=pos_weights, neg_weights=neg_weights, **options)
    chosen_rewards, rejected_rewards = r_pos.detach(), r_neg.detach()
    stats = _reward_stats(chosen_rewards, rejected_rewards)
    if len(chosen_rewards) and len(rejected_rewards):  # a rank's share under group= may lack one side
        wins = chosen_rewards.unsqueeze(1) > rejected_rewards.unsqueeze(0)
        stats["reward_accuracy"] = wins.double().mean().item()
        stats["dominance_violation"] = dominance.fsd_violation(chosen_rewards, rejected_rewards).item()
    return AOTOutput(loss, stats, chosen_rewards, rejected_rewards)


def _reward_stats(chosen: Tensor, rejected: Tensor) -> dict[str, float]:
    stats: dict[str, float] = {}
    for name, r in (("chosen", chosen), ("rejected", rejected)):
        if len(r) == 0:
            continue
        r = r.double()
        stats[f"{name}_reward_mean"] = r.mean().item()
        values = torch.quantile(r, torch.tensor(QUANTILES, dtype=r.dtype, device=r.device)).tolist()
        stats.update(
            {f"{name}_reward_q{round(q * 100)}": value for q, value in zip(QUANTILES, values, strict=True)}
        )
    return stats


def _concat(first: Batch, second: Batch) -> dict[str, Any]:
    """Two batches as one, the shorter right-padded (masked out, so values are unchanged)."""
    width = max(_tensors(first)[0].shape[1], _tensors(second)[0].shape[1])
    out: dict[str, Any] = {}
    for name in ("input_ids", "attention_mask", "completion_mask"):
        parts = [b[name] for b in (first, second)]
        out[name] = torch.cat([F.pad(p, (0, width - p.shape[1])) for p in parts])
    if "keys" in first or "keys" in second:
        out["keys"] = list(first.get("keys", [])) + list(second.get("keys", []))
    return out
