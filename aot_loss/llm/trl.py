"""TRL integration. ``AOTDPOTrainer``: TRL's ``DPOTrainer`` with its ``aot`` / ``aot_unpaired``
terms computed by aot-loss, which adds costs, soft sorting, second order, global coupling
across ranks and WPO weights through the exact weighted coupling. ``AOTKTOTrainer``: TRL's
``KTOTrainer`` with ``aot_unpaired`` on unpaired (prompt, completion, label) data. Both let
TRL run its own forward passes and read their outputs.

Importing this module needs ``trl`` (the ``trl`` extra: ``pip install ".[trl]"`` in a clone);
nothing else in aot_loss imports it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import numbers
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import Tensor

from .. import metrics as dominance
from .._distributed import check_group, resolve_group
from .._optional import missing
from .._options import DEFAULTS as _OPTION_DEFAULTS
from .._options import check_options as check_loss_options
from .._validation import check_count
from ..functional import paired, unpaired

try:
    import trl.trainer.utils as _trl_head  # the module of TRL's fused LM head, retiled by chunk_size
    from accelerate.utils import is_peft_model  # type: ignore[import-untyped]
    from trl import DPOTrainer, KTOTrainer
    from trl.trainer.utils import add_fused_lm_head
except (ImportError, RuntimeError) as error:
    # trl itself is missing, or one of its dependencies, which trl's lazy modules report as a
    # RuntimeError raised from the ImportError
    cause = error if isinstance(error, ImportError) else error.__cause__
    if not isinstance(cause, ImportError):
        raise
    raise missing("trl", "aot_loss.llm.trl", cause) from error

__all__ = ["AOTDPOTrainer", "AOTKTOTrainer"]

_AOT_LOSS_TYPES = ("aot", "aot_unpaired")
_OWN_OPTIONS = ("beta", "label_smoothing")  # taken from the trainer's DPOConfig
# What aot_options may set: the loss options but those above and the reduction, and the group.
_DEFAULTS = {
    name: default for name, default in _OPTION_DEFAULTS.items() if name not in (*_OWN_OPTIONS, "reduction")
} | {"group": None}
_AOT_OPTIONS = tuple(_DEFAULTS)


def _named_options(
    aot_options: Mapping[str, Any] | None, owned: tuple[str, ...], source: str, extra: tuple[str, ...] = ()
) -> dict[str, Any]:
    """``aot_options`` as a dict, refusing names the trainer's config owns and unknown ones."""
    options = dict(aot_options or {})
    allowed = tuple(n for n in (*_AOT_OPTIONS, "label_smoothing", *extra) if n not in owned)
    for name in options:
        if name in (*owned, "reduction"):
            where = source if name in owned else "'mean' (a training loss is a scalar)"
            raise ValueError(f"aot_options must not set {name!r}: it comes from {where}")
        if name not in allowed:
            raise ValueError(f"aot_options got an unknown option {name!r}; the options are {allowed}")
    return options


