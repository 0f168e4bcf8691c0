"""The policy and its frozen reference: per-sequence rewards log pi - log pi_ref."""

from __future__ import annotations

import copy
import importlib.util
import math
import numbers
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import torch
from torch import Tensor, nn

from .._optional import install_command
from .._validation import check_count
from .logps import check_options, check_shapes, sequence_logps

__all__ = ["PolicyWithReference", "ReferenceCache"]

Batch = Mapping[str, Any]  # input_ids, attention_mask, completion_mask (B, T); optional "keys"


class ReferenceCache:
    r"""Reference log-probabilities computed once, looked up by example key.

    Build it with [`ReferenceCache.build`][aot_loss.llm.ReferenceCache.build] over the
    training set, before training. The reference model can then leave memory, and every step
    saves the reference's forward pass. Save and restore it with `state_dict()` and
    `load_state_dict()` (plain tensors, for `torch.save`).

    Shape:
        - `lookup(keys)`: $(B,)$ for $B$ keys, float64 on CPU (move it as needed).

    Example:
        >>> import torch
        >>> from aot_loss.llm import ReferenceCache
        >>> cache = ReferenceCache({"a": -3.5, "b": -7.25})
        >>> cache.lookup(["b", "a"])
        tensor([-7.2500, -3.5000], dtype=torch.float64)
    """

    def __init__(self, logps: Mapping[Hashable, float] | None = None) -> None:
        self._logps: dict[Hashable, float] = {
            _plain(key): _logp(key, value) for key, value in (logps or {}).items()
        }

    @classmethod
    @torch.no_grad()
    def build(
        cls,
        reference: nn.Module,
        batches: Iterable[Batch],
        *,
        average: bool = False,
        chunk_size: int | None = None,
    ) -> ReferenceCache:
        """Run `reference` (in eval mode, without gradients) over `batches`, each a mapping with
        `input_ids`, `attention_mask`, `completion_mask` and `keys` (one hashable per row),
        and store [`sequence_logps`][aot_loss.llm.sequence_logps] per key. Use the same
        `average` and `chunk_size` as the [`PolicyWithReference`][aot_loss.llm.PolicyWithReference]
        that will read it."""
        cache = cls()
        with _eval_mode(reference):
            for batch in batches:
                keys = _keys(batch)
                values = sequence_logps(reference, *_tensors(batch), average=average, chunk_size=chunk_size)
                pairs = zip(keys, values.double().tolist(), strict=True)
                cache._logps.update((_plain(key), _logp(key, value)) for key, value in pairs)
        return cache

    def lookup(self, keys: Sequence[Hashable]) -> Tensor:
        """The cached log-probabilities of `keys`, in order."""
        missing = [k for k in keys if k not in self._logps]
        if missing:
            raise KeyError(
                f"ReferenceCache has no entry for keys {missing[:5]}{' ...' if len(missing) > 5 else ''}"
            )
        return torch.tensor([self._logps[k] for k in keys], dtype=torch.float64)

    def __len__(self) -> int:
        return len(self._logps)

    def state_dict(self) -> dict[str, Any]:
        return {
            "keys": list(self._logps),
            "logps": torch.tensor(list(self._logps.values()), dtype=torch.float64),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Replace the entries by those of ``state``, as :meth:`state_dict` returns it."""
        if not isinstance(state, Mapping):
            raise TypeError(
                f"state must be a mapping with 'keys' and 'logps' (ReferenceCache.state_dict()), "
                f"got {type(state).__name__}"
            )
        absent = [name for name in ("keys", "logps") if name not in state]
        if absent:
            raise ValueError(
                f"state lacks {absent}: expected ReferenceCache.state_dict()'s 'keys' and 'logps'"
            )
        keys, logps = state["keys"], state["logps"]
        if not isinstance(keys, (list, tuple)):
            raise TypeError(f"state['keys'] must be a list, got {type(keys).__name__}")
        if not isinstance(logps, Tensor) or logps.dim() != 1:
            shown = tuple(logps.shape) if isinstance(logps, Tensor) else type(logps).__name__
            raise TypeError(f"state['logps'] must be a 1-D tensor, got {shown}")
        if len(keys) != logps.shape[0]:
            raise ValueError(f"state has {len(keys)} keys but {logps.shape[0]} logps; they must pair up")
        self._logps = {
            _plain(key): _logp(key, value) for key, value in zip(keys, logps.tolist(), strict=True)
        }


class PolicyWithReference(nn.Module):
    r"""A policy and its frozen reference; `rewards` returns $\log\pi_\theta - \log\pi_{ref}$
    per sequence.

    $$
    r_b = \log \pi_\theta(y_b \mid x_b) - \log \pi_{ref}(y_b \mid x_b),
    $$

    with both log-probabilities from [`sequence_logps`][aot_loss.llm.sequence_logps] (sums
    over the completion tokens, or means with `average=True`). The reference can be:

    - `"copy"` (default): a frozen deep copy of the policy made now. It costs a second copy
      of the weights.
    - `"adapters"`: the policy itself with its PEFT adapters disabled. It needs no second copy.
      The policy must be a PEFT model.
    - a model: any causal LM you pass. It is frozen.
    - a [`ReferenceCache`][aot_loss.llm.ReferenceCache]: precomputed log-probabilities. Each
      batch must then carry `keys`.

    The reference always runs in eval mode (no dropout) under `torch.no_grad()`, and never
    receives gradients. A `"copy"` or model reference is the submodule `reference`, so
    `.to()` moves it along, but it stays in eval mode and its parameters do not require
    gradients. Save `policy`, not this wrapper, if you do not want the reference's weights in
    the checkpoint. For `"adapters"`, the policy is switched to eval mode for the reference
    pass and switched back after it.

    Args:
        policy: the model to train (a Hugging Face causal LM or a PEFT model).
        reference: `"copy"`, `"adapters"`, a model or a `ReferenceCache`.
        average: mean log-probability per completion token instead of the sum.
        chunk_size: compute log-probabilities without full logits, `chunk_size` tokens at a
            time (see [`sequence_logps`][aot_loss.llm.sequence_logps]).

    Shape:
        - batch tensors `input_ids`, `attention_mask`, `completion_mask`: $(B, T)$.
        - `rewards(...)`, `policy_logps(...)`, `reference_logps(...)`: $(B,)$.

    Example:
        >>> import torch
        >>> from transformers import GPT2Config, GPT2LMHeadModel
        >>> from aot_loss.llm import PolicyWithReference
        >>> config = GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=20, bos_token_id=1, eos_token_id=2)
        >>> model = PolicyWithReference(GPT2LMHeadModel(config)).eval()  # eval: no dropout
        >>> ids = torch.tensor([[5, 6, 7, 8]])
        >>> rewards = model.rewards(ids, torch.ones_like(ids), torch.tensor([[0, 0, 1, 1]]))
        >>> rewards  # the policy still equals its copy
        tensor([0.], grad_fn=<SubBackward0>)
    """

    def __init__(
        self,
        policy: nn.Module,
        reference: Literal["copy", "adapters"] | nn.Module | ReferenceCache = "copy",
        *,
        average: bool = False,
        chunk_size: int | None = None,
    ) -> None:
        check_options(average=average, chunk_size=chunk_size)
        super().__init__()
        self.policy = policy
        self.average, self.chunk_size = average, chunk_size
        self.reference: nn.Module | ReferenceCache | None  # None: the policy without adapters
        if isinstance(reference, str) and reference == "copy":
            self.reference = _frozen(copy.deepcopy(policy))
        elif isinstance(reference, str) and reference == "adapters":
            if not callable(getattr(policy, "disable_adapter", None)):
                name = type(policy).__name__
                message = f"reference='adapters' needs a PEFT model (with disable_adapter()), got {name}"
                if importlib.util.find_spec("peft") is None:  # it cannot be one: PEFT is not installed
                    raise ImportError(f"{message}, and peft is not installed: {install_command('peft')}")
                raise ValueError(f"{message}: wrap the policy with peft.get_peft_model")
            self.reference = None
        elif isinstance(reference, nn.Module):
            if reference is policy:
                raise ValueError(
                    "reference must not be the policy itself; use reference='copy' or 'adapters'"
                )
            self.reference = _frozen(reference)
        elif isinstance(reference, ReferenceCache):
            self.reference = reference
        else:
            raise (ValueError if isinstance(reference, str) else TypeError)(
                f"reference must be 'copy', 'adapters', a model or a ReferenceCache, got {reference!r}"
            )

    def policy_logps(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        completion_mask: Tensor,
        micro_batch_size: int | None = None,
    ) -> Tensor:
        """Completion log-probabilities under the policy (with gradients).

        With `micro_batch_size`, two passes: the forward runs the policy without gradients,
        `micro_batch_size` sequences at a time; the backward reruns each micro-batch with
        gradients (same random state, so the same dropout) and back-propagates its share of
        the incoming gradient. Only one micro-batch's activations are alive at a time, at the
        price of a second forward pass. Not for DDP, whose gradient hooks expect one backward
        per parameter and step."""
        tensors = (input_ids, attention_mask, completion_mask)
        check_count("micro_batch_size", micro_batch_size)
        if micro_batch_size is None:
            return self._logps(self.policy, *tensors)
        anchor = next((p for p in self.policy.parameters() if p.requires_grad), None)
        if anchor is None or not torch.is_grad_enabled():
            with torch.no_grad():
                return self._logps(self.policy, *tensors)
        logps: Tensor = _TwoPass.apply(anchor, self, tensors, micro_batch_size)
        return logps

    def _logps(
        self, model: nn.Module, input_ids: Tensor, attention_mask: Tensor, completion_mask: Tensor
    ) -> Tensor:
        return sequence_logps(
            model,
            input_ids,
            attention_mask,
            completion_mask,
            average=self.average,
            chunk_size=self.chunk_size,
        )

    @torch.no_grad()
    def reference_logps(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        completion_mask: Tensor,
        keys: Sequence[Hashable] | None = None,
    ) -> Tensor:
        """Completion log-probabilities under the reference (no gradients; `keys` for a cache)."""
        if isinstance(self.reference, ReferenceCache):
            if keys is None:
                raise ValueError("the reference is a ReferenceCache: pass the batch's keys")
            _check_keys(keys, input_ids)
            return self.reference.lookup(keys).to(input_ids.device)
        model = self.reference if self.reference is not None else self.policy
        with _eval_mode(model), _adapters_disabled(self.policy, self.reference is None):
            return self._logps(model, input_ids, attention_mask, completion_mask)

    def rewards(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        completion_mask: Tensor,
        keys: Sequence[Hashable] | None = None,
        micro_batch_size: int | None = None,
    ) -> Tensor:
        r"""$\log\pi_\theta - \log\pi_{ref}$ per sequence, differentiable in the policy only
        (`micro_batch_size`: the two-pass path of `policy_logps`)."""
        ref = self.reference_logps(input_ids, attention_mask, completion_mask, keys)
        policy = self.policy_logps(input_ids, attention_mask, completion_mask, micro_batch_size)
        return policy - ref.to(policy.dtype)

    def forward(self, input_ids: Tensor, attention_mask: Tensor, completion_mask: Tensor) -> Tensor:
        """The policy's completion log-probabilities (so that DDP and accelerate can wrap this)."""
        return self.policy_logps(input_ids, attention_mask, completion_mask)

    def train(self, mode: bool = True) -> PolicyWithReference:
        super().train(mode)
        if isinstance(self.reference, nn.Module):
            self.reference.eval()  # the reference never leaves eval mode
        return self


