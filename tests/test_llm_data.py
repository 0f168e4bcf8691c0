"""Tokenisation and collation helpers of aot_loss.llm with in-memory word-level tokenizers
(with and without a chat template), and the collated batches through a tiny model."""

from __future__ import annotations

import pytest
import torch
from optional import import_or_skip
from tolerances import tol

transformers = import_or_skip("transformers")
tokenizers = import_or_skip("tokenizers")

from test_llm_logps import tiny_model  # noqa: E402

from aot_loss.llm import (  # noqa: E402
    PairedCollator,
    PolicyWithReference,
    ReferenceCache,
    UnpairedCollator,
    pad_batch,
    paired_loss,
    sequence_logps,
    tokenize_completion,
)

WORDS = ["<pad>", "<s>", "</s>", "<unk>", "<|user|>", "<|assistant|>", "<|end|>"]
WORDS += [
    "the",
    "cat",
    "sat",
    "on",
    "a",
    "mat",
    "dog",
    "ran",
    "fast",
    "slow",
    "good",
    "bad",
    "what",
    "is",
    "why",
]
ID = {w: i for i, w in enumerate(WORDS)}
TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)


def make_tokenizer(chat: bool = False, pad: bool = True):
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(ID, unk_token="<unk>"))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    special = {"pad_token": "<pad>"} if pad else {}
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="</s>", unk_token="<unk>", **special
    )
    if chat:
        tokenizer.chat_template = TEMPLATE
    return tokenizer


def ids(text: str) -> list[int]:
    return [ID[w] for w in text.split()]


def test_plain_tokenizer_appends_eos_to_the_completion():
    prompt, completion = tokenize_completion(make_tokenizer(), "what is the cat", "the cat sat")
    assert prompt == ids("what is the cat") and completion == [*ids("the cat sat"), ID["</s>"]]


def test_chat_template_scores_the_assistant_turn_with_its_end_token():
    prompt, completion = tokenize_completion(make_tokenizer(chat=True), "what is the cat", "the cat sat")
    assert prompt == ids("<|user|> what is the cat <|end|> <|assistant|>")
    assert completion == ids("the cat sat <|end|>")


def test_chat_messages_as_the_prompt():
    messages = [
        {"role": "user", "content": "what is"},
        {"role": "assistant", "content": "a cat"},
        {"role": "user", "content": "why"},
    ]
    prompt, completion = tokenize_completion(make_tokenizer(chat=True), messages, "good")
    assert prompt == ids(
        "<|user|> what is <|end|> <|assistant|> a cat <|end|> <|user|> why <|end|> <|assistant|>"
    )
    assert completion == ids("good <|end|>")


@pytest.mark.parametrize(
    ("max_length", "max_prompt_length", "want_prompt", "want_completion"),
    [
        (None, 2, "the cat", "the cat sat </s>"),  # the prompt keeps its end
        (6, None, "what is the cat", "the cat"),  # the completion keeps its start
        (5, 2, "the cat", "the cat sat"),
    ],
)
def test_truncation(max_length, max_prompt_length, want_prompt, want_completion):
    prompt, completion = tokenize_completion(
        make_tokenizer(),
        "what is the cat",
        "the cat sat",
        max_length=max_length,
        max_prompt_length=max_prompt_length,
    )
    assert prompt == ids(want_prompt) and completion == ids(want_completion)


