"""Tokenisation and collation of preference data into the batches of :mod:`aot_loss.llm`."""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from .._validation import check_count

__all__ = ["PairedCollator", "UnpairedCollator", "pad_batch", "tokenize_completion"]

Prompt = str | Sequence[Mapping[str, str]]  # a text, or chat messages ending with the user's turn


def tokenize_completion(
    tokenizer: Any,
    prompt: Prompt,
    completion: str,
    *,
    max_length: int | None = None,
    max_prompt_length: int | None = None,
) -> tuple[list[int], list[int]]:
    r"""The token ids of a prompt and of its completion, ready to concatenate.

    With $p$ the prompt's ids and $c$ the completion's, the sequence is $x = p \Vert c$ and
    [`sequence_logps`][aot_loss.llm.sequence_logps] scores
    $\sum_{j} \log \pi(c_j \mid p, c_{<j})$. Truncation keeps $p_{-P:}$ and
    $c_{:L-|p|}$ for `max_prompt_length` $P$ and `max_length` $L$.

    - **With a chat template**, the prompt becomes a user turn, or the messages you pass,
      followed by the generation prompt. The completion is the assistant's turn, end-of-turn
      tokens included. Its ids are taken from the tokenised whole conversation, after the
      prompt's ids, so the model is scored on exactly what the template writes.
    - **Without one**, the prompt is tokenised with the tokenizer's special tokens (BOS), and
      the completion without them, followed by EOS.

    Truncation keeps the end of the prompt (`max_prompt_length` tokens) and then the start of
    the completion, so that both fit in `max_length`. A completion left with no token raises
    `ValueError`.

    Args:
        tokenizer: a Hugging Face tokenizer.
        prompt: the prompt text, or chat messages (`{"role": ..., "content": ...}`) for a
            tokenizer with a chat template.
        completion: the response text.
        max_length: the most tokens of prompt and completion together.
        max_prompt_length: the most prompt tokens.

    Returns:
        `(prompt_ids, completion_ids)`.

    Shape:
        Two lists of ints; the sequence is their concatenation.

    Example:
        >>> from tokenizers import Tokenizer, models, pre_tokenizers
        >>> from transformers import PreTrainedTokenizerFast
        >>> words = ["<pad>", "<s>", "</s>", "<unk>", "the", "cat", "sat", "on", "mat"]
        >>> backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
        >>> backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        >>> tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>")
        >>> tokenize_completion(tokenizer, "the cat", "sat on the mat", max_length=5)
        ([4, 5], [6, 7, 4])
    """
    _check_limits(max_length, max_prompt_length)
    if not isinstance(completion, str):
        raise TypeError(f"completion must be a str, got {type(completion).__name__}")
    if not isinstance(prompt, (str, list, tuple)):
        raise TypeError(f"prompt must be a str or a list of chat messages, got {type(prompt).__name__}")
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        prompt_text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        full_text = tokenizer.apply_chat_template(
            [*messages, {"role": "assistant", "content": completion}], tokenize=False
        )
        prompt_ids = list(tokenizer(prompt_text, add_special_tokens=False).input_ids)
        full_ids = list(tokenizer(full_text, add_special_tokens=False).input_ids)
        if full_ids[: len(prompt_ids)] != prompt_ids:
            raise ValueError(
                "the chat template's prompt (with the generation prompt) does not tokenise to a prefix of "
                "the whole conversation, so the completion's tokens cannot be told apart"
            )
        completion_ids = full_ids[len(prompt_ids) :]
    else:
        if not isinstance(prompt, str):
            raise TypeError("prompt can be chat messages only for a tokenizer with a chat template")
        prompt_ids = list(tokenizer(prompt).input_ids)
        completion_ids = list(tokenizer(completion, add_special_tokens=False).input_ids)
        if tokenizer.eos_token_id is not None:
            completion_ids.append(tokenizer.eos_token_id)
    if max_prompt_length is not None:
        prompt_ids = prompt_ids[-max_prompt_length:]
    if max_length is not None:
        completion_ids = completion_ids[: max(max_length - len(prompt_ids), 0)]
    if not prompt_ids:
        raise ValueError(
            "the prompt has no token (an empty prompt, and a tokenizer that adds no BOS), so nothing "
            "predicts the completion's first token"
        )
    if not completion_ids:
        raise ValueError(
            f"the completion has no token left (prompt: {len(prompt_ids)} tokens, max_length={max_length}); "
            "raise max_length or lower max_prompt_length"
        )
    return prompt_ids, completion_ids


