"""LLM fine-tuning with AOT: per-sequence log-probabilities of Hugging Face causal LMs.

Needs only torch; the models come from transformers (and PEFT), installed with
``pip install "aot-loss[llm]"``.
"""

from .logps import sequence_logps

__all__ = ["sequence_logps"]
