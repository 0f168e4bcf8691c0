"""Per-sequence completion log-probabilities of a causal LM, with or without full logits."""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .._validation import check_count

__all__ = ["sequence_logps"]

# Config fields of models whose logits are not lm_head(hidden): the chunked path would be wrong.
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale")


def sequence_logps(
    model: nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor,
    completion_mask: Tensor,
    *,
    average: bool = False,
    chunk_size: int | None = None,
) -> Tensor:
    r"""Summed (or mean) log-probabilities of the completion tokens of each sequence.

    For sequence $b$ with tokens $x_{b,1..T}$ and completion positions
    $C_b = \{t : \text{completion\_mask}_{b,t} = 1\}$:

    $$
    \log \pi(y_b \mid x_b) = \sum_{t \in C_b} \log \mathrm{softmax}(z_{b,t-1})_{x_{b,t}},
    $$

    where $z_{b,t-1}$ are the model's logits at position $t-1$ (the next-token shift), and
    `average=True` divides by $|C_b|$. Prompt and padding positions are excluded by the masks;
    left and right padding both work, because position ids are computed from
    `attention_mask` (for models whose `forward` takes them). Log-softmax runs in float32
    whatever the model's dtype.

    With `chunk_size`, the `[B, T, V]` logits are never formed. The decoder's last hidden
    states are taken at the completion positions only, and the LM head and log-softmax run
    on `chunk_size` of those tokens at a time. Each chunk is recomputed in the backward
    (activation checkpointing), so at most one chunk's `[chunk_size, V]` logits is alive.
    Values and gradients are those of the plain path. This path needs `model.get_decoder()`
    and `model.get_output_embeddings()` (every Hugging Face causal LM and PEFT model has
    both). It refuses models whose logits are not `lm_head(hidden)`, such as Gemma's
    soft-capping.

    Args:
        model: a Hugging Face causal LM (or a PEFT model wrapping one); called as
            `model(input_ids=..., attention_mask=..., position_ids=...)`.
        input_ids: token ids, prompt and completion, padded on either side.
        attention_mask: 1 for real tokens, 0 for padding.
        completion_mask: 1 for the completion tokens to score (a subset of the real tokens,
            never position 0, which nothing predicts); every row needs at least one.
        average: return the mean log-probability per completion token instead of the sum.
        chunk_size: tokens per LM-head chunk; `None` (default) computes full logits.

    Returns:
        The log-probabilities, float32 (float64 for a float64 model).

    Shape:
        - `input_ids`, `attention_mask`, `completion_mask`: $(B, T)$.
        - Output: $(B,)$.

    Example:
        >>> import torch
        >>> from transformers import GPT2Config, GPT2LMHeadModel
        >>> from aot_loss.llm import sequence_logps
        >>> config = GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=20, bos_token_id=1, eos_token_id=2)
        >>> model = GPT2LMHeadModel(config).eval()
        >>> ids = torch.tensor([[5, 6, 7, 8], [0, 3, 4, 9]])  # row 2 is left-padded
        >>> attention = torch.tensor([[1, 1, 1, 1], [0, 1, 1, 1]])
        >>> completion = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1]])
        >>> logps = sequence_logps(model, ids, attention, completion)
        >>> logps.shape
        torch.Size([2])
        >>> torch.allclose(logps, sequence_logps(model, ids, attention, completion, chunk_size=3))
        True
    """
    check_options(average=average, chunk_size=chunk_size)
    _check_batch(input_ids, attention_mask, completion_mask, _vocabulary_size(model))
    # Token t is scored from position t - 1: targets are tokens 1..T-1.
    scored = completion_mask[:, 1:].bool()
    targets = input_ids[:, 1:][scored]
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    lm: Any = model  # a Hugging Face model: its outputs and methods are untyped
    if _takes_position_ids(lm):  # left padding: positions count real tokens only
        inputs["position_ids"] = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    if chunk_size is None:
        token_logps = _token_logps(lm(**inputs).logits[:, :-1][scored], targets)
    else:
        _check_chunkable(lm)
        hidden = lm.get_decoder()(**inputs).last_hidden_state[:, :-1][scored]
        head = lm.get_output_embeddings()
        chunks = zip(torch.split(hidden, chunk_size), torch.split(targets, chunk_size), strict=True)
        token_logps = torch.cat([checkpoint(_head_logps, head, h, y, use_reentrant=False) for h, y in chunks])
    rows = torch.arange(input_ids.shape[0], device=input_ids.device).unsqueeze(1).expand_as(scored)[scored]
    sums = torch.zeros(input_ids.shape[0], dtype=token_logps.dtype, device=token_logps.device)
    sums = sums.index_add(0, rows, token_logps)
    return sums / scored.sum(-1) if average else sums


