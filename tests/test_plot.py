"""aot_loss.plot: Figure 1 views render to PNG without a display, shading where dominance fails."""

import numpy as np
import pytest
import torch
from optional import import_or_skip
from tolerances import approx, tol

import_or_skip("matplotlib")

from matplotlib.figure import Figure  # noqa: E402

from aot_loss.metrics import fsd_violation  # noqa: E402
from aot_loss.plot import margin_quantiles, reward_quantiles  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def shaded_area(ax):
    """Total area of the (dominance, violation) polygons that fill_between drew."""
    areas = []
    for collection in ax.collections:
        total = 0.0
        for path in collection.get_paths():
            x, y = path.vertices[:, 0], path.vertices[:, 1]
            total += 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))
        areas.append(total)
    return tuple(areas)


def test_one_panel_per_model_with_the_violation_in_the_title(tmp_path):
    g = torch.Generator().manual_seed(0)
    models = {
        "dominant": (torch.randn(300, generator=g) + 2.0, torch.randn(200, generator=g)),
        "mixed": (torch.randn(300, generator=g) * 3, torch.randn(250, generator=g)),
    }
    path = tmp_path / "rewards.png"
    fig = reward_quantiles(models, title="held-out", path=path)
    assert isinstance(fig, Figure)
    assert [ax.get_title() for ax in fig.axes] == [
        f"{name}: FSD violation {fsd_violation(u, v).item():.2f}" for name, (u, v) in models.items()
    ]
    assert fig.get_suptitle() == "held-out"
    assert path.read_bytes().startswith(PNG_MAGIC)
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["chosen", "rejected"]


def test_violation_is_shaded_only_where_it_happens():
    v = torch.linspace(-1, 1, 101)
    above, below = shaded_area(margin_quantiles((v + 0.5, v)).axes[0])
    assert (
        above == pytest.approx(0.5 * 100, **approx("percentiles")) and below == 0.0
    )  # 0.5 over 100 percentiles
    above, below = shaded_area(margin_quantiles((v - 0.25, v)).axes[0])
    assert above == 0.0 and below == pytest.approx(0.25 * 100, **approx("percentiles"))


def test_single_pair_arrays_and_lists():
    fig = margin_quantiles((np.array([1.0, 2.0, 3.0]), [0.0, 0.5]), path=None)
    assert len(fig.axes) == 1 and fig.axes[0].get_title() == "FSD violation 0.00"
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["policy", "reference"]


@pytest.mark.parametrize(
    ("pairs", "exception", "pattern"),
    [
        ({}, ValueError, "nothing to plot: the mapping of models is empty"),
        ({"a": torch.randn(3)}, TypeError, "expected a pair \\(u, v\\) of tensors for 'a', got Tensor"),
        ((torch.randn(3),), TypeError, "expected a pair \\(u, v\\) of tensors, got a tuple of 1"),
        ((torch.randn(3), "abc"), TypeError, "expected a tensor or an array of samples, got str"),
        (
            (torch.randn(3), torch.randn(2, 2)),
            ValueError,
            "expected 1-D samples, got shapes \\(3,\\) and \\(2, 2\\)",
        ),
        ({"m": (torch.randn(3), torch.ones(0))}, ValueError, "v must not be empty"),
    ],
)
def test_bad_input_is_named(pairs, exception, pattern):
    with pytest.raises(exception, match=pattern):
        reward_quantiles(pairs)


def test_tail_means_show_second_order_dominance_and_its_violation(tmp_path):
    """A mean-preserving contraction of the rejected rewards dominates them at second order
    (nothing shaded red, title 0.00) though its quantiles cross theirs; the reverse pair is
    shaded red over the whole range. The curves are L(t)/t, ending at the means."""
    from aot_loss.metrics import lorenz_curves, ssd_violation
    from aot_loss.plot import reward_tail_means

    rejected = torch.linspace(-2.0, 2.0, 101, dtype=torch.float64)
    chosen = rejected / 2
    path = tmp_path / "tails.png"
    fig = reward_tail_means(
        {"contracted": (chosen, rejected), "spread": (rejected, chosen)}, grid=201, path=path
    )
    assert path.read_bytes().startswith(PNG_MAGIC)
    assert [ax.get_title() for ax in fig.axes] == [
        f"contracted: SSD violation {ssd_violation(chosen, rejected).item():.2f}",
        f"spread: SSD violation {ssd_violation(rejected, chosen).item():.2f}",
    ]
    (_, red), (green_reverse, red_reverse) = shaded_area(fig.axes[0]), shaded_area(fig.axes[1])
    assert red == 0.0 and green_reverse == 0.0 and red_reverse > 0.0
    x, y = fig.axes[0].get_lines()[0].get_data()
    curves = lorenz_curves(chosen, rejected, 201)
    np.testing.assert_allclose(y[1:], (curves.u / curves.t)[1:].numpy(), **tol("float64"))
    assert y[0] == chosen.min().item() and x[-1] == 100.0
