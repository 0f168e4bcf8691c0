"""AOT losses as functions: :func:`unpaired` and :func:`paired`.

Both are thin wrappers over one primitive, the dominance cost of U over V: the 1-D optimal
transport cost of coupling the quantiles of U with those of V under a convex cost h.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from torch import Tensor

from ._costs import Loss
from ._distributed import check_gatherable, errors_raised_together, resolve_group
from ._dominance import dominance_cost
from ._dtypes import as_dtype, compute_dtype
from ._options import Backend, Options, Reduction, Sort, check_options
from ._validation import (
    SoftSortBackend,
    check_finite_values,
    check_no_soft_weights,
    check_same_device,
    check_sample_pair,
    check_samples,
    check_weights,
)

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

__all__ = ["Loss", "paired", "unpaired"]


def unpaired(
    r_pos: Tensor,
    r_neg: Tensor,
    *,
    loss: Loss = "logistic",
    beta: float = 0.01,
    label_smoothing: float = 0.0,
    pos_weights: Tensor | None = None,
    neg_weights: Tensor | None = None,
    reduction: Reduction = "mean",
    check_finite: bool = False,
    backend: Backend = "auto",
    sort: Sort = "hard",
    soft_strength: float = 0.1,
    soft_backend: SoftSortBackend = "auto",
    order: int = 1,
    quantile_range: tuple[float, float] = (0.0, 1.0),
    group: Literal["world"] | ProcessGroup | None = None,
) -> Tensor:
    r"""Unpaired AOT: the rewards of chosen samples should dominate those of rejected ones.

    With U = `r_pos` (rewards $\log \pi_\theta(y^+|x^+) - \log \pi_{ref}(y^+|x^+)$ of chosen
    samples) and V = `r_neg` (the same for rejected samples), returns the relaxed violation of
    first-order stochastic dominance of U over V, a 1-D optimal-transport cost:

    $$
    \mathcal{L} = \int_0^1 h\big(Q_U(t) - Q_V(t)\big)\,dt
    \;\overset{n=m}{=}\; \frac{1}{n}\sum_{i=1}^{n} h\big(u_{(i)} - v_{(i)}\big),
    $$

    where $Q$ are the empirical quantile functions and $u_{(i)}$ the order statistics
    (stable ascending sort). For $n \ne m$ or with weights the integral is computed exactly
    on the merged grid of cumulative masses (see the math page). `beta` is not applied to the
    rewards: it lives in the cost. This is TRL's `loss_type="aot_unpaired"` (formerly
    `"aot_pair"`) generalised to other costs, unequal sizes and weights.

    Args:
        r_pos: rewards of the chosen (desirable) samples.
        r_neg: rewards of the rejected (undesirable) samples; any size $m \ge 1$.
        loss: the cost $h(d)$: `"logistic"` $(1-\epsilon)\,\mathrm{softplus}(-\beta d)
            + \epsilon\,\mathrm{softplus}(\beta d)$ (TRL's term; $\beta$ an inverse
            temperature), `"squared_hinge"` $\max(\beta - d, 0)^2$, `"least_squares"`
            $(\beta - d)^2$, `"hinge"` $\max(\beta - d, 0)$ (for these $\beta$ is a margin),
            or a callable mapping a tensor of $d$ to a tensor of costs of the same shape.
            The sorted coupling is the optimal transport plan only for a convex $h$: a
            non-convex callable still runs but no longer computes an OT cost.
        beta: inverse temperature (logistic) or margin (hinge family), finite and $> 0$.
            The default 0.01 is the paper's value for all its experiments; TRL's default is
            0.1. Ignored by a callable `loss`.
        label_smoothing: $\epsilon \in [0, 0.5)$, cDPO-style, logistic cost only.
        pos_weights: non-negative masses of the `r_pos` samples (bool, integer or float),
            normalised per row; `None` means uniform. A zero-mass sample gets zero gradient.
            Checking their values synchronises with the device once.
        neg_weights: the same for `r_neg`.
        reduction: `"mean"` (the OT cost, averaged over rows), `"sum"` or `"none"`; see
            *Reductions* below.
        check_finite: raise `ValueError` if a reward is NaN or infinite. Off by default
            because it synchronises with the device.
        backend: `"auto"` (default) uses the fused native op when its library is built and
            serves the call, else the composite torch path; `"torch"` forces the torch path;
            `"native"` forces the op and raises if it cannot serve the call. Both give the
            same values and gradients; see *Backends* below.
        sort: `"hard"` (default): the exact order statistics, TRL's `"hard_sort"`.
            `"soft"`: each sample is first soft-sorted ([`soft_sort`][aot_loss.soft_sort],
            L2, as the paper's runs with torchsort), so the gradient also flows through the
            sorting. Unequal sizes are coupled on the merged grid of the two soft-sorted
            samples; weights are refused (the soft sort is defined for equally weighted
            samples).
        soft_strength: the soft sort's strength ($> 0$, default 0.1, the paper's): sorted
            rewards more than $1/\text{soft\_strength}$ apart are pooled and spread that far
            apart. Used with `sort="soft"` only.
        soft_backend: the soft sort's backend: `"auto"`, `"torch"`, `"native"` or
            `"torchsort"`, as in [`soft_sort`][aot_loss.soft_sort].
        order: `1` (default): the cost of the quantile gaps $d(t) = Q_U(t) - Q_V(t)$,
            first-order dominance. `2`: the cost of the lower-tail mean gaps
            $g(t) = \frac{1}{t}\int_0^t d(s)\,ds$ (the mean of the lowest $t$-fraction of U
            minus that of V), second-order dominance: $\int_0^1 h(g(t))\,dt$; see
            *Second order* below.
        quantile_range: `(lo, hi)` with $0 \le lo < hi \le 1$, default `(0, 1)`: only the
            levels $t \in [lo, hi]$ count, and the integral is divided by $hi - lo$. With
            `order=1`, `(0, 0.2)` aligns the worst fifth of the quantiles and `(0.8, 1)` the
            best; with `order=2`, `(0, 0.2)` compares the tail means of the worst fifth and
            below (the Lorenz curves start at 0 whatever `lo` is).
        group: `None` (default) couples this process's samples alone and never
            communicates. `"world"` or a `torch.distributed` `ProcessGroup` couples the
            samples of every rank of the group as one batch; see *Distributed* below.

    Returns:
        The loss. Its dtype is the computation dtype: float32 for float16, bfloat16 and
        float32 inputs (half precision is upcast), float64 for float64 inputs.

    Shape:
        - `r_pos`: $(n,)$, or $(G, n)$ for $G$ independent problems (rows).
        - `r_neg`: $(m,)$, or $(G, m)$.
        - `pos_weights`, `neg_weights`: the shape of `r_pos`, `r_neg`.
        - Output: `"mean"`/`"sum"`: $()$. `"none"`: 1-D with $n = m$ and no weights,
          $(n,)$ per-pair losses $h(u_{(i)} - v_{(i)})$ in quantile order (TRL's
          `losses`); 1-D otherwise, $(n + m,)$ cell costs $K\,\Delta_k\,h(d_k)$ on the
          merged grid ($K = n + m$ cells of length $\Delta_k$), whose mean is the loss; rows,
          $(G,)$ per-row OT costs. `"sum"` is always the sum of `"none"`.

    Backends:
        The native op (`python -m aot_loss.info` says whether it is built) sorts, couples,
        applies the cost and computes the gradients in one pass, on CPU in float32 and
        float64 (half precision is upcast first). It serves the built-in costs and every
        size, weight and row shape, except: a callable `loss`, `reduction="none"` on 1-D
        inputs, weights that require gradients, calls under `torch.func` transforms (`grad`,
        `vmap`, ...) and double backward. `"auto"` sends the first four to the torch path;
        double backward through the op raises, so use `backend="torch"` for it.

    Distributed:
        With `group`, every rank gathers the samples (and weights) of every rank of the group,
        and returns what one process would return on their concatenation in rank order.
        Ranks may hold different numbers of samples, none at all included, as long as
        the group holds at least one of each. The backward multiplies this rank's gradients
        by the group size $k$ and needs no communication, so that after DDP's or FSDP's
        averaging over the $k$ ranks every parameter gradient is the single-process gradient
        of the global loss (if you sum gradients across ranks instead, divide the loss by
        $k$). Ranks must agree on the options, the dtype, the number of rows and which
        weights are given; otherwise every rank raises `ValueError`, and an input rejected
        on one rank raises on all of them rather than leaving them waiting. Each call costs
        two all-gathers and one host synchronisation. See the distributed page.

    Second order:
        On cell $k$ of the merged grid ($t_{k-1} \le t \le t_k$) the Lorenz difference
        $C(t) = \int_0^t d$ is linear, so $g(t) = e_k + c_k / t$. The hinge, squared-hinge and
        least-squares integrals are exact (logarithms, split at the crossing of the margin).
        The logistic cost is two exact hinges plus $\log(1 + e^{-\beta|g|})$, integrated by
        a fixed rule: each cell split where $g = 0$, panels graded in $\beta|g|$ from there
        (widths 0.5, 1, 2, ..., 32), each halved in $\log t$ with 8 Gauss-Legendre nodes
        (within 1e-7 of adaptive quadrature, relatively, for $|\beta g|$ up to 1e3). A callable
        is evaluated at the nodes of the same rule (graded in $|g|$, split at $g = 0$ and
        $g = \beta$). The nodes move smoothly with the inputs, so the gradient is the exact
        gradient of the value. With `reduction="none"` on 1-D inputs the output is $K$ times
        each cell's share of the integral (divided by $hi - lo$), whose mean is the loss;
        they are no longer per-pair losses. `order=2` and a `quantile_range` run on the
        torch path (`backend="auto"` sends them there; `"native"` raises).

    NaN and infinity:
        A NaN reward sorts last (as in `torch.sort`) and makes the loss NaN; infinite
        rewards give infinite or NaN costs. Pass `check_finite=True` to get an error instead.

    Example:
        >>> import torch, aot_loss
        >>> r_pos = torch.tensor([1.0, 3.0, -1.0])
        >>> r_neg = torch.tensor([0.0, -2.0, 2.0])
        >>> round(aot_loss.unpaired(r_pos, r_neg, beta=1.0).item(), 4)
        0.3133
        >>> aot_loss.unpaired(r_pos, r_neg, loss="hinge", beta=0.5, reduction="none")
        tensor([0., 0., 0.])
    """
    arguments = locals()  # the options, by name, as Options declares them
    pg = resolve_group(group)
    with errors_raised_together(pg):  # an option refused on one rank is raised on every rank
        options = check_options(arguments)
    return _unpaired(r_pos, r_neg, pos_weights, neg_weights, options, pg)


def _unpaired(
    r_pos: Tensor,
    r_neg: Tensor,
    pos_weights: Tensor | None,
    neg_weights: Tensor | None,
    options: Options,
    pg: Any,
) -> Tensor:
    """Validate the tensors of :func:`unpaired` and call the primitive; ``pg`` is the group
    that :func:`~._distributed.resolve_group` returned."""
    local = pg is None  # with a group, emptiness and total mass are checked over the group
    with errors_raised_together(pg):
        check_sample_pair("r_pos", r_pos, "r_neg", r_neg, allow_empty=not local)
        if not local:
            check_gatherable({"r_pos": r_pos, "r_neg": r_neg})
        pos_weights = check_weights("pos_weights", pos_weights, r_pos, "r_pos", require_mass=local)
        neg_weights = check_weights("neg_weights", neg_weights, r_neg, "r_neg", require_mass=local)
        check_no_soft_weights(options.sort, {"pos_weights": pos_weights, "neg_weights": neg_weights})
        if options.check_finite:
            check_finite_values(
                {"r_pos": r_pos, "r_neg": r_neg}, {"r_pos": pos_weights, "r_neg": neg_weights}
            )
    names = ("r_pos", "r_neg", "pos_weights", "neg_weights")
    return dominance_cost(r_pos, r_neg, pos_weights, neg_weights, options, pg, names)


def paired(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    *,
    loss: Loss = "logistic",
    beta: float = 0.01,
    label_smoothing: float = 0.0,
    weights: Tensor | None = None,
    reduction: Reduction = "mean",
    check_finite: bool = False,
    backend: Backend = "auto",
    sort: Sort = "hard",
    soft_strength: float = 0.1,
    soft_backend: SoftSortBackend = "auto",
    order: int = 1,
    quantile_range: tuple[float, float] = (0.0, 1.0),
    group: Literal["world"] | ProcessGroup | None = None,
) -> Tensor:
    r"""Paired AOT: the policy's chosen-vs-rejected margins should dominate the reference's.

    With $U_i = \log\pi_\theta(y^+_i|x_i) - \log\pi_\theta(y^-_i|x_i)$ and
    $V_i = \log\pi_{ref}(y^+_i|x_i) - \log\pi_{ref}(y^-_i|x_i)$ (a constant target: V carries
    no gradient), returns

    $$
    \mathcal{L} = \int_0^1 h\big(Q_U(t) - Q_V(t)\big)\,dt
    = \frac{1}{n}\sum_{i=1}^{n} h\big(u_{(i)} - v_{(i)}\big)
    $$

    with U and V each sorted on its own (stable, ascending). This is TRL's `loss_type="aot"`
    generalised to other costs and weights. With one pair it is the (c)DPO loss.

    Args:
        policy_chosen_logps: summed log-probabilities of the chosen responses under the policy.
        policy_rejected_logps: the same for the rejected responses.
        ref_chosen_logps: chosen responses under the reference model (no gradient flows).
        ref_rejected_logps: rejected responses under the reference model (no gradient flows).
        loss: the cost $h(d)$, as in [`unpaired`][aot_loss.unpaired].
        beta: inverse temperature (logistic) or margin (hinge family), finite and $> 0$;
            default 0.01 (the paper's; TRL's default is 0.1).
        label_smoothing: $\epsilon \in [0, 0.5)$, logistic cost only.
        weights: non-negative per-pair masses; pair $i$ gives mass $w_i$ to both $U_i$ and
            $V_i$, each sorted with its own sample, so the two cumulative-mass grids differ and
            the loss is computed on their merged grid. Checking their values synchronises.
        reduction: `"mean"`, `"sum"` or `"none"`, as in [`unpaired`][aot_loss.unpaired].
        check_finite: raise `ValueError` if an input is NaN or infinite (synchronises).
        backend: `"auto"`, `"torch"` or `"native"`, as in [`unpaired`][aot_loss.unpaired].
        sort: `"hard"` or `"soft"` (soft-sorts U and V before coupling them), as in
            [`unpaired`][aot_loss.unpaired]; `weights` are refused with `"soft"`.
        soft_strength: the soft sort's strength, default 0.1 (the paper's).
        soft_backend: the soft sort's backend, as in [`soft_sort`][aot_loss.soft_sort].
        order: `1` (quantile gaps, default) or `2` (lower-tail mean gaps), as in
            [`unpaired`][aot_loss.unpaired].
        quantile_range: the levels `(lo, hi)` that count, default `(0, 1)`, as in
            [`unpaired`][aot_loss.unpaired].
        group: `None` (local), `"world"` or a `ProcessGroup`: couple the pairs of every rank
            of the group as one batch, as in [`unpaired`][aot_loss.unpaired].

    Returns:
        The loss, in float32 for float16/bfloat16/float32 inputs and float64 for float64.

    Shape:
        - All four log-probability tensors: $(n,)$, or $(G, n)$ for $G$ rows; all the same.
        - `weights`: the same shape.
        - Output: `"mean"`/`"sum"`: $()$. `"none"`: $(n,)$ per-pair losses in quantile order
          without weights (TRL's `losses`), $(2n,)$ merged-grid cell costs with weights, $(G,)$
          per-row costs for rows.

    Distributed:
        As in [`unpaired`][aot_loss.unpaired]: with `group`, the loss of the concatenated
        pairs of every rank, returned on every rank, with gradients scaled by the group size
        for DDP's averaging.

    NaN and infinity:
        As in [`unpaired`][aot_loss.unpaired]: NaN inputs give a NaN loss unless
        `check_finite=True`.

    Example:
        >>> import torch, aot_loss
        >>> pc = torch.tensor([-10.0, -12.0, -9.0], requires_grad=True)
        >>> pr = torch.tensor([-11.0, -11.0, -13.0], requires_grad=True)
        >>> rc, rr = torch.tensor([-10.0, -12.0, -10.0]), torch.tensor([-10.0, -12.0, -11.0])
        >>> loss = aot_loss.paired(pc, pr, rc, rr, beta=0.1)
        >>> loss.backward()
        >>> round(loss.item(), 4)
        0.6477
    """
    arguments = locals()  # the options, by name, as Options declares them
    pg = resolve_group(group)
    with errors_raised_together(pg):  # an option refused on one rank is raised on every rank
        options = check_options(arguments)
    logps = (policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)
    return _paired(*logps, weights, options, pg)


def _paired(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    weights: Tensor | None,
    options: Options,
    pg: Any,
) -> Tensor:
    """Validate the tensors of :func:`paired`, form the margins and call the primitive; ``pg``
    is the group that :func:`~._distributed.resolve_group` returned."""
    inputs = {
        "policy_chosen_logps": policy_chosen_logps,
        "policy_rejected_logps": policy_rejected_logps,
        "ref_chosen_logps": ref_chosen_logps,
        "ref_rejected_logps": ref_rejected_logps,
    }
    local = pg is None  # with a group, emptiness and total mass are checked over the group
    with errors_raised_together(pg):
        for name, x in inputs.items():
            check_samples(name, x, allow_empty=not local)
        shape = policy_chosen_logps.shape
        if any(x.shape != shape for x in inputs.values()):
            shapes = {name: tuple(x.shape) for name, x in inputs.items()}
            raise ValueError(f"paired inputs must all have the same shape, got {shapes}")
        check_same_device(inputs)
        if not local:
            check_gatherable(inputs)
        weights = check_weights("weights", weights, policy_chosen_logps, "policy_chosen_logps", local)
        check_no_soft_weights(options.sort, {"weights": weights})
        if options.check_finite:
            check_finite_values(inputs, dict.fromkeys(inputs, weights))
    dtype = compute_dtype(*inputs.values())  # subtract after the upcast, not in half precision
    u = as_dtype(policy_chosen_logps, dtype) - as_dtype(policy_rejected_logps, dtype)
    v = as_dtype(ref_chosen_logps, dtype) - as_dtype(ref_rejected_logps, dtype)
    if v.requires_grad:  # the reference is a constant target (detach costs ~1 us when not needed)
        v = v.detach()
    names = ("policy_chosen_logps", "ref_chosen_logps", "weights", "weights")
    return dominance_cost(u, v, weights, weights, options, pg, names)
