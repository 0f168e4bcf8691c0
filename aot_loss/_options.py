"""The loss options, declared once: :class:`Options`.

Each option is one field of ``Options``: its name, type, default, and in its metadata
(:func:`option`) its check and documentation.
The rest derives from it: :func:`check_options` (which the functions, the Modules, the
metrics and the TRL trainer call), the Modules' attributes and ``repr``, the options ranks
of a process group must agree on (``_distributed``), and what ``AOTDPOTrainer``'s
``aot_options`` accepts. ``tests/test_options.py`` checks that the signatures and
docstrings of ``unpaired``, ``paired`` and the Modules list exactly these options, with
these defaults.

Adding an option: its field below, its keyword in the public signatures (the test names
any that lack it), and its use.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from functools import lru_cache, partial
from typing import Any, Literal, cast

import torch

from ._costs import COSTS, CostFn, Loss
from ._validation import SoftSortBackend, check_choice, check_soft_sort_backend, check_strength, real

Reduction = Literal["mean", "sum", "none"]
REDUCTIONS = ("mean", "sum", "none")
Backend = Literal["auto", "torch", "native"]
BACKENDS = ("auto", "torch", "native")
Sort = Literal["hard", "soft"]
SORTS = ("hard", "soft")


def _one_of(choices: tuple[str, ...]) -> Callable[[str, object], object]:
    return lambda name, value: check_choice(name, value, choices)


def _loss(name: str, value: object) -> object:
    if isinstance(value, str):
        if value not in COSTS:
            raise ValueError(f"{name} must be one of {tuple(COSTS)} or a callable, got {value!r}")
        return value
    if callable(value):
        return value
    raise TypeError(f"{name} must be a str in {tuple(COSTS)} or a callable, got {type(value).__name__}")


def _beta(name: str, value: object) -> float:
    beta = real(name, value)
    if not (math.isfinite(beta) and beta > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {beta!r}")
    return beta


def _label_smoothing(name: str, value: object) -> float:
    smoothing = real(name, value)
    if not 0.0 <= smoothing < 0.5:
        raise ValueError(f"{name} must be in [0, 0.5), got {smoothing!r}")
    return smoothing


def _order(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value not in (1, 2):
        raise ValueError(
            f"{name} must be 1 (first order: quantiles) or 2 (second order: tail means), got {value!r}"
        )
    return value


def _quantile_range(name: str, value: object) -> tuple[float, float]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"{name} must be a pair (lo, hi) of levels with 0 <= lo < hi <= 1, got {value!r}")
    lo, hi = real(f"{name}[0]", value[0]), real(f"{name}[1]", value[1])
    if not 0.0 <= lo < hi <= 1.0:
        raise ValueError(f"{name} must be a pair (lo, hi) of levels with 0 <= lo < hi <= 1, got {value!r}")
    return (lo, hi)


def _bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return value


def option(check: Callable[[str, object], object], doc: str, *, agree: bool = True) -> dict[str, Any]:
    """The metadata of a field of :class:`Options`: its check (which returns the validated
    value), its one-line documentation, and ``agree``: the ranks of a process group must
    agree on it, because it changes the loss (backends and checks do not)."""
    return {"check": check, "doc": doc, "agree": agree}


@dataclass(frozen=True)
class Options:
    """Validated loss options, and what derives from them: ``cost``, h as a one-argument
    function; ``name``, the built-in cost's name (None for a callable), which the native op
    takes; ``custom_cost``, whether ``loss`` is a callable."""

    loss: Loss = field(
        default="logistic", metadata=option(_loss, "the cost h(d): a built-in name or a callable")
    )
    beta: float = field(
        default=0.01, metadata=option(_beta, "inverse temperature (logistic) or margin (hinge)")
    )
    label_smoothing: float = field(
        default=0.0, metadata=option(_label_smoothing, "cDPO smoothing, logistic only")
    )
    reduction: Reduction = field(
        default="mean", metadata=option(_one_of(REDUCTIONS), "'mean', 'sum' or 'none'")
    )
    check_finite: bool = field(
        default=False, metadata=option(_bool, "raise on NaN or inf inputs", agree=False)
    )
    backend: Backend = field(default="auto", metadata=option(_one_of(BACKENDS), "the kernels", agree=False))
    sort: Sort = field(default="hard", metadata=option(_one_of(SORTS), "'hard' or 'soft' order statistics"))
    soft_strength: float = field(default=0.1, metadata=option(check_strength, "the soft sort's strength"))
    soft_backend: SoftSortBackend = field(
        default="auto", metadata=option(check_soft_sort_backend, "the soft sort's kernels", agree=False)
    )
    order: int = field(
        default=1, metadata=option(_order, "1: the quantile gaps; 2: the lower-tail mean gaps")
    )
    quantile_range: tuple[float, float] = field(
        default=(0.0, 1.0), metadata=option(_quantile_range, "the levels (lo, hi) that count")
    )

    cost: CostFn = field(init=False, repr=False, compare=False)
    name: str | None = field(init=False, repr=False, compare=False)
    custom_cost: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        builtin = isinstance(self.loss, str)
        if self.label_smoothing and not (builtin and COSTS[cast(str, self.loss)].smoothing):
            smoothed = " or ".join(repr(name) for name, cost in COSTS.items() if cost.smoothing)
            raise ValueError(
                f"label_smoothing={self.label_smoothing!r} applies to loss={smoothed} only, "
                f"got loss={self.loss!r}"
            )
        if builtin:
            h = COSTS[cast(str, self.loss)].value
            cost: CostFn = partial(h, beta=self.beta, label_smoothing=self.label_smoothing)
        else:
            cost = cast(CostFn, self.loss)
        object.__setattr__(self, "cost", cost)
        object.__setattr__(self, "name", self.loss if builtin else None)
        object.__setattr__(self, "custom_cost", not builtin)

    @property
    def plain(self) -> bool:
        """First order over every level: what the native op and the pairwise path compute."""
        return self.order == 1 and self.quantile_range == (0.0, 1.0)


OPTIONS = tuple(f for f in fields(Options) if f.init)
NAMES = tuple(f.name for f in OPTIONS)
DEFAULTS: dict[str, object] = {f.name: f.default for f in OPTIONS}
AGREED = tuple(f.name for f in OPTIONS if f.metadata["agree"])  # the ranks of a group must agree on these


def check_options(values: Mapping[str, object]) -> Options:
    """Validate the options in ``values`` (any mapping that holds them, such as a function's
    ``locals()``; a missing option takes its default) and bind the cost's parameters.

    The common case (a built-in cost and plain Python scalars) is memoised: validating the
    same options on every training step would otherwise cost ~10 us per call.
    """
    if torch.compiler.is_compiling():  # constants there; Dynamo traces neither lru_cache nor itemgetter
        return _check_options(*(values.get(name, default) for name, default in DEFAULTS.items()))
    try:
        args = _VALUES(values)  # every option given (a signature's locals()): one C-level lookup
    except KeyError:
        args = tuple(values.get(name, default) for name, default in DEFAULTS.items())
    if _CACHEABLE.issuperset(map(type, args)) and _plain_range(args[_RANGE]):
        return _cached_options(*args)
    return _check_options(*args)


def _plain_range(value: object) -> bool:
    """A quantile range that may key the cache: a tuple of floats. typed=True types only the
    arguments, not a tuple's items, so (False, True) would hit the entry of (0.0, 1.0)."""
    return value is _FULL or (type(value) is tuple and all(type(x) is float for x in value))


_VALUES = operator.itemgetter(*NAMES)
_RANGE = NAMES.index("quantile_range")
_FULL = DEFAULTS["quantile_range"]
_CACHEABLE = frozenset((str, float, int, bool, tuple))  # exact types: hashing a Tensor beta would be wrong


@lru_cache(maxsize=64, typed=True)  # typed: beta=True must not hit beta=1
def _cached_options(*args: object) -> Options:
    return _check_options(*args)


def _check_options(*args: object) -> Options:
    checked = {f.name: f.metadata["check"](f.name, value) for f, value in zip(OPTIONS, args, strict=True)}
    return Options(**checked)
