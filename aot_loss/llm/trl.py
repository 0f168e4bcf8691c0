"""TRL integration: TRL's ``DPOTrainer`` with its ``aot`` / ``aot_unpaired`` losses computed by
aot-loss, which adds costs, soft sorting, global coupling across ranks and the chunked LM head.

Importing this module needs ``trl`` (the ``trl`` extra: ``pip install ".[trl]"`` in a clone);
nothing else in aot_loss imports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from .. import metrics as dominance
from .._distributed import check_group
from .._optional import missing
from .._options import DEFAULTS as _OPTION_DEFAULTS
from .._options import check_options as check_loss_options
from ..functional import paired, unpaired
from .logps import check_options, sequence_logps

try:
    from trl import DPOTrainer
except (ImportError, RuntimeError) as error:
    # trl itself is missing, or one of its dependencies, which trl's lazy modules report as a
    # RuntimeError raised from the ImportError
    cause = error if isinstance(error, ImportError) else error.__cause__
    if not isinstance(cause, ImportError):
        raise
    raise missing("trl", "aot_loss.llm.trl", cause) from error

__all__ = ["AOTDPOTrainer"]

_AOT_LOSS_TYPES = ("aot", "aot_unpaired")
_OWN_OPTIONS = ("beta", "label_smoothing")  # taken from the trainer's DPOConfig
# What aot_options may set: the loss options but those above and the reduction, and the group.
_DEFAULTS = {
    name: default for name, default in _OPTION_DEFAULTS.items() if name not in (*_OWN_OPTIONS, "reduction")
} | {"group": None}
_AOT_OPTIONS = tuple(_DEFAULTS)


class AOTDPOTrainer(DPOTrainer):
    r"""TRL's `DPOTrainer`, with `loss_type="aot"` (paired) or `"aot_unpaired"` computed by
    [`aot_loss.paired`][aot_loss.paired] / [`aot_loss.unpaired`][aot_loss.unpaired].

    With TRL's defaults the loss equals TRL's own: the logistic cost with the config's `beta`
    and `label_smoothing`, on the summed completion log-probabilities of the chosen and
    rejected halves of each batch. `aot_options` adds what TRL lacks:

    - `loss`: another cost (`"hinge"`, `"squared_hinge"`, `"least_squares"`, a callable);
    - `sort="soft"` and `soft_strength`;
    - `group="world"`: couple the global batch across ranks (see the distributed page);
    - `backend`.

    `chunk_size` computes the log-probabilities without the `[B, T, V]` logits (see
    [`sequence_logps`][aot_loss.llm.sequence_logps]). Other loss types, or a list of
    several, go to TRL unchanged.

    Each step logs TRL's `rewards/*` and `logps/*` metrics, plus
    `aot/dominance_violation`, the [`fsd_violation`][aot_loss.metrics.fsd_violation] of U
    over V.

    Args:
        *args: as for `trl.DPOTrainer`.
        aot_options: keyword options of the aot-loss function: any but `beta` and
            `label_smoothing` (from the config), `reduction` (always `"mean"`) and the
            weights. They are validated here, with the config's `beta` and
            `label_smoothing`, and only for an AOT `loss_type`.
        chunk_size: LM-head chunk for the policy's and reference's log-probabilities.
        **kwargs: as for `trl.DPOTrainer`.

    Shape:
        Batches as TRL collates them: `input_ids`, `attention_mask`, `completion_mask` of
        shape $(2B, T)$, the $B$ chosen rows first.

    Example:
        ```python
        from trl import DPOConfig
        from aot_loss.llm.trl import AOTDPOTrainer

        config = DPOConfig(output_dir="out", loss_type="aot_unpaired", beta=0.1)
        trainer = AOTDPOTrainer(
            model=policy, ref_model=reference, args=config, train_dataset=dataset,
            processing_class=tokenizer, aot_options={"sort": "soft", "group": "world"},
        )
        trainer.train()
        ```
    """

    def __init__(
        self,
        *args: Any,
        aot_options: Mapping[str, Any] | None = None,
        chunk_size: int | None = None,
        **kwargs: Any,
    ) -> None:
        options = dict(aot_options or {})
        for name in options:
            if name in (*_OWN_OPTIONS, "reduction"):
                source = "the DPOConfig" if name in _OWN_OPTIONS else "'mean' (a training loss is a scalar)"
                raise ValueError(f"aot_options must not set {name!r}: it comes from {source}")
            if name not in _AOT_OPTIONS:
                raise ValueError(
                    f"aot_options got an unknown option {name!r}; the options are {_AOT_OPTIONS}"
                )
        check_options(chunk_size=chunk_size)
        super().__init__(*args, **kwargs)
        self.aot_options, self.aot_chunk_size = options, chunk_size
        if "aot_pair" in self.loss_types:  # TRL would only fail at the first step, without a hint
            raise ValueError(
                "loss_type 'aot_pair' is TRL's old name (before 0.28) for the unpaired loss, now "
                "'aot_unpaired'; the paired loss (the paper's AOT_pair) is 'aot'"
            )
        if not self._computes_aot():
            if options:
                raise ValueError(
                    "aot_options apply to loss_type 'aot' or 'aot_unpaired' alone, "
                    f"got loss_type={self.loss_types!r}"
                )
            return
        # Fail now, not at the first step: the options as the loss will validate them.
        merged = {**_DEFAULTS, **options, "beta": self.beta, "label_smoothing": self.label_smoothing}
        check_group(merged.pop("group"))  # its type; the group itself is resolved at each step
        check_loss_options(merged)

    def _computes_aot(self) -> bool:
        return list(self.loss_types) in ([t] for t in _AOT_LOSS_TYPES)

    def compute_loss(
        self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        if not self._computes_aot():
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        # As in TRL, a completion token at position 0 (an empty prompt) is not scored: nothing predicts it.
        completion = inputs["completion_mask"].clone()
        completion[:, 0] = 0
        tensors = inputs["input_ids"], inputs["attention_mask"], completion
        logps = sequence_logps(model, *tensors, chunk_size=self.aot_chunk_size)
        chosen, rejected = logps.chunk(2)
        ref_chosen, ref_rejected = self._reference_logps(model, inputs, tensors)
        options = {"beta": self.beta, "label_smoothing": self.label_smoothing, **self.aot_options}
        if self.loss_types[0] == "aot":
            loss = paired(chosen, rejected, ref_chosen, ref_rejected, **options)
            u, v = (chosen - rejected).detach(), ref_chosen - ref_rejected
        else:
            loss = unpaired(chosen - ref_chosen, rejected - ref_rejected, **options)
            u, v = (chosen - ref_chosen).detach(), rejected.detach() - ref_rejected
        mode = "train" if model.training else "eval"
        self._log_metrics(mode, chosen.detach(), rejected.detach(), ref_chosen, ref_rejected, u, v)
        return (loss, {}) if return_outputs else loss

    @torch.no_grad()
    def _reference_logps(
        self, model: Any, inputs: Mapping[str, Any], tensors: tuple[Tensor, ...]
    ) -> tuple[Tensor, Tensor]:
        """The reference's log-probabilities, as TRL gets them: precomputed, a reference model,
        or the PEFT policy with its adapters disabled."""
        if self.precompute_ref_logps:
            return inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
        # accelerate's autocast, as in TRL's reference pass (chunk_size calls the decoder directly,
        # past the prepared model's autocast wrapper)
        with self.accelerator.autocast():
            if self.ref_model is not None:
                ref = sequence_logps(self.ref_model, *tensors, chunk_size=self.aot_chunk_size)
            else:
                with self.accelerator.unwrap_model(model).disable_adapter():
                    ref = sequence_logps(model, *tensors, chunk_size=self.aot_chunk_size)
        chosen, rejected = ref.chunk(2)
        return chosen, rejected

    def _log_metrics(
        self,
        mode: str,
        chosen: Tensor,
        rejected: Tensor,
        ref_chosen: Tensor,
        ref_rejected: Tensor,
        u: Tensor,
        v: Tensor,
    ) -> None:
        rewards_chosen, rewards_rejected = (
            self.beta * (chosen - ref_chosen),
            self.beta * (rejected - ref_rejected),
        )
        gather = self.accelerator.gather
        values = {
            "rewards/chosen": gather(rewards_chosen).mean(),
            "rewards/rejected": gather(rewards_rejected).mean(),
            "rewards/accuracies": gather((rewards_chosen > rewards_rejected).float()).mean(),
            "rewards/margins": gather(rewards_chosen - rewards_rejected).mean(),
            "logps/chosen": gather(chosen).mean(),
            "logps/rejected": gather(rejected).mean(),
            "aot/dominance_violation": dominance.fsd_violation(gather(u), gather(v)),
        }
        for name, value in values.items():
            self._metrics[mode][name].append(value.item())