def pad_batch(
    sequences: Sequence[tuple[Sequence[int], Sequence[int]]],
    pad_token_id: int,
    padding_side: Literal["right", "left"] = "right",
) -> dict[str, Tensor]:
    """`(prompt_ids, completion_ids)` pairs as one padded batch.

    Returns `input_ids`, `attention_mask` (1 on real tokens) and `completion_mask` (1 on
    completion tokens), the batch format of [`sequence_logps`][aot_loss.llm.sequence_logps].

    Shape:
        Each tensor: $(B, T)$, with $T$ the longest sequence.

    Example:
        >>> pad_batch([([7, 8], [9]), ([5], [6, 6, 2])], pad_token_id=0)["completion_mask"]
        tensor([[0, 0, 1, 0],
                [0, 1, 1, 1]])
    """
    if padding_side not in ("right", "left"):
        raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
    if isinstance(pad_token_id, bool) or not isinstance(pad_token_id, int):
        raise TypeError(f"pad_token_id must be an int, got {pad_token_id!r}")
    if not sequences:
        raise ValueError("pad_batch needs at least one sequence")
    for i, (prompt, completion) in enumerate(sequences):
        if not prompt or not completion:
            part = "prompt" if not prompt else "completion"
            raise ValueError(
                f"sequence {i} has an empty {part}; every sequence needs a prompt and a completion"
            )
        for part, ids in (("prompt", prompt), ("completion", completion)):
            bad = [t for t in ids if isinstance(t, bool) or not isinstance(t, numbers.Integral)]
            if bad:
                raise TypeError(f"sequence {i}'s {part} must hold int token ids, got {bad[0]!r}")
    width = max(len(p) + len(c) for p, c in sequences)
    rows: dict[str, list[list[int]]] = {"input_ids": [], "attention_mask": [], "completion_mask": []}
    for prompt, completion in sequences:
        pad = width - len(prompt) - len(completion)
        row = {
            "input_ids": [*prompt, *completion],
            "attention_mask": [1] * (len(prompt) + len(completion)),
            "completion_mask": [0] * len(prompt) + [1] * len(completion),
        }
        for name, values in row.items():
            filler = [pad_token_id if name == "input_ids" else 0] * pad
            rows[name].append(values + filler if padding_side == "right" else filler + values)
    return {name: torch.tensor(values, dtype=torch.long) for name, values in rows.items()}


class _Collator:
    def __init__(
        self,
        tokenizer: Any,
        *,
        max_length: int | None = None,
        max_prompt_length: int | None = None,
        padding_side: Literal["right", "left"] = "right",
    ) -> None:
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if pad is None:
            raise ValueError("the tokenizer has neither a pad token nor an EOS token to pad with")
        if padding_side not in ("right", "left"):
            raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
        _check_limits(max_length, max_prompt_length)
        self.tokenizer, self.pad_token_id, self.padding_side = tokenizer, pad, padding_side
        self.max_length, self.max_prompt_length = max_length, max_prompt_length

    def _batch(
        self, rows: Sequence[Mapping[str, Any]], completion: str, key_suffix: str = ""
    ) -> dict[str, Any]:
        pairs = [
            tokenize_completion(
                self.tokenizer,
                _field(row, "prompt", i),
                _field(row, completion, i),
                max_length=self.max_length,
                max_prompt_length=self.max_prompt_length,
            )
            for i, row in enumerate(rows)
        ]
        batch: dict[str, Any] = dict(pad_batch(pairs, self.pad_token_id, self.padding_side))
        keyless = [i for i, row in enumerate(rows) if "key" not in row]
        if keyless and len(keyless) < len(rows):
            raise ValueError(
                f"row(s) {keyless[:5]} have no 'key' while others do; give every row a key or none"
            )
        if not keyless:  # for a ReferenceCache
            batch["keys"] = [(row["key"], key_suffix) if key_suffix else row["key"] for row in rows]
        return batch


