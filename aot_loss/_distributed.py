"""Global coupling across the ranks of a process group: the ``group=`` option of the losses.

Every rank gathers every rank's samples and weights, couples the concatenated batch (in group
rank order) exactly as one process would, and returns that same loss. The backward sends this
rank's inputs ``k x`` their gradient (``k`` the group size), so that after DDP's or FSDP's
averaging over the ``k`` ranks every parameter gradient is the single-process gradient. The
backward needs no communication: every rank already holds the whole batch.

One call costs two all-gathers (a fixed-size header, then the padded samples) and one host
read of the header, whose sizes are needed to unpad. The header also carries what every rank
must agree on (dtype, rows, options, which weights are given) and whether a rank's own input
checks failed, so that an error on one rank is raised on all of them instead of leaving the
others waiting in the gather.
"""

from __future__ import annotations

import functools
import re
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, ParamSpec, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

from ._options import AGREED, Options
from ._validation import raise_on, zero_mass_check

GROUP_CHOICES = "None, 'world' or a torch.distributed.ProcessGroup"

# One int64 per field; a rank that failed its own checks sends status 1 and zeros.
_FIELDS = ("status", "function", "rows", "n_u", "n_v", "u_weights", "v_weights", "dtype", "device", "options")
# The loss functions, told apart by the name of their first argument (``names[0]``).
_FUNCTIONS = {"r_pos": "unpaired", "policy_chosen_logps": "paired"}
_COLUMN = {field: i for i, field in enumerate(_FIELDS)}
_OK, _FAILED = 0, 1
_DTYPES = (torch.float32, torch.float64)  # the computation dtypes (half is upcast first)
_NO_WEIGHTS, _WEIGHTS, _SHARED_WEIGHTS = 0, 1, 2  # 2: v uses u's weights (paired)


def check_group(group: object) -> None:
    """The type of a ``group`` argument, checked when a Module is built (no process group needed)."""
    if group is None or (isinstance(group, str) and group == "world") or _is_process_group(group):
        return
    if dist.is_available() and type(group) is int and group == dist.GroupMember.NON_GROUP_MEMBER:
        raise ValueError(
            "this process is not a member of the group: torch.distributed.new_group returned "
            "GroupMember.NON_GROUP_MEMBER on this rank; pass group=None (or its own group) here"
        )
    raise (ValueError if isinstance(group, str) else TypeError)(
        f"group must be {GROUP_CHOICES}, got {group!r}"
    )


def resolve_group(group: object) -> Any:
    """The ProcessGroup to couple over, or ``None`` for local coupling.

    ``None`` returns at once and never touches ``torch.distributed``. A group of one rank is
    also local: gathering would change nothing.
    """
    if group is None:
        return None
    check_group(group)
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(
            f"group={group!r} needs an initialised default process group: call "
            "torch.distributed.init_process_group() first (torchrun, accelerate and Lightning do), "
            "or pass group=None for local coupling"
        )
    resolved: Any = dist.group.WORLD if isinstance(group, str) else group
    if dist.get_rank(resolved) < 0:
        raise ValueError(f"this process (global rank {dist.get_rank()}) is not a member of group {group!r}")
    return resolved if dist.get_world_size(resolved) > 1 else None


def _is_process_group(group: object) -> bool:
    return dist.is_available() and isinstance(group, dist.ProcessGroup)


_LOCAL = nullcontext()  # reusable: local calls skip building a generator-based context (~3 us in a step)


def errors_raised_together(group: Any) -> AbstractContextManager[None]:
    """Run a rank's own input checks; if they raise, tell the other ranks before re-raising.

    The others are waiting in :func:`gather`'s header exchange, which this joins with a failure
    header; they then raise too instead of hanging until the collective's timeout.
    """
    return _LOCAL if group is None else _raised_together(group)


