"""aot_loss.llm.sequence_logps on tiny random GPT-2 and Llama models (built from configs,
offline): against an explicit per-token loop, across paddings, chunked against plain."""

from __future__ import annotations

import pytest
import torch
from optional import import_or_skip
from tolerances import tol

transformers = import_or_skip("transformers")


from aot_loss.llm import sequence_logps  # noqa: E402

VOCAB = 97


def tiny_model(kind: str, dtype: torch.dtype = torch.float64, **config: object) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "gpt2":
        cfg = transformers.GPT2Config(
            n_layer=2, n_head=2, n_embd=16, vocab_size=VOCAB, n_positions=64, **config
        )
        model = transformers.GPT2LMHeadModel(cfg)
    else:
        cfg = transformers.LlamaConfig(
            num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, hidden_size=16,
            intermediate_size=32, vocab_size=VOCAB, max_position_embeddings=64, **config,
        )  # fmt: skip
        model = transformers.LlamaForCausalLM(cfg)
    return model.to(dtype).eval()


# (prompt, completion) token lists of different lengths
SEQUENCES = [([5, 6, 7], [8, 9]), ([11], [12, 13]), ([20, 21, 22, 23], [24, 25, 26]), ([30, 31], [32])]


def batch(side: str, sequences=SEQUENCES) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """input_ids, attention_mask, completion_mask, padded on ``side`` with token 0."""
    width = max(len(p) + len(c) for p, c in sequences)
    ids, attention, completion = [], [], []
    for prompt, answer in sequences:
        pad = width - len(prompt) - len(answer)
        row = prompt + answer
        mask = [0] * len(prompt) + [1] * len(answer)
        if side == "left":
            (
                ids.append([0] * pad + row),
                attention.append([0] * pad + [1] * len(row)),
                completion.append([0] * pad + mask),
            )
        else:
            (
                ids.append(row + [0] * pad),
                attention.append([1] * len(row) + [0] * pad),
                completion.append(mask + [0] * pad),
            )
    return torch.tensor(ids), torch.tensor(attention), torch.tensor(completion)


def loop_oracle(model, sequences=SEQUENCES, average: bool = False) -> torch.Tensor:
    """Each sequence alone, unpadded: log_softmax of the logits, one completion token at a time."""
    out = []
    for prompt, answer in sequences:
        ids = torch.tensor([prompt + answer])
        logp = torch.log_softmax(model(input_ids=ids).logits[0].double(), dim=-1)
        terms = [logp[len(prompt) + i - 1, token] for i, token in enumerate(answer)]
        total = torch.stack(terms).sum()
        out.append(total / len(answer) if average else total)
    return torch.stack(out)


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("average", [False, True])
@pytest.mark.parametrize("chunk_size", [None, 1, 3, 1000])
def test_equals_the_per_token_loop_for_either_padding(kind, side, average, chunk_size):
    model = tiny_model(kind)
    with torch.no_grad():
        got = sequence_logps(model, *batch(side), average=average, chunk_size=chunk_size)
        want = loop_oracle(model, average=average)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, want, **tol("float64_model"))


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
@pytest.mark.parametrize("chunk_size", [1, 4])
def test_chunked_gradients_equal_plain_gradients(kind, chunk_size):
    model = tiny_model(kind)
    probe = torch.tensor([1.0, -0.5, 2.0, 0.3], dtype=torch.float64)

    def grads(chunk):
        model.zero_grad()
        (sequence_logps(model, *batch("left"), chunk_size=chunk) * probe).sum().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain, chunked = grads(None), grads(chunk_size)
    assert plain.keys() == chunked.keys() and len(plain) > 0
    for name in plain:
        torch.testing.assert_close(chunked[name], plain[name], **tol("float64_chunked"), msg=name)


def test_chunked_path_never_forms_full_logits():
    model = tiny_model("llama")
    widths = []
    model.get_output_embeddings().register_forward_hook(lambda m, args, out: widths.append(out.shape))
    sequence_logps(model, *batch("right"), chunk_size=2).sum().backward()
    assert widths and all(shape == (min(2, shape[0]), VOCAB) for shape in widths), widths
    assert sum(shape[0] for shape in widths) == 2 * 8  # 8 completion tokens, each recomputed once


def test_float32_model_computes_in_float32_and_matches_float64():
    model32, model64 = tiny_model("gpt2", torch.float32), tiny_model("gpt2", torch.float64)
    with torch.no_grad():
        got = sequence_logps(model32, *batch("left"), chunk_size=3)
        want = sequence_logps(model64, *batch("left"))
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), want, **tol("float32_model"))


