"""aot-loss: distributional preference alignment (AOT) losses for PyTorch.

AOT (Melnyk et al., NeurIPS 2024, arXiv:2406.05882) makes the distribution of rewards of
chosen responses dominate that of rejected ones quantile by quantile, through the exact 1-D
optimal-transport cost of their quantile coupling.
"""

from . import metrics
from ._info import info
from ._version import __version__
from .functional import paired, unpaired
from .modules import PairedAOTLoss, UnpairedAOTLoss
from .sorting import soft_sort

__all__ = [
    "PairedAOTLoss",
    "UnpairedAOTLoss",
    "__version__",
    "info",
    "metrics",
    "paired",
    "soft_sort",
    "unpaired",
]