def _head_logps(head: nn.Module, hidden: Tensor, targets: Tensor) -> Tensor:
    return _token_logps(head(hidden), targets)


def _token_logps(logits: Tensor, targets: Tensor) -> Tensor:
    """log softmax(logits)[target] for (N, V) logits, in float32 or wider."""
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)  # no (N, V) log-softmax tensor


def _takes_position_ids(model: Any) -> bool:
    """Whether ``model.forward`` accepts ``position_ids`` (most do; ALiBi models do not)."""
    parameters = inspect.signature(model.forward).parameters
    return "position_ids" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


def _check_chunkable(model: Any) -> None:
    config: Any = getattr(model, "config", None)
    for name in _LOGIT_TRANSFORMS:
        value = getattr(config, name, None)
        if value not in (None, 0, 1, 1.0):
            raise ValueError(
                f"chunk_size cannot be used with this model: its config sets {name}={value!r}, so its logits "
                "are not lm_head(hidden states); use chunk_size=None"
            )
    for method in ("get_decoder", "get_output_embeddings"):
        if not callable(getattr(model, method, None)):
            raise TypeError(f"chunk_size needs model.{method}(), which {type(model).__name__} lacks")


def check_options(*, average: bool = False, chunk_size: int | None = None) -> None:
    """Validate the options that `sequence_logps` shares with the objects that call it."""
    if not isinstance(average, bool):
        raise TypeError(f"average must be a bool, got {average!r}")
    check_count("chunk_size", chunk_size)


def check_shapes(input_ids: Tensor, attention_mask: Tensor, completion_mask: Tensor) -> None:
    """Three 2-D tensors of one shape (metadata only: no synchronisation)."""
    tensors = {"input_ids": input_ids, "attention_mask": attention_mask, "completion_mask": completion_mask}
    for name, t in tensors.items():
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 2:
            raise ValueError(f"{name} must be 2-D (batch, sequence), got shape {tuple(t.shape)}")
        if t.shape != input_ids.shape:
            raise ValueError(
                f"{name} must have the shape of input_ids {tuple(input_ids.shape)}, got {tuple(t.shape)}"
            )


def _vocabulary_size(model: Any) -> int | None:
    """The number of rows of the model's input embedding, where it has one."""
    get = getattr(model, "get_input_embeddings", None)
    embedding = get() if callable(get) else None
    rows = getattr(embedding, "num_embeddings", None)
    return rows if isinstance(rows, int) else None


def _check_batch(
    input_ids: Tensor, attention_mask: Tensor, completion_mask: Tensor, vocabulary: int | None = None
) -> None:
    check_shapes(input_ids, attention_mask, completion_mask)
    if input_ids.is_floating_point() or input_ids.is_complex() or input_ids.dtype == torch.bool:
        raise TypeError(f"input_ids must hold integer token ids, got dtype {input_ids.dtype}")
    if input_ids.shape[0] == 0 or input_ids.shape[1] < 2:
        raise ValueError(
            f"input_ids needs at least one sequence of two tokens, got shape {tuple(input_ids.shape)}"
        )
    completion, attention = completion_mask.bool(), attention_mask.bool()
    out_of_range = (input_ids < 0) | (input_ids >= vocabulary) if vocabulary is not None else input_ids < 0
    checks = torch.stack(
        [
            (completion & ~attention).any(),
            completion[:, 0].any(),
            (completion.sum(-1) == 0).any(),
            out_of_range.any(),
        ]
    )
    outside, first, empty, unknown = checks.tolist()  # one synchronisation
    if unknown:
        index = tuple(out_of_range.nonzero()[0].tolist())
        allowed = f"in [0, {vocabulary}), the model's vocabulary" if vocabulary is not None else ">= 0"
        raise ValueError(
            f"input_ids must be token ids {allowed}, got {input_ids[index].item()} at index {index}"
        )
    if outside:
        rows = (completion & ~attention).any(-1).nonzero().flatten().tolist()
        raise ValueError(
            f"completion_mask marks padding (attention_mask == 0) in row(s) {rows}; completion tokens "
            "must be real tokens"
        )
    if first:
        rows = completion[:, 0].nonzero().flatten().tolist()
        raise ValueError(
            f"completion_mask marks position 0 in row(s) {rows}, which no token predicts; every "
            "completion needs a prompt"
        )
    if empty:
        rows = (completion.sum(-1) == 0).nonzero().flatten().tolist()
        raise ValueError(
            f"completion_mask has no completion token in row(s) {rows}; every sequence needs one"
        )
