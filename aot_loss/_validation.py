"""Argument checks with messages that name the argument and the offending value.

Checks of shapes, dtypes and devices read metadata only, so the default path never
waits for the device. Checks of values (weights, ``check_finite``) need one host round trip;
while ``torch.compile`` traces they become ``torch._assert_async`` with the same message
(a RuntimeError at run time) so that the graph has no break.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Literal, NamedTuple, cast

import torch
from torch import Tensor

from ._dtypes import FLOAT_DTYPES

SoftSortBackend = Literal["auto", "torch", "native", "torchsort"]
SOFT_SORT_BACKENDS = ("auto", "torch", "native", "torchsort")


def check_count(name: str, value: object) -> None:
    """A size option: a positive int (not a bool), or None for "no limit" / "all at once"."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{name} must be a positive int or None, got {value!r}")


def check_strength(name: str, strength: object) -> float:
    """A soft-sort strength: a finite real number > 0."""
    value = real(name, strength)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {strength!r}")
    return value


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    """One of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_soft_sort_backend(name: str, backend: object) -> SoftSortBackend:
    """One of ``SOFT_SORT_BACKENDS``."""
    return cast(SoftSortBackend, check_choice(name, backend, SOFT_SORT_BACKENDS))


def check_no_soft_weights(sort: str, weights: Mapping[str, Tensor | None]) -> None:
    """Soft sorting is defined for equally weighted samples only."""
    if sort != "soft":
        return
    for name, w in weights.items():
        if w is not None:
            raise ValueError(
                f"{name} cannot be used with sort='soft': the soft sort (a projection onto the "
                "permutahedron) is defined for equally weighted samples; use sort='hard' with weights"
            )


def real(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    try:
        return float(value)
    except OverflowError:  # an int beyond float's range
        raise ValueError(
            f"{name} must be a finite number, got {value!r:.40} (too large for a float)"
        ) from None


def check_samples(name: str, x: object, allow_empty: bool = False) -> Tensor:
    """A floating tensor of shape (n,) or rows (G, n), not empty.

    ``allow_empty``: n = 0 is allowed (one rank's share of a batch coupled over a group,
    whose emptiness is checked over the whole group); G = 0 never is.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    check_dense(name, x)
    if x.dtype not in FLOAT_DTYPES:
        kind = (
            "a floating-point tensor"
            if not x.is_floating_point()
            else "float16, bfloat16, float32 or float64"
        )
        raise TypeError(f"{name} must be {kind}, got dtype {x.dtype}")
    if x.dim() not in (1, 2):
        raise ValueError(f"{name} must be 1-D (n,) or 2-D rows (G, n), got shape {tuple(x.shape)}")
    no_rows = x.dim() == 2 and x.shape[0] == 0
    if x.numel() == 0 and (no_rows or not allow_empty):
        raise ValueError(f"{name} must not be empty, got shape {tuple(x.shape)}")
    return x


def check_dense(name: str, x: Tensor) -> None:
    """A dense (strided, not nested) tensor: sparse and nested layouts have no sort."""
    if x.is_nested:
        raise TypeError(f"{name} must be a dense tensor, got a nested tensor; pass its rows one by one")
    if x.layout != torch.strided:
        raise TypeError(f"{name} must be a dense tensor, got layout {x.layout}; convert it with .to_dense()")


def check_sample_pair(
    u_name: str, u_arg: object, v_name: str, v_arg: object, allow_empty: bool = False
) -> tuple[Tensor, Tensor]:
    """Two samples to couple: each (n,) or (G, n), both 1-D or both rows with equal G, on
    one device."""
    u = check_samples(u_name, u_arg, allow_empty)
    v = check_samples(v_name, v_arg, allow_empty)
    if u.dim() != v.dim():
        raise ValueError(
            f"{u_name} and {v_name} must both be 1-D or both be 2-D rows, got shapes "
            f"{tuple(u.shape)} and {tuple(v.shape)}"
        )
    if u.dim() == 2 and u.shape[0] != v.shape[0]:
        raise ValueError(
            f"{u_name} and {v_name} must have the same number of rows, got {u.shape[0]} and {v.shape[0]}"
        )
    check_same_device({u_name: u, v_name: v})
    return u, v


def check_same_device(tensors: Mapping[str, Tensor]) -> None:
    """All given tensors live on one device."""
    (first_name, first), *rest = tensors.items()
    for name, t in rest:
        if t.device != first.device:
            raise ValueError(
                f"{name} is on {t.device} but {first_name} is on {first.device}; move them to the same device"
            )