def test_bfloat16_model_gets_float32_log_softmax():
    model = tiny_model("llama", torch.bfloat16)
    with torch.no_grad():
        got = sequence_logps(model, *batch("right"))
    assert got.dtype == torch.float32


def test_peft_lora_model_chunked_equals_plain_and_trains_only_adapters():
    peft = import_or_skip("peft")
    model = peft.get_peft_model(
        tiny_model("llama"),
        peft.LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )

    def run(chunk):
        model.zero_grad()
        values = sequence_logps(model, *batch("left"), chunk_size=chunk)
        values.sum().backward()
        return values.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    (plain, plain_grads), (chunked, chunked_grads) = run(None), run(2)
    torch.testing.assert_close(chunked, plain, **tol("float64_model"))
    assert plain_grads.keys() == chunked_grads.keys() and all("lora_" in n for n in plain_grads)
    for name in plain_grads:
        torch.testing.assert_close(chunked_grads[name], plain_grads[name], **tol("float64_chunked"))


def _bad(**overrides):
    ids, attention, completion = batch("right")
    args = {"input_ids": ids, "attention_mask": attention, "completion_mask": completion} | overrides
    return args


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        (_bad(attention_mask=torch.ones(4, 4, dtype=torch.long)), {}, ValueError, r"attention_mask must have the shape of input_ids \(4, 7\), got \(4, 4\)"),
        (_bad(input_ids=torch.zeros(4, 7)), {}, TypeError, r"input_ids must hold integer token ids, got dtype torch.float32"),
        (_bad(completion_mask=torch.ones(5, dtype=torch.long)), {}, ValueError, r"completion_mask must be 2-D \(batch, sequence\), got shape \(5,\)"),
        (_bad(completion_mask=[[1]]), {}, TypeError, r"completion_mask must be a torch.Tensor, got list"),
        (_bad(completion_mask=torch.tensor([[0] + [1] * 6] * 4)), {}, ValueError, r"completion_mask marks padding \(attention_mask == 0\) in row\(s\) \[0, 1, 3\]"),
        (_bad(completion_mask=batch("right")[2].index_put((torch.tensor([3]), torch.tensor([0])), torch.tensor(1))), {}, ValueError, r"completion_mask marks position 0 in row\(s\) \[3\]"),
        (_bad(completion_mask=batch("right")[2] * torch.tensor([[1], [0], [1], [0]])), {}, ValueError, r"no completion token in row\(s\) \[1, 3\]"),
        (_bad(input_ids=torch.zeros(4, 1, dtype=torch.long), attention_mask=torch.ones(4, 1), completion_mask=torch.zeros(4, 1)), {}, ValueError, r"at least one sequence of two tokens"),
        (_bad(), {"chunk_size": 0}, ValueError, r"chunk_size must be a positive int or None, got 0"),
        (_bad(), {"chunk_size": 2.0}, ValueError, r"chunk_size must be a positive int or None, got 2.0"),
        (_bad(), {"average": "yes"}, TypeError, r"average must be a bool, got 'yes'"),
        # ids outside the vocabulary: an IndexError from inside the embedding before
        (_bad(input_ids=batch("right")[0].index_put((torch.tensor([2]), torch.tensor([3])), torch.tensor(10**6))), {}, ValueError, r"input_ids must be token ids in \[0, \d+\), the model's vocabulary, got 1000000 at index \(2, 3\)"),
        (_bad(input_ids=batch("right")[0].index_put((torch.tensor([1]), torch.tensor([0])), torch.tensor(-100))), {}, ValueError, r"input_ids must be token ids in \[0, \d+\).* got -100 at index \(1, 0\)"),
    ],
)  # fmt: skip
def test_bad_batches_get_clear_errors(args, kwargs, error, message):
    with pytest.raises(error, match=message):
        sequence_logps(tiny_model("gpt2"), **args, **kwargs)


def test_chunking_refuses_models_whose_logits_are_not_the_lm_head_output():
    model = tiny_model("gpt2")
    model.config.final_logit_softcapping = 30.0
    with pytest.raises(ValueError, match=r"config sets final_logit_softcapping=30.0"):
        sequence_logps(model, *batch("right"), chunk_size=2)
    assert sequence_logps(model, *batch("right")).shape == (4,)  # the plain path still works