class _TwoPass(torch.autograd.Function):
    """Policy log-probs computed without gradients, then recomputed micro-batch by micro-batch
    in the backward. ``anchor`` (a trainable parameter) only ties the output to the graph."""

    @staticmethod
    def forward(
        ctx: Any, anchor: Tensor, owner: PolicyWithReference, tensors: tuple[Tensor, ...], size: int
    ) -> Tensor:
        ctx.owner, ctx.tensors, ctx.size, ctx.states = owner, tensors, size, []
        parts = []
        for chunk in zip(*(torch.split(t, size) for t in tensors), strict=True):
            ctx.states.append(_rng_state())
            parts.append(owner._logps(owner.policy, *chunk))
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[None, None, None, None]:
        chunks = zip(*(torch.split(t, ctx.size) for t in ctx.tensors), strict=True)
        for chunk, state, g in zip(chunks, ctx.states, torch.split(grad, ctx.size), strict=True):
            with torch.random.fork_rng(devices=state[1].keys()), torch.enable_grad():
                _set_rng_state(state)
                torch.autograd.backward(ctx.owner._logps(ctx.owner.policy, *chunk), g)
        return None, None, None, None


def _rng_state() -> tuple[Tensor, dict[int, Tensor]]:
    cuda = torch.cuda.is_initialized()
    devices = range(torch.cuda.device_count()) if cuda else range(0)
    return torch.get_rng_state(), {d: torch.cuda.get_rng_state(d) for d in devices}