def check_weights(
    name: str, weights: object, like: Tensor, like_name: str, require_mass: bool = True
) -> Tensor | None:
    """Non-negative, finite masses of ``like``'s shape with positive total in every row.

    Bool and integer masses are allowed; they are returned as floating tensors.
    ``require_mass=False`` skips the total-mass check (a group's share, checked once gathered).
    """
    if weights is None:
        return None
    if not isinstance(weights, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or None, got {type(weights).__name__}")
    check_dense(name, weights)
    if weights.is_complex() or (weights.is_floating_point() and weights.dtype not in FLOAT_DTYPES):
        raise TypeError(
            f"{name} must be bool, integer, float16, bfloat16, float32 or float64, got dtype {weights.dtype}"
        )
    if weights.shape != like.shape:
        raise ValueError(
            f"{name} must have the shape of {like_name} {tuple(like.shape)}, got {tuple(weights.shape)}"
        )
    check_same_device({like_name: like, name: weights})
    if not weights.is_floating_point():
        weights = weights.to(torch.promote_types(like.dtype, torch.float32))
    checks = [
        Check(
            f"{name} must not contain NaN or infinite values",
            ~torch.isfinite(weights).all(),
            partial(_first_offender, weights, _non_finite),
        ),
        Check(
            f"{name} must not contain negative values",
            (weights < 0).any(),
            partial(_first_offender, weights, _negative),
        ),
    ]
    if require_mass:
        checks.append(zero_mass_check(name, weights))
    raise_on(checks)
    return weights


def check_finite_values(tensors: Mapping[str, Tensor], weights: Mapping[str, Tensor | None]) -> None:
    """Raise if any tensor holds NaN or +-inf where its weight (``weights[name]``, None for
    none) is positive: a sample of weight 0 has no effect, whatever it holds. One host round
    trip for all of them."""

    def bad(name: str) -> Callable[[Tensor], Tensor]:
        w = weights.get(name)
        return _non_finite if w is None else (lambda x: _non_finite(x) & (w > 0))

    raise_on(
        Check(
            f"{name} contains NaN or infinite values (check_finite=True)",
            bad(name)(t).any(),
            partial(_first_offender, t, bad(name)),
        )
        for name, t in tensors.items()
    )


def _non_finite(x: Tensor) -> Tensor:
    return ~torch.isfinite(x)


def _negative(x: Tensor) -> Tensor:
    return x < 0


def _first_offender(t: Tensor, bad: Callable[[Tensor], Tensor]) -> str:
    """``"got <value> at index <i>"`` for the first element of ``t`` where ``bad`` holds."""
    index = bad(t.detach()).nonzero()[0].tolist()
    where = index[0] if len(index) == 1 else tuple(index)
    return f"got {t[tuple(index)].item()} at index {where}"


def zero_mass_check(name: str, weights: Tensor, scope: str = "") -> Check:
    """Fails when a row of ``weights`` has zero total mass; its description names the rows."""
    return Check(
        f"{name} must not contain a row with zero total mass{scope}",
        (weights.sum(-1) == 0).any(),
        partial(_zero_mass_rows, weights),
    )


def _zero_mass_rows(weights: Tensor) -> str:
    """Which rows of ``weights`` have zero total mass."""
    if weights.dim() == 1:
        return "got all zero weights"
    rows = (weights.detach().sum(-1) == 0).nonzero().flatten().tolist()
    return f"got zero mass in row(s) {rows[:8]}" + (f" and {len(rows) - 8} more" if len(rows) > 8 else "")


class Check(NamedTuple):
    """A check of values: the message, a boolean tensor set when it fails, and a function
    that describes the offending values. ``describe`` reads the device, so it runs only when
    the check fails: a passing call costs one synchronisation for all its checks."""

    message: str
    failed: Tensor
    describe: Callable[[], str] | None = None


def raise_on(checks: Iterable[Check]) -> None:
    """Raise ValueError with the message of the first failed check, and its description."""
    checks = list(checks)
    if not checks or checks[0].failed.device.type == "meta":  # shapes only: no values to check
        return
    if torch.compiler.is_compiling():
        for check in checks:
            torch._assert_async(~check.failed, check.message)
        return
    failed = torch.stack([check.failed for check in checks]).tolist()  # one synchronisation for all
    for check, bad in zip(checks, failed, strict=True):
        if bad:
            raise ValueError(f"{check.message}, {check.describe()}" if check.describe else check.message)
