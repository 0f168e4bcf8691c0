"""The options, declared once (aot_loss/_options.py), and everything derived from them: the
public signatures and docstrings list exactly the declared options with their defaults; the
Modules hold them; the distributed fingerprint covers the options that change the loss; the
TRL trainer's aot_options accepts them."""

import inspect
import zlib

import pytest
import torch
from optional import needs

import aot_loss
from aot_loss import _distributed, _options

OPTIONS = {f.name: f.default for f in _options.OPTIONS}
SIGNATURES = {
    "unpaired": aot_loss.unpaired,
    "paired": aot_loss.paired,
    "UnpairedAOTLoss": aot_loss.UnpairedAOTLoss.__init__,
    "PairedAOTLoss": aot_loss.PairedAOTLoss.__init__,
}


@pytest.mark.parametrize("name", list(SIGNATURES))
def test_every_entry_point_takes_every_option_with_its_declared_default(name):
    parameters = inspect.signature(SIGNATURES[name]).parameters
    keywords = {p.name: p.default for p in parameters.values() if p.kind is p.KEYWORD_ONLY}
    options = {k: v for k, v in keywords.items() if k != "group" and not k.endswith("weights")}
    assert options == OPTIONS, f"{name}'s options differ from aot_loss._options.Options"
    assert keywords["group"] is None


@pytest.mark.parametrize("function", [aot_loss.unpaired, aot_loss.paired])
def test_every_option_is_documented(function):
    args = inspect.getdoc(function).split("Args:")[1].split("Returns:")[0]
    for name in (*OPTIONS, "group"):
        assert f"\n    {name}: " in args or args.startswith(f"\n    {name}: "), f"{name} is not in the Args"


def test_every_option_has_a_check_and_a_doc():
    for f in _options.OPTIONS:
        assert callable(f.metadata["check"]) and f.metadata["doc"], f.name
        assert f.metadata["check"](f.name, f.default) == f.default  # the default passes its own check


@pytest.mark.parametrize("name", list(OPTIONS))
def test_each_option_is_checked_by_name(name):
    with pytest.raises((ValueError, TypeError), match=name):
        _options.check_options({name: object()})


def test_the_modules_hold_every_option_as_an_attribute():
    module = aot_loss.UnpairedAOTLoss()
    assert {name: getattr(module, name) for name in OPTIONS} == OPTIONS
    module.soft_strength = 0.5
    assert module._options.soft_strength == 0.5


def test_the_fingerprint_covers_the_options_that_change_the_loss():
    """Ranks of a group must agree on the options marked agree=True: changing any of them
    changes the fingerprint, changing a backend or a check does not."""
    changed = {
        "loss": "hinge",
        "beta": 0.5,
        "label_smoothing": 0.1,
        "reduction": "sum",
        "sort": "soft",
        "soft_strength": 0.5,
        "check_finite": True,
        "backend": "torch",
        "soft_backend": "torch",
        "order": 2,
        "quantile_range": (0.0, 0.5),
    }
    assert set(changed) == set(OPTIONS)
    base = _distributed._fingerprint(_options.check_options({}))
    for name, value in changed.items():
        other = _distributed._fingerprint(_options.check_options({name: value}))
        assert (other != base) == (name in _options.AGREED), name
    # the key is the text of the agreed values in declaration order (ranks on versions with
    # other options disagree, and raise)
    assert base == zlib.crc32(repr(("logistic", 0.01, 0.0, "mean", "hard", 0.1, 1, (0.0, 1.0))).encode())


def test_check_options_is_memoised_for_plain_scalars():
    assert _options.check_options({"beta": 0.3}) is _options.check_options({"beta": 0.3})
    assert _options.check_options({"beta": 1}) is not _options.check_options({"beta": 1.0})  # typed


def test_label_smoothing_is_refused_for_a_cost_without_it():
    with pytest.raises(ValueError, match="applies to loss='logistic' only, got loss='hinge'"):
        aot_loss.unpaired(torch.zeros(2), torch.zeros(2), loss="hinge", label_smoothing=0.1)


@needs("trl")
def test_the_trainer_accepts_the_declared_options():
    from aot_loss.llm import trl

    assert set(trl._AOT_OPTIONS) == (set(OPTIONS) - {"beta", "label_smoothing", "reduction"}) | {"group"}