class PairedCollator(_Collator):
    """Rows `{"prompt", "chosen", "rejected"}` (and optionally `"key"`) to the chosen and
    rejected batches of [`paired_loss`][aot_loss.llm.paired_loss].

    Each completion is tokenised by [`tokenize_completion`][aot_loss.llm.tokenize_completion]
    (chat template when the tokenizer has one, truncation by `max_length` and
    `max_prompt_length`), then padded on `padding_side` with the pad token (EOS if there is
    none). With `"key"` in every row, the batches carry `keys` `(key, "chosen")` and
    `(key, "rejected")` for a [`ReferenceCache`][aot_loss.llm.ReferenceCache].

    Shape:
        - Returns `(chosen, rejected)`, each with `input_ids`, `attention_mask`,
          `completion_mask` of shape $(B, T)$.

    Example:
        >>> from tokenizers import Tokenizer, models, pre_tokenizers
        >>> from transformers import PreTrainedTokenizerFast
        >>> words = ["<pad>", "<s>", "</s>", "<unk>", "the", "cat", "sat", "ran"]
        >>> backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
        >>> backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        >>> tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>")
        >>> rows = [{"prompt": "the cat", "chosen": "sat", "rejected": "ran"}]
        >>> chosen, rejected = PairedCollator(tokenizer)(rows)
        >>> chosen["input_ids"], rejected["completion_mask"]
        (tensor([[4, 5, 6, 2]]), tensor([[0, 0, 1, 1]]))
    """

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
        return self._batch(rows, "chosen", "chosen"), self._batch(rows, "rejected", "rejected")


class UnpairedCollator(_Collator):
    """Rows `{"prompt", "completion", "label"}` (label `True` for desirable; optionally
    `"key"`) to the batch and `desirable` mask of [`unpaired_loss`][aot_loss.llm.unpaired_loss].

    Tokenisation, truncation and padding as in [`PairedCollator`][aot_loss.llm.PairedCollator].

    Shape:
        - Returns `(batch, desirable)`: tensors of shape $(B, T)$ and a bool $(B,)$.

    Example:
        >>> from tokenizers import Tokenizer, models, pre_tokenizers
        >>> from transformers import PreTrainedTokenizerFast
        >>> words = ["<pad>", "<s>", "</s>", "<unk>", "the", "cat", "sat", "ran"]
        >>> backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
        >>> backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        >>> tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>")
        >>> rows = [{"prompt": "the", "completion": "cat sat", "label": True},
        ...         {"prompt": "the cat", "completion": "ran", "label": False}]
        >>> batch, desirable = UnpairedCollator(tokenizer, padding_side="left")(rows)
        >>> batch["attention_mask"], desirable
        (tensor([[1, 1, 1, 1],
                [1, 1, 1, 1]]), tensor([ True, False]))
    """

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> tuple[dict[str, Any], Tensor]:
        labels = [_field(row, "label", i) for i, row in enumerate(rows)]
        for i, label in enumerate(labels):
            if not isinstance(label, bool):
                raise TypeError(f"row {i}: label must be a bool (True: desirable), got {label!r}")
        return self._batch(rows, "completion"), torch.tensor(labels, dtype=torch.bool)


def _check_limits(max_length: int | None, max_prompt_length: int | None) -> None:
    check_count("max_length", max_length)
    check_count("max_prompt_length", max_prompt_length)


def _field(row: Mapping[str, Any], name: str, index: int) -> Any:
    if name not in row:
        raise ValueError(f"row {index} has no '{name}' (it has {sorted(row)})")
    return row[name]