def _set_rng_state(state: tuple[Tensor, dict[int, Tensor]]) -> None:
    torch.set_rng_state(state[0])
    for device, cuda_state in state[1].items():
        torch.cuda.set_rng_state(cuda_state, device)


def _frozen(model: nn.Module) -> nn.Module:
    model.requires_grad_(False)
    return model.eval()


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode inside, the previous mode restored after."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@contextmanager
def _adapters_disabled(policy: nn.Module, disable: bool) -> Iterator[None]:
    if not disable:
        yield
        return
    with policy.disable_adapter():  # type: ignore[operator]
        yield


def _plain(key: Hashable) -> Hashable:
    """A key as the built-in type it stands for (NumPy's int64 as int, its str_ as str, in
    tuples too): equal and hashed alike, so lookups are unchanged, but a state_dict of plain
    types reloads with ``torch.load``'s default ``weights_only=True``."""
    if isinstance(key, tuple):
        return tuple(_plain(k) for k in key)
    if isinstance(key, str):
        return str(key)
    if isinstance(key, bool) or type(key) in (int, float):
        return key
    if isinstance(key, numbers.Integral):
        return int(key)
    if isinstance(key, numbers.Real):
        return float(key)
    return key


def _logp(key: Hashable, value: Any) -> float:
    """A cached log-probability as a float; anything else would poison every loss that reads it."""
    number = isinstance(value, numbers.Real) or (isinstance(value, Tensor) and value.numel() == 1)
    if isinstance(value, bool) or not number:
        raise TypeError(f"ReferenceCache values must be real numbers, got {value!r} for key {key!r}")
    logp = float(value)
    if not math.isfinite(logp):
        raise ValueError(
            f"ReferenceCache values must be finite log-probabilities, got {logp} for key {key!r}"
        )
    return logp


def _tensors(batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
    for name in ("input_ids", "attention_mask", "completion_mask"):
        if name not in batch:
            raise ValueError(f"a batch needs '{name}', got keys {sorted(batch)}")
    tensors = batch["input_ids"], batch["attention_mask"], batch["completion_mask"]
    check_shapes(*tensors)  # before any padding or concatenation could hide a mismatch
    return tensors


def _keys(batch: Batch) -> list[Hashable]:
    if "keys" not in batch:
        raise ValueError("ReferenceCache.build needs a 'keys' entry (one hashable per row) in every batch")
    keys = list(batch["keys"])
    _check_keys(keys, batch["input_ids"])
    return keys


def _check_keys(keys: Sequence[Hashable], input_ids: Tensor) -> None:
    if len(keys) != input_ids.shape[0]:
        raise ValueError(f"keys has {len(keys)} entries for a batch of {input_ids.shape[0]} sequences")
