"""LLM fine-tuning with AOT: tokenisation and collation of preference data, per-sequence
log-probabilities of Hugging Face causal LMs, the policy and its frozen reference, and the AOT
losses on batches of completions.

Needs only torch; the models and tokenizers come from transformers (and PEFT), which the
``llm`` extra installs (``pip install ".[llm]"`` in a clone).
"""

from .data import PairedCollator, UnpairedCollator, pad_batch, tokenize_completion
from .logps import sequence_logps
from .losses import AOTOutput, paired_loss, unpaired_loss
from .reference import PolicyWithReference, ReferenceCache

__all__ = [
    "AOTOutput",
    "PairedCollator",
    "PolicyWithReference",
    "ReferenceCache",
    "UnpairedCollator",
    "pad_batch",
    "paired_loss",
    "sequence_logps",
    "tokenize_completion",
    "unpaired_loss",
]
