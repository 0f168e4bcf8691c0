"""LLM fine-tuning with AOT: per-sequence log-probabilities of Hugging Face causal LMs, the
policy and its frozen reference, and the AOT losses on batches of completions.

Needs only torch; the models come from transformers (and PEFT), installed with
``pip install "aot-loss[llm]"``.
"""

from .logps import sequence_logps
from .losses import AOTOutput, paired_loss, unpaired_loss
from .reference import PolicyWithReference, ReferenceCache

__all__ = [
    "AOTOutput",
    "PolicyWithReference",
    "ReferenceCache",
    "paired_loss",
    "sequence_logps",
    "unpaired_loss",
]
