"""AOT losses as ``nn.Module``s. Options are validated in ``__init__`` and whenever one is set
again; ``forward`` runs the same code as :mod:`aot_loss.functional`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from torch import Tensor, nn

from ._costs import Loss
from ._distributed import check_group, resolve_group
from ._options import DEFAULTS, NAMES, Backend, Reduction, Sort, check_options
from ._validation import SoftSortBackend
from .functional import _paired, _unpaired

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

__all__ = ["PairedAOTLoss", "UnpairedAOTLoss"]

_ALWAYS_SHOWN = ("loss", "beta", "reduction")  # in the repr; the other options when not at their default


class _AOTLoss(nn.Module):
    def __init__(
        self,
        *,
        loss: Loss = "logistic",
        beta: float = 0.01,
        label_smoothing: float = 0.0,
        reduction: Reduction = "mean",
        check_finite: bool = False,
        backend: Backend = "auto",
        sort: Sort = "hard",
        soft_strength: float = 0.1,
        soft_backend: SoftSortBackend = "auto",
        order: int = 1,
        quantile_range: tuple[float, float] = (0.0, 1.0),
        group: Literal["world"] | ProcessGroup | None = None,
    ) -> None:
        arguments = locals()  # the options, by name, as Options declares them
        super().__init__()
        self.group = group
        options = check_options(arguments)
        for name in NAMES:  # each option is an attribute, as given
            setattr(self, name, arguments[name])
        self._options = options

    def __setattr__(self, name: str, value: Any) -> None:
        # An option set after construction (a beta schedule: `criterion.beta = 0.05`) is
        # validated now and takes effect at the next call; a bad value changes nothing.
        if name in NAMES and "_options" in self.__dict__:
            values = {option: getattr(self, option) for option in NAMES} | {name: value}
            options: Any = check_options(values)  # Any: Module.__setattr__ is typed for tensors
            super().__setattr__(name, value)
            super().__setattr__("_options", options)
            return
        if name == "group":
            check_group(value)  # resolved at each call: the process group may be initialised later
        super().__setattr__(name, value)

    def extra_repr(self) -> str:
        shown = [n for n in NAMES if n in _ALWAYS_SHOWN or getattr(self, n) != DEFAULTS[n]]
        loss = self.loss if isinstance(self.loss, str) else getattr(self.loss, "__name__", "callable")
        values = {name: getattr(self, name) for name in shown} | {"loss": loss}
        text = ", ".join(f"{name}={values[name]!r}" for name in shown)
        return text + (f", group={self.group!r}" if self.group is not None else "")


class UnpairedAOTLoss(_AOTLoss):
    r"""Module form of [`aot_loss.unpaired`][aot_loss.unpaired]: chosen rewards should
    dominate rejected rewards, quantile by quantile.

    $$
    \mathcal{L} = \int_0^1 h\big(Q_{r^+}(t) - Q_{r^-}(t)\big)\,dt
    $$

    The options (`loss`, `beta`, `label_smoothing`, `reduction`, `check_finite`, `backend`,
    `sort`, `soft_strength`, `soft_backend`, `order`, `quantile_range`, `group`) are given to
    the constructor and mean
    what they mean for the function; the per-batch masses `pos_weights`/`neg_weights` are
    given to `forward`. Results are identical to the function's. Each option is an attribute:
    setting one (`criterion.beta = 0.05`, for a schedule) validates it at once and takes
    effect at the next call.

    Shape:
        - `r_pos`: $(n,)$ or $(G, n)$; `r_neg`: $(m,)$ or $(G, m)$.
        - Output: as for [`aot_loss.unpaired`][aot_loss.unpaired].

    Example:
        >>> import torch, aot_loss
        >>> criterion = aot_loss.UnpairedAOTLoss(loss="squared_hinge", beta=0.5)
        >>> criterion(torch.tensor([2.0, 0.0]), torch.tensor([1.0, -1.0, 0.0]))
        tensor(0.0417)
    """

    def forward(
        self,
        r_pos: Tensor,
        r_neg: Tensor,
        *,
        pos_weights: Tensor | None = None,
        neg_weights: Tensor | None = None,
    ) -> Tensor:
        """The loss of chosen rewards `r_pos` against rejected rewards `r_neg`."""
        return _unpaired(r_pos, r_neg, pos_weights, neg_weights, self._options, resolve_group(self.group))


class PairedAOTLoss(_AOTLoss):
    r"""Module form of [`aot_loss.paired`][aot_loss.paired]: the policy's chosen-vs-rejected
    margins should dominate the reference model's, quantile by quantile.

    $$
    \mathcal{L} = \int_0^1 h\big(Q_U(t) - Q_V(t)\big)\,dt,\quad
    U = \log\pi_\theta(y^+|x) - \log\pi_\theta(y^-|x),\;
    V = \log\pi_{ref}(y^+|x) - \log\pi_{ref}(y^-|x)
    $$

    Options (`group` included) go to the constructor, the per-pair `weights` to `forward`.
    As for [`UnpairedAOTLoss`][aot_loss.UnpairedAOTLoss], setting an option attribute
    validates it and takes effect at the next call.

    Shape:
        - The four log-probability tensors: $(n,)$ or $(G, n)$, all the same.
        - Output: as for [`aot_loss.paired`][aot_loss.paired].

    Example:
        >>> import torch, aot_loss
        >>> criterion = aot_loss.PairedAOTLoss(beta=1.0)
        >>> pc, pr = torch.tensor([-1.0, -2.0]), torch.tensor([-3.0, -2.0])
        >>> rc, rr = torch.tensor([-2.0, -2.0]), torch.tensor([-2.0, -2.0])
        >>> round(criterion(pc, pr, rc, rr).item(), 4)
        0.41
    """

    def forward(
        self,
        policy_chosen_logps: Tensor,
        policy_rejected_logps: Tensor,
        ref_chosen_logps: Tensor,
        ref_rejected_logps: Tensor,
        *,
        weights: Tensor | None = None,
    ) -> Tensor:
        """The loss of the policy's margins against the reference's."""
        return _paired(
            policy_chosen_logps,
            policy_rejected_logps,
            ref_chosen_logps,
            ref_rejected_logps,
            weights,
            self._options,
            resolve_group(self.group),
        )