@contextmanager
def _raised_together(group: Any) -> Iterator[None]:
    try:
        yield
    except (TypeError, ValueError):
        _exchange_headers(group, [_FAILED] + [0] * (len(_FIELDS) - 1))
        raise


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _disabled_at_first_call(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """``torch.compiler.disable(fn)``, made at the first call rather than at import: making
    it imports ``torch._dynamo`` (about a second), which a process that never gathers should
    not pay. Under torch.compile the call is a graph break either way."""
    disabled: Callable[_P, _R] | None = None

    @functools.wraps(fn)
    def call(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        nonlocal disabled
        if disabled is None:
            disabled = torch.compiler.disable(fn)
        return disabled(*args, **kwargs)

    return call


@_disabled_at_first_call  # collectives and a host read: torch.compile runs this eagerly
def gather(
    group: Any,
    u: Tensor,
    v: Tensor,
    u_weights: Tensor | None,
    v_weights: Tensor | None,
    options: Options,
    names: Sequence[str],
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """Every rank's ``u``, ``v`` and weights, concatenated along the last dim in rank order.

    Inputs are in their computation dtype, 1-D ``(n_r,)`` or rows ``(G, n_r)`` with ``n_r``
    possibly 0 on some ranks. ``names`` are the user-facing names of u, v and their weights,
    for error messages. This rank's pieces keep their autograd history, with gradients
    scaled by the group size (see the module docstring); the others are constants.
    """
    shared = v_weights is u_weights and u_weights is not None
    layout = (u_weights is not None, _SHARED_WEIGHTS if shared else int(v_weights is not None))
    header = [
        _OK,
        list(_FUNCTIONS).index(names[0]) if names[0] in _FUNCTIONS else len(_FUNCTIONS),
        u.shape[0] if u.dim() == 2 else -1,
        u.shape[-1],
        v.shape[-1],
        int(layout[0]),
        layout[1],
        _DTYPES.index(u.dtype),
        int(u.device.type != "cpu"),
        _fingerprint(options),
    ]
    table = _exchange_headers(group, header)
    _check_agreement(table, names)
    rank, size = dist.get_rank(group), len(table)
    for field, name in (("n_u", names[0]), ("n_v", names[1])):
        if sum(row[_COLUMN[field]] for row in table) == 0:
            raise ValueError(f"{name} must not be empty: it has no samples on any rank of the group")

    rows = u.dim() == 2
    local = [x for x in (u, v, u_weights, None if shared else v_weights) if x is not None]
    local = [x if rows else x.unsqueeze(0) for x in local]
    pieces = _gather_padded(group, local, [_piece_sizes(row) for row in table])
    merged = []
    for j, mine in enumerate(local):
        parts = [pieces[r][j] for r in range(size)]
        parts[rank] = _ScaleGrad.apply(mine, float(size)) if mine.requires_grad else mine
        whole = torch.cat(parts, dim=-1)
        merged.append(whole if rows else whole[0])
    gu, gv, *gw = merged
    gu_weights = gw[0] if layout[0] else None
    gv_weights = gu_weights if shared else (gw[-1] if layout[1] else None)
    weights = {names[2]: gu_weights, names[3]: gv_weights}
    raise_on(zero_mass_check(name, w, " over the group") for name, w in weights.items() if w is not None)
    return gu, gv, gu_weights, gv_weights


def _piece_sizes(row: Sequence[int]) -> list[int]:
    """The lengths of a rank's pieces (u, v, then the weights it sends), from its header row."""
    n_u, n_v = row[_COLUMN["n_u"]], row[_COLUMN["n_v"]]
    u_flag, v_flag = row[_COLUMN["u_weights"]], row[_COLUMN["v_weights"]]
    return [n_u, n_v] + [n_u] * (u_flag == _WEIGHTS) + [n_v] * (v_flag == _WEIGHTS)


def _fingerprint(options: Options) -> int:
    """A stable 32-bit hash of the options that change the loss (not backends or checks)."""
    cost = options.name or _callable_key(options.cost)
    key = tuple(cost if name == "loss" else getattr(options, name) for name in AGREED)
    return zlib.crc32(repr(key).encode())


def _callable_key(fn: object) -> str:
    """What a cost callable computes, as text that is equal on every rank for the same code:
    its name, bytecode and constants, and (without memory addresses) its defaults, closure
    and, for a ``functools.partial``, its function and arguments. Two lambdas share a name,
    so the name alone cannot tell them apart."""
    if isinstance(fn, functools.partial):
        return f"partial({_callable_key(fn.func)}, {_no_addresses(fn.args)}, {_no_addresses(fn.keywords)})"
    code = getattr(fn, "__code__", None)
    if code is None:  # a callable object: its class and state
        return f"{type(fn).__qualname__}({_no_addresses(getattr(fn, '__dict__', None))})"
    closure = [cell.cell_contents for cell in getattr(fn, "__closure__", None) or ()]
    parts = (fn.__qualname__, code.co_code.hex(), code.co_consts, fn.__defaults__, closure)  # type: ignore[attr-defined]
    return _no_addresses(parts)


def _no_addresses(value: object) -> str:
    """``repr(value)`` without the memory addresses that differ from process to process."""
    return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(value))


def check_gatherable(tensors: Mapping[str, Tensor]) -> None:
    """Inputs coupled over a group must hold data: a meta tensor has nothing to gather."""
    for name, t in tensors.items():
        if t.device.type == "meta":
            raise ValueError(
                f"{name} is a meta tensor, which has no data to gather; group= needs real tensors"
            )


def _check_agreement(table: list[list[int]], names: Sequence[str]) -> None:
    """Raise, identically on every rank, if ranks failed or disagree on what must match."""
    failed = [r for r, row in enumerate(table) if row[_COLUMN["status"]] == _FAILED]
    if failed:
        raise RuntimeError(
            f"rank(s) {failed} of the group rejected their inputs to the loss (the error is raised "
            "there); the global batch cannot be coupled"
        )
    u_name, v_name = names[0], names[1]
    checks: dict[str, tuple[str, Callable[[int], str]]] = {
        "function": ("the loss function", lambda c: [*_FUNCTIONS.values(), "another"][c]),
        "rows": ("the shape", lambda c: f"{c} rows" if c >= 0 else "1-D"),
        "dtype": (f"the computation dtype of {u_name} and {v_name}", lambda c: str(_DTYPES[c])),
        "device": ("the device type", lambda c: "accelerator" if c else "CPU"),
        "u_weights": (f"whether {names[2]} are given", _given),
        "v_weights": (f"whether {names[3]} are given", _given),
        "options": (f"the loss options ({', '.join(AGREED)})", hex),
    }
    for field, (what, show) in checks.items():
        column = [row[_COLUMN[field]] for row in table]
        if len(set(column)) > 1:
            listing = ", ".join(f"rank {r}: {show(c)}" for r, c in enumerate(column))
            raise ValueError(
                f"ranks of the group disagree on {what} ({listing}); call the loss alike on every rank"
            )


def _given(flag: int) -> str:
    return ("None", "given", "shared with the other sample")[flag]


def _exchange_headers(group: Any, header: list[int]) -> list[list[int]]:
    """All-gather every rank's header (one small collective and one host read)."""
    device = _header_device(group)
    mine = torch.tensor(header, dtype=torch.int64, device=device)
    out = [torch.empty_like(mine) for _ in range(dist.get_world_size(group))]
    dist.all_gather(out, mine, group=group)
    return torch.stack(out).tolist()


def _gather_padded(group: Any, local: list[Tensor], sizes: list[list[int]]) -> list[list[Tensor]]:
    """All-gather a list of (G, n_j) tensors whose n_j differ by rank, as one padded buffer.

    ``sizes[r]`` are rank r's lengths n_j; returns ``pieces[r][j]`` of shape (G, sizes[r][j]),
    detached (the caller reattaches this rank's own pieces).
    """
    width = max(sum(s) for s in sizes)
    data_device = local[0].device
    device = _payload_device(group, data_device)
    buffer = torch.cat([x.detach() for x in local], dim=-1).to(device)
    buffer = torch.nn.functional.pad(buffer, (0, width - buffer.shape[-1]))
    out = [torch.empty_like(buffer) for _ in sizes]
    dist.all_gather(out, buffer, group=group)
    return [
        list(torch.split(b.to(data_device), [*s, width - sum(s)], dim=-1))[:-1]
        for b, s in zip(out, sizes, strict=True)
    ]


def _backend(group: Any) -> str:
    return str(dist.get_backend(group))


def _accelerator(group: Any) -> torch.device:
    accelerator = torch.accelerator.current_accelerator(check_available=True)
    if accelerator is None:
        raise RuntimeError(
            f"the process group's backend {_backend(group)!r} needs an accelerator; none is here"
        )
    return torch.device(accelerator.type, torch.accelerator.current_device_index())


def _header_device(group: Any) -> torch.device:
    """Where headers travel: CPU whenever the group has gloo (also 'cpu:gloo,cuda:nccl').

    Chosen without looking at the inputs, so that a rank whose inputs were rejected picks
    the same device as the others.
    """
    return torch.device("cpu") if "gloo" in _backend(group) else _accelerator(group)


def _payload_device(group: Any, data: torch.device) -> torch.device:
    """Where samples travel: on their own device if the group's backend serves it."""
    backend = _backend(group)
    if backend == "gloo":
        return torch.device("cpu")
    if data.type == "cpu" and "gloo" not in backend:
        return _accelerator(group)  # e.g. NCCL with CPU rewards
    return data


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; the backward multiplies the gradient by ``scale`` (twice differentiable)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad * ctx.scale, None