def _config(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    """The trainer's config, passed as ``args=`` or third positionally (model, ref_model, args)."""
    return kwargs.get("args", args[2] if len(args) > 2 else None)


def _check_values(options: Mapping[str, Any], **config: Any) -> None:
    """Fail when the trainer is built, not at the first step: the options as the loss checks them."""
    merged = {**_DEFAULTS, "label_smoothing": 0.0, **options, **config}
    check_group(merged.pop("group"))  # its type; the group itself is resolved at each step
    check_loss_options(merged)


@contextlib.contextmanager
def _scoring_passes(trainer: Any, model: Any, expected: int) -> Iterator[list[Any]]:
    """The outputs of TRL's scoring forward passes (``fused_lm_head=True``) of the policy and
    the reference, in call order, read by a forward hook while TRL computes its loss."""
    captured: list[Any] = []

    def capture(module: Any, args: Any, kwargs: dict[str, Any], output: Any) -> None:
        if kwargs.get("fused_lm_head"):  # not return_outputs' plain pass
            captured.append(output)

    modules = {
        id(m): m for m in (trainer.accelerator.unwrap_model(model), trainer.ref_model) if m is not None
    }
    handles = [m.register_forward_hook(capture, with_kwargs=True) for m in modules.values()]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()
    if len(captured) != expected:
        raise RuntimeError(
            f"{type(trainer).__name__} expected {expected} scoring passes of TRL's trainer, saw "
            f"{len(captured)}: this TRL version computes its loss otherwise"
        )


# What chunk_size changes in TRL's fused forward: whether it scores only the positions with a
# label (TRL does so on Triton devices only) and the function that scores them.
_HEAD_NAMES = ("_use_triton", "_ChunkedLogProbFunction")


class _TokenChunks:
    """TRL's chunked log-probability function applied to ``chunk_size`` tokens at a time.

    TRL's function tiles the vocabulary and recomputes each tile in its backward, keeping only
    its input rows; called per chunk of rows, at most one chunk's ``[chunk_size, V]`` tile
    (and its temporaries) is alive, whatever the number of tokens.
    """

    def __init__(self, function: Any, chunk_size: int) -> None:
        self.function, self.chunk_size = function, chunk_size

    def apply(self, hidden: Tensor, weight: Tensor, bias: Tensor | None, targets: Tensor, *rest: Any) -> Any:
        if hidden.shape[0] <= self.chunk_size:
            return self.function.apply(hidden, weight, bias, targets, *rest)
        parts = [
            self.function.apply(h, weight, bias, t, *rest)
            for h, t in zip(hidden.split(self.chunk_size), targets.split(self.chunk_size), strict=True)
        ]
        return tuple(None if fields[0] is None else torch.cat(fields) for fields in zip(*parts, strict=True))


@contextlib.contextmanager
def _chunked_head(chunk_size: int | None) -> Iterator[None]:
    """While open, TRL's fused LM head scores the positions with a label only, ``chunk_size``
    at a time (without it, off Triton, TRL scores every position in tiles of 4096 tokens)."""
    if chunk_size is None:
        yield
        return
    saved = {name: getattr(_trl_head, name) for name in _HEAD_NAMES}
    head: Any = _trl_head  # its private names are replaced, and put back on leaving
    head._use_triton = lambda device: True  # in this module it only chooses the positions scored
    head._ChunkedLogProbFunction = _TokenChunks(saved["_ChunkedLogProbFunction"], chunk_size)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(_trl_head, name, value)


class _ChunkSize:
    """The ``chunk_size`` option of both trainers: TRL's fused LM head on the completion
    positions only, ``chunk_size`` tokens at a time, in every pass (loss and reference)."""

    chunk_size: int | None = None

    def _set_chunk_size(self, chunk_size: int | None) -> None:
        check_count("chunk_size", chunk_size)
        missing_names = [name for name in _HEAD_NAMES if not hasattr(_trl_head, name)]
        if chunk_size is not None and missing_names:
            raise ValueError(
                f"chunk_size needs TRL's fused LM head as trl 1.16 builds it; this trl lacks "
                f"trl.trainer.utils.{missing_names[0]}: leave chunk_size=None"
            )
        self.chunk_size = chunk_size

    def compute_ref_log_probs(self, model: Any, inputs: dict[str, Any]) -> Any:
        with _chunked_head(self.chunk_size):
            return super().compute_ref_log_probs(model, inputs)  # type: ignore[misc]


class AOTDPOTrainer(_ChunkSize, DPOTrainer):
    r"""TRL's `DPOTrainer`, with each `"aot"` (paired) or `"aot_unpaired"` term of its loss
    computed by [`aot_loss.paired`][aot_loss.paired] / [`aot_loss.unpaired`][aot_loss.unpaired].

    Everything else is TRL's own: the forward passes (its fused LM head, PEFT adapters,
    precomputed reference log-probabilities, `ld_alpha`), the other terms of a `loss_type`
    list and their `loss_weights`, a mixture-of-experts model's router auxiliary loss, and every
    metric TRL logs. TRL's `_compute_loss` runs with the AOT terms left out of its list; the
    per-sequence log-probabilities it computes are read from its forward passes' outputs (a
    forward hook), and each AOT term is added with its weight. With TRL's defaults each AOT
    term equals TRL's own: the logistic cost with the config's `beta` and `label_smoothing`, on
    the summed completion log-probabilities of the chosen and rejected halves of the batch.
    `aot_options` adds what TRL lacks:

    - `loss`: another cost (`"hinge"`, `"squared_hinge"`, `"least_squares"`, a callable);
    - `sort="soft"` and `soft_strength`; `order=2` and `quantile_range`;
    - `group="world"`: couple the global batch across ranks (see the distributed page);
    - `backend`.

    `use_weighting=True` (WPO), which TRL refuses for AOT because sorting would misalign
    per-pair weights, works here through the weighted coupling: TRL's WPO weight of each
    sequence, $w = \exp(\text{mean over its tokens of } \log\pi - \log\sum_v \pi_v^2)$ (no
    gradient), becomes the **mass** of its sample in the empirical distribution: for
    `aot_unpaired` chosen rewards carry $w^+$ and rejected rewards $w^-$; for `aot` each pair's
    margins carry $w^+ w^-$. Masses are normalised per side, so unlike TRL's multiplication
    of per-pair losses the weights reshape the distributions compared and leave the loss's
    scale alone. The other terms are weighted as TRL weighs them.

    **`chunk_size`.** TRL's fused LM head never forms the $(2B, T, V)$ logits, but off Triton
    devices (on CPU, for example) it scores every position, prompt and padding included, in
    tiles of 4096 tokens by 32768 vocabulary entries. With `chunk_size`, every pass (the
    policy's, the reference's, precomputed references) scores only the completion positions,
    `chunk_size` tokens at a time, with TRL's own kernel: the values, gradients and metrics
    are TRL's (to float32 rounding), and at most one `[chunk_size, V]` tile is alive.

    Each step logs TRL's metrics plus `aot/dominance_violation`, the
    [`fsd_violation`][aot_loss.metrics.fsd_violation] of U over V (of the last AOT term).

    Args:
        *args: as for `trl.DPOTrainer`.
        aot_options: keyword options of the aot-loss functions: any but `beta` and
            `label_smoothing` (from the config), `reduction` (always `"mean"`) and the
            weights. They are validated here, with the config's `beta` and
            `label_smoothing`, and need an AOT term in `loss_type`.
        chunk_size: tokens per LM-head chunk (see below); `None` (default) leaves TRL's
            fused head as it is.
        **kwargs: as for `trl.DPOTrainer`.

    Shape:
        Batches as TRL collates them: `input_ids`, `attention_mask`, `completion_mask` of
        shape $(2B, T)$, the $B$ chosen rows first.

    Example:
        ```python
        from trl import DPOConfig
        from aot_loss.llm.trl import AOTDPOTrainer

        config = DPOConfig(output_dir="out", loss_type=["aot_unpaired", "sft"], loss_weights=[1.0, 0.1])
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
        self._set_chunk_size(chunk_size)  # before TRL's __init__, which may precompute references
        options = _named_options(aot_options, _OWN_OPTIONS, "the DPOConfig")
        config = _config(args, kwargs)
        types = [] if config is None else list(config.loss_type)
        if "aot_pair" in types:  # TRL would only fail at the first step, without a hint
            raise ValueError(
                "loss_type 'aot_pair' is TRL's old name (before 0.28) for the unpaired loss, now "
                "'aot_unpaired'; the paired loss (the paper's AOT_pair) is 'aot'"
            )
        # TRL refuses WPO weights with an AOT term; build without them and add them back below.
        weighting = config is not None and config.use_weighting and any(t in _AOT_LOSS_TYPES for t in types)
        if weighting:
            config.use_weighting = False
        try:
            super().__init__(*args, **kwargs)
        finally:
            if weighting:
                config.use_weighting = True
        if weighting:
            self.use_weighting = True
            fields = ("log_probs", "entropy", "mean_logits", "is_top1", "log_sum_sq_probs")  # TRL's, with WPO
            policy: Any = self.model
            add_fused_lm_head(policy.get_base_model() if is_peft_model(policy) else policy, outputs=fields)
        self.aot_options = options
        if not self._aot_terms():
            if options:
                raise ValueError(
                    "aot_options need an 'aot' or 'aot_unpaired' term in loss_type, "
                    f"got loss_type={self.loss_types!r}"
                )
            return
        _check_values(options, beta=self.beta, label_smoothing=self.label_smoothing)

    def _aot_terms(self) -> list[tuple[str, float]]:
        """The (loss type, weight) of each AOT term of the loss."""
        pairs = zip(self.loss_types, self.loss_weights, strict=True)
        return [(kind, weight) for kind, weight in pairs if kind in _AOT_LOSS_TYPES]

    def _compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool) -> Any:
        with _chunked_head(self.chunk_size):
            return self._aot_loss(model, inputs, return_outputs)

    def _aot_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool) -> Any:
        terms = self._aot_terms()
        if not terms:
            return super()._compute_loss(model, inputs, return_outputs)
        types, weights = self.loss_types, self.loss_weights
        self.loss_types = [t for t in types if t not in _AOT_LOSS_TYPES]
        self.loss_weights = [w for t, w in zip(types, weights, strict=True) if t not in _AOT_LOSS_TYPES]
        try:
            with _scoring_passes(self, model, 1 if self.precompute_ref_logps else 2) as captured:
                result = super()._compute_loss(model, inputs, return_outputs)
        finally:
            self.loss_types, self.loss_weights = types, weights
        loss, outputs = result if return_outputs else (result, None)
        mask = inputs["completion_mask"][..., 1:]
        chosen, rejected = self._logps(captured[0].log_probs, mask).chunk(2)
        if self.precompute_ref_logps:
            ref_chosen, ref_rejected = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
        else:
            ref_chosen, ref_rejected = self._logps(captured[1].log_probs, mask).chunk(2)
        chosen_weights = rejected_weights = None
        if self.use_weighting:
            chosen_weights, rejected_weights = self._wpo_weights(captured[0], mask).chunk(2)
        options = {"beta": self.beta, "label_smoothing": self.label_smoothing, **self.aot_options}
        for kind, weight in terms:
            if kind == "aot":
                pair_weights = None
                if chosen_weights is not None and rejected_weights is not None:
                    pair_weights = chosen_weights * rejected_weights
                term = paired(chosen, rejected, ref_chosen, ref_rejected, weights=pair_weights, **options)
                u, v = (chosen - rejected).detach(), ref_chosen - ref_rejected
            else:
                term = unpaired(
                    chosen - ref_chosen, rejected - ref_rejected, pos_weights=chosen_weights,
                    neg_weights=rejected_weights, **options,
                )  # fmt: skip
                u, v = (chosen - ref_chosen).detach(), rejected.detach() - ref_rejected
            loss = loss + term * weight
        mode = "train" if getattr(self.model, "training", False) else "eval"
        violation = dominance.fsd_violation(self.accelerator.gather(u), self.accelerator.gather(v))
        self._metrics[mode]["aot/dominance_violation"].append(violation.item())
        return (loss, outputs) if return_outputs else loss

    def _logps(self, per_token_logps: Tensor, mask: Tensor) -> Tensor:
        """Each sequence's completion log-probability as TRL sums it (``ld_alpha`` included)."""
        per_token = per_token_logps[:, -mask.size(1) :]
        if self.ld_alpha is None:
            return per_token.sum(dim=1)
        position = mask.cumsum(dim=1)
        chosen_lengths, rejected_lengths = mask.sum(dim=1).long().chunk(2)
        shared = torch.minimum(chosen_lengths, rejected_lengths).repeat(2).unsqueeze(1)
        shared_logps = (per_token * ((position > 0) & (position <= shared))).sum(dim=1)
        tail_logps = (per_token * (position > shared)).sum(dim=1)
        return shared_logps + self.ld_alpha * tail_logps

    @staticmethod
    def _wpo_weights(outputs: Any, mask: Tensor) -> Tensor:
        """TRL's WPO weight of each sequence (no gradient)."""
        with torch.no_grad():
            seq_len = mask.size(1)
            aligned = (outputs.log_probs[:, -seq_len:] - outputs.log_sum_sq_probs[:, -seq_len:]) * mask
            return torch.exp(aligned.sum(dim=1) / mask.sum(dim=1).clamp_min(1))


class AOTKTOTrainer(_ChunkSize, KTOTrainer):
    r"""TRL's `KTOTrainer` with `loss_type="aot_unpaired"`: AOT on truly unpaired data.

    On TRL's unpaired datasets (`prompt`, `completion`, `label`), each step takes the rewards
    $r = \log\pi - \log\pi_{\text{ref}}$ of the batch's desirable completions as U and of its
    undesirable ones as V, whatever their counts, and minimises
    [`aot_loss.unpaired`][aot_loss.unpaired]`(U, V)`: the exact coupling of the two empirical
    distributions on their merged quantile grid, so a batch of 1 desirable and 4 undesirable
    completions is compared as two distributions, not as pairs. The forward passes, the
    reference (a model copy, the PEFT policy with its adapters disabled, or precomputed
    log-probabilities), a mixture-of-experts model's router auxiliary loss and TRL's metrics
    are TRL's (KTO's KL estimate is not computed: AOT does not use it, and its `kl` metric
    reads 0). Other `loss_type`s go to TRL unchanged.

    **One-sided batches.** A batch without a desirable or without an undesirable completion
    (with `group`, a global batch) has nothing to couple: its loss is 0 with a zero gradient,
    and the metric `aot/one_sided_batches` counts such batches (per logging interval).
    `aot/dominance_violation` is the [`fsd_violation`][aot_loss.metrics.fsd_violation] of
    U over V on this process's batch.

    **Weights.** The empirical distributions are normalised per side, so a constant weight
    on each side (`desirable_weight`, `undesirable_weight`) would change nothing; values
    other than 1 are refused. Imbalance needs no correction: the coupling is exact for any
    counts. Per-example weights do change the loss: `aot_options={"weights": "w"}` reads the
    dataset column `w` (a non-negative number per example) as each example's **mass** in its
    side's empirical distribution (`pos_weights` for the desirable completions, `neg_weights`
    for the undesirable ones; normalised per side, per batch, or per global batch with
    `group`). A side whose masses in a batch are all zero is an error, as in
    [`aot_loss.unpaired`][aot_loss.unpaired].

    Args:
        *args: as for `trl.KTOTrainer`.
        aot_options: keyword options of [`aot_loss.unpaired`][aot_loss.unpaired]: any but
            `beta` (from the config) and `reduction`; `label_smoothing` (default 0) is one of
            them, as KTO's config has none; `weights` names a dataset column of per-example
            masses (see above). Checked when the trainer is built.
        chunk_size: tokens per LM-head chunk, as for
            [`AOTDPOTrainer`][aot_loss.llm.trl.AOTDPOTrainer]; `None` (default) leaves TRL's
            fused head as it is.
        **kwargs: as for `trl.KTOTrainer`.

    Shape:
        Batches as TRL collates them: `input_ids`, `attention_mask`, `completion_mask` of
        shape $(B, T)$ and `label` of shape $(B,)$.

    Example:
        ```python
        from trl import KTOConfig
        from aot_loss.llm.trl import AOTKTOTrainer

        config = KTOConfig(output_dir="out", loss_type="aot_unpaired", beta=0.1)
        trainer = AOTKTOTrainer(
            model=policy, ref_model=reference, args=config, train_dataset=unpaired_dataset,
            processing_class=tokenizer, aot_options={"loss": "hinge", "group": "world"},
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
        self._set_chunk_size(chunk_size)
        options = _named_options(aot_options, ("beta",), "the KTOConfig", extra=("weights",))
        column = options.pop("weights", None)
        if column is not None and not isinstance(column, str):
            raise TypeError(f"aot_options['weights'] must name a dataset column (a str), got {column!r}")
        self.weights_column: str | None = column
        config = _config(args, kwargs)
        aot = config is not None and config.loss_type == "aot_unpaired"
        if not aot:
            if options or column is not None:
                kind = getattr(config, "loss_type", "kto")
                raise ValueError(f"aot_options need loss_type='aot_unpaired', got loss_type={kind!r}")
            super().__init__(*args, **kwargs)
            return
        for name in ("desirable_weight", "undesirable_weight"):
            if getattr(config, name) != 1.0:
                raise ValueError(
                    f"{name}={getattr(config, name)!r} has no effect on loss_type='aot_unpaired', which "
                    "normalises each side's distribution and couples any counts exactly; leave it at 1.0"
                )
        _check_values(options, beta=config.beta)
        # TRL builds the trainer of its KL-free unpaired loss (no KL dataset, any sampler); the
        # AOT term replaces that loss at each step.
        config.loss_type = "apo_zero_unpaired"
        imbalance = _DropImbalanceAdvice()
        kto_logger = logging.getLogger("trl.trainer.kto_trainer")
        kto_logger.addFilter(imbalance)
        try:
            super().__init__(*args, **kwargs)
        finally:
            config.loss_type = "aot_unpaired"
            kto_logger.removeFilter(imbalance)
        self.loss_type = "aot_unpaired"
        self.aot_options = options
        if column is not None:
            datasets = [self.train_dataset]
            evaluation = self.eval_dataset
            datasets += list(evaluation.values()) if isinstance(evaluation, dict) else [evaluation]
            for dataset in datasets:
                names = getattr(dataset, "column_names", None)
                if names is not None and column not in names:
                    raise ValueError(
                        f"aot_options['weights']={column!r} names no column of the dataset, whose "
                        f"columns are {names}"
                    )
            self.data_collator = _WithMasses(self.data_collator, column)

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        column, kept = self.weights_column, self._signature_columns
        if column is not None and kept is not None and column not in kept:
            self._signature_columns = [*kept, column]  # so remove_unused_columns keeps it

    def _compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool) -> Any:
        with _chunked_head(self.chunk_size):
            return self._aot_loss(model, inputs, return_outputs)

    def _aot_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool) -> Any:
        if self.loss_type != "aot_unpaired":
            return super()._compute_loss(model, inputs, return_outputs)
        masses = None
        if self.weights_column is not None:  # not an input of the model
            inputs = dict(inputs)
            masses = inputs.pop(self.weights_column)
        self.loss_type = "apo_zero_unpaired"  # TRL's passes and metrics; its loss is replaced below
        try:
            with _scoring_passes(self, model, 1 if self.precompute_ref_logps else 2) as captured:
                result = super()._compute_loss(model, inputs, return_outputs)
        finally:
            self.loss_type = "aot_unpaired"
        outputs = result[1] if return_outputs else None
        seq_len = inputs["input_ids"].size(1) - 1
        logps = captured[0].log_probs[:, -seq_len:].sum(-1)
        if self.precompute_ref_logps:
            ref_logps = inputs["ref_logps"].to(logps.device)
        else:
            ref_logps = captured[1].log_probs[:, -seq_len:].sum(-1)
        desirable = torch.as_tensor(inputs["label"], dtype=torch.bool, device=logps.device)
        rewards = logps - ref_logps
        u, v = rewards[desirable], rewards[~desirable]
        u_weights = v_weights = None
        if masses is not None:
            masses = masses.to(logps.device)
            u_weights, v_weights = masses[desirable], masses[~desirable]
        mode = "train" if getattr(self.model, "training", False) else "eval"
        options = {"beta": self.beta, **self.aot_options}
        if self._both_sides(u, v, options.get("group")):
            loss = unpaired(u, v, pos_weights=u_weights, neg_weights=v_weights, **options)
            if u.numel() and v.numel():  # of this process's batch: the counts differ across ranks
                violation = dominance.fsd_violation(
                    u.detach(), v.detach(), u_weights=u_weights, v_weights=v_weights
                )
                self._metrics[mode]["aot/dominance_violation"].append(violation.item())
            one_sided = 0.0
        else:
            loss = logps.sum() * 0.0  # no coupling: zero, with a zero gradient reaching every parameter
            one_sided = 1.0
        self._metrics[mode]["aot/one_sided_batches"].append(one_sided)
        if self.aux_loss_enabled:
            loss = loss + self.router_aux_loss_coef * captured[0].aux_loss
        return (loss, outputs) if return_outputs else loss

    @staticmethod
    def _both_sides(u: Tensor, v: Tensor, group: Any) -> bool:
        """Whether U and V both have samples: in this batch, or in the global batch of ``group``
        (every rank of the group reaches the same answer)."""
        counts = torch.tensor([u.numel(), v.numel()], device=u.device)
        resolved = resolve_group(group)
        if resolved is not None:
            torch.distributed.all_reduce(counts, group=resolved)
        return bool((counts > 0).all())

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """TRL's logging, with ``aot/one_sided_batches`` a count over the interval, not a mean."""
        mode = "train" if getattr(self.model, "training", False) else "eval"
        counts = self._metrics[mode].get("aot/one_sided_batches")
        if counts:
            self._metrics[mode]["aot/one_sided_batches"] = [float(sum(counts))]  # TRL logs each list's mean
        super().log(logs, start_time)


class _WithMasses:
    """TRL's collator, plus each example's mass from the dataset column ``column``."""

    def __init__(self, collator: Any, column: str) -> None:
        self.collator, self.column = collator, column

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.collator(examples)
        values = [example[self.column] for example in examples]
        bad = [x for x in values if not (isinstance(x, numbers.Real) and math.isfinite(x) and float(x) >= 0)]
        if bad:
            raise ValueError(
                f"the weights column {self.column!r} must hold a finite number >= 0 per example, "
                f"got {bad[0]!r}"
            )
        batch[self.column] = torch.tensor(values, dtype=torch.float64)
        return batch


class _DropImbalanceAdvice(logging.Filter):
    """TRL's advice to reweight imbalanced KTO data: AOT couples any counts exactly."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "different amounts of desirable/positive and undesirable/negative" not in record.getMessage()