@pytest.mark.parametrize("side", ["right", "left"])
def test_pad_batch_masks(side):
    batch = pad_batch([([7, 8], [9]), ([5], [6, 6, 2])], pad_token_id=0, padding_side=side)
    if side == "right":
        assert batch["input_ids"].tolist() == [[7, 8, 9, 0], [5, 6, 6, 2]]
        assert batch["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]
        assert batch["completion_mask"].tolist() == [[0, 0, 1, 0], [0, 1, 1, 1]]
    else:
        assert batch["input_ids"].tolist() == [[0, 7, 8, 9], [5, 6, 6, 2]]
        assert batch["attention_mask"].tolist() == [[0, 1, 1, 1], [1, 1, 1, 1]]
        assert batch["completion_mask"].tolist() == [[0, 0, 0, 1], [0, 1, 1, 1]]


ROWS = [
    {"prompt": "what is the cat", "chosen": "the cat sat", "rejected": "bad", "key": 0},
    {"prompt": "why", "chosen": "good", "rejected": "the dog ran fast", "key": 1},
]


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("chat", [False, True])
def test_collated_log_probs_equal_the_unpadded_sequences(side, chat):
    tokenizer, model = make_tokenizer(chat), tiny_model("llama")
    chosen, rejected = PairedCollator(tokenizer, padding_side=side)(ROWS)
    assert chosen["keys"] == [(0, "chosen"), (1, "chosen")] and rejected["keys"][1] == (1, "rejected")
    tensors = {k: v for k, v in chosen.items() if k != "keys"}
    with torch.no_grad():
        got = sequence_logps(model, *tensors.values())
        for i, row in enumerate(ROWS):
            prompt, completion = tokenize_completion(tokenizer, row["prompt"], row["chosen"])
            logp = torch.log_softmax(model(input_ids=torch.tensor([prompt + completion])).logits[0], -1)
            want = sum(logp[len(prompt) + j - 1, t] for j, t in enumerate(completion))
            torch.testing.assert_close(got[i], want, **tol("float64_model"))


def test_paired_collator_feeds_a_cached_reference_and_the_loss():
    tokenizer = make_tokenizer(chat=True)
    collate = PairedCollator(tokenizer, max_length=8)
    chosen, rejected = collate(ROWS)
    policy = tiny_model("gpt2")
    cache = ReferenceCache.build(tiny_model("gpt2"), [chosen, rejected])
    live = paired_loss(PolicyWithReference(policy), chosen, rejected, beta=0.5)
    cached = paired_loss(PolicyWithReference(policy, reference=cache), chosen, rejected, beta=0.5)
    torch.testing.assert_close(cached.loss, live.loss, **tol("float64"))
    assert chosen["input_ids"].shape[1] <= 8


def test_unpaired_collator():
    rows = [
        {"prompt": "the", "completion": "cat sat", "label": True},
        {"prompt": "why", "completion": "bad", "label": False},
    ]
    batch, desirable = UnpairedCollator(make_tokenizer(pad=False))(rows)  # pads with EOS
    assert desirable.tolist() == [True, False] and "keys" not in batch
    assert batch["input_ids"].tolist() == [ids("the cat sat </s>"), [*ids("why bad </s>"), ID["</s>"]]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: tokenize_completion(make_tokenizer(), "what is the cat", "sat", max_length=4), ValueError, r"the completion has no token left \(prompt: 4 tokens, max_length=4\)"),
        (lambda: tokenize_completion(make_tokenizer(), "the", "cat", max_length=0), ValueError, r"max_length must be a positive int or None, got 0"),
        (lambda: tokenize_completion(make_tokenizer(), "the", "cat", max_prompt_length=1.5), ValueError, r"max_prompt_length must be a positive int or None, got 1.5"),
        (lambda: tokenize_completion(make_tokenizer(), [{"role": "user", "content": "the"}], "cat"), TypeError, r"prompt can be chat messages only for a tokenizer with a chat template"),
        (lambda: pad_batch([], 0), ValueError, r"pad_batch needs at least one sequence"),
        (lambda: pad_batch([([1], [2])], 0, padding_side="middle"), ValueError, r"padding_side must be 'right' or 'left', got 'middle'"),
        (lambda: PairedCollator(make_tokenizer())([{"prompt": "the", "chosen": "cat"}]), ValueError, r"row 0 has no 'rejected' \(it has \['chosen', 'prompt'\]\)"),
        (lambda: UnpairedCollator(make_tokenizer())([{"prompt": "the", "completion": "cat", "label": 1}]), TypeError, r"row 0: label must be a bool \(True: desirable\), got 1"),
        (lambda: UnpairedCollator(make_tokenizer(), padding_side="up"), ValueError, r"padding_side must be 'right' or 'left', got 'up'"),
        (lambda: UnpairedCollator(make_tokenizer(), max_length=0), ValueError, r"max_length must be a positive int or None, got 0"),
        (lambda: tokenize_completion(make_tokenizer(), "", "cat"), ValueError, r"the prompt has no token \(an empty prompt, and a tokenizer that adds no BOS\)"),
        (lambda: tokenize_completion(make_tokenizer(), "the", None), TypeError, r"completion must be a str, got NoneType"),
        (lambda: tokenize_completion(make_tokenizer(chat=True), 7, "cat"), TypeError, r"prompt must be a str or a list of chat messages, got int"),
        (lambda: pad_batch([([1], [2]), ([3], [])], 0), ValueError, r"sequence 1 has an empty completion"),
        (lambda: pad_batch([([], [2])], 0), ValueError, r"sequence 0 has an empty prompt"),
        (lambda: pad_batch([([1], [2])], None), TypeError, r"pad_token_id must be an int, got None"),
        (lambda: pad_batch([([1.5], [2.7])], 0), TypeError, r"sequence 0's prompt must hold int token ids, got 1.5"),  # cast to [[1, 2]] before
        (lambda: pad_batch([([1], [2]), ([3], [True])], 0), TypeError, r"sequence 1's completion must hold int token ids, got True"),
        (lambda: PairedCollator(make_tokenizer())([{"prompt": "the", "chosen": "cat", "rejected": "dog", "key": 0}, {"prompt": "the", "chosen": "cat", "rejected": "dog"}]), ValueError, r"row\(s\) \[1\] have no 'key' while others do"),
    ],
)  # fmt: skip
def test_bad_data_gets_clear_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()
