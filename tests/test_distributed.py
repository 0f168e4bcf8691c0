"""Global coupling across ranks (``group=``): 2 and 3 gloo processes on localhost against one
process on the concatenated batch, and against the float64 quantile-integral oracle.

The convention under test: every rank returns the single-process loss of the whole batch, and
its inputs get ``k x`` their single-process gradients (k ranks), so that DDP's averaging
yields the single-process parameter gradients.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from distributed_cases import (
    CASES,
    CASES_BY_NAME,
    ERROR_CASES,
    accelerate_worker,
    ddp_problem,
    llm_case,
    model_loss,
    run_case,
    share,
    whole_inputs,
    worker,
)
from optional import import_or_skip
from oracles import numpy_cost, quantile_integral
from tolerances import tol

import aot_loss
from aot_loss import _distributed

WORLD_SIZES = (2, 3)


def spawn(fn, args: tuple, nprocs: int, deadline_s: float = 240.0) -> None:
    """``mp.spawn`` that fails, rather than hangs, if the ranks are not done by the deadline."""
    context = mp.start_processes(fn, args=args, nprocs=nprocs, join=False, start_method="spawn")
    start = time.monotonic()
    while not context.join(timeout=1.0):
        if time.monotonic() - start > deadline_s:
            for process in context.processes:
                process.kill()
            raise AssertionError(f"the {nprocs} ranks did not finish within {deadline_s:.0f} s")


@pytest.fixture(scope="module", params=WORLD_SIZES, ids=lambda k: f"{k}ranks")
def ranks(request, tmp_path_factory):
    """Spawn k gloo processes once per world size; return (k, per-rank results)."""
    k = request.param
    tmp = tmp_path_factory.mktemp(f"dist{k}")
    try:
        spawn(worker, (k, str(tmp / "init"), str(tmp)), k)
    except Exception as e:
        logs = "\n".join(p.read_text() for p in sorted(tmp.glob("rank*.err")))
        raise AssertionError(f"a rank failed:\n{logs}") from e
    return k, [torch.load(tmp / f"rank{r}.pt", weights_only=False) for r in range(k)]


def expected(case, k: int, rank: int) -> dict[str, torch.Tensor]:
    """One process on the batch that ``rank`` couples over; its gradients scaled by the
    number of ranks in that batch and cut to ``rank``'s slice."""
    members = case.members(k, rank)
    inputs = whole_inputs(case, k)
    result = run_case(case, share(case, k, members, inputs), None)
    for name, grad in list(result.items()):
        if name.startswith("grad_"):
            sizes = case.v_sizes[k] if name == "grad_r_neg" else case.u_sizes[k]
            pieces = torch.split(grad, [sizes[r] for r in members], dim=-1)
            result[name] = pieces[members.index(rank)] * len(members)
    return result


def _close(case_dtype: torch.dtype) -> dict[str, float]:
    return {"rtol": 1e-6, "atol": 1e-9} if case_dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-6}


@pytest.mark.parametrize("name", [case.name for case in CASES])
def test_every_rank_gets_the_single_process_loss_and_scaled_gradients(ranks, name):
    k, results = ranks
    case = CASES_BY_NAME[name]
    for rank in range(k):
        got, want = results[rank][name], expected(case, k, rank)
        assert got.keys() == want.keys()
        for key in want:
            torch.testing.assert_close(got[key], want[key], **_close(case.dtype), msg=f"rank {rank}, {key}")


@pytest.mark.parametrize("name", ["unpaired_uneven", "unpaired_weights", "paired_uneven", "paired_weights"])
def test_global_loss_equals_the_quantile_integral_oracle(ranks, name):
    k, results = ranks
    case = CASES_BY_NAME[name]
    x = {n: t.numpy() for n, t in whole_inputs(case, k).items()}
    h = numpy_cost(
        case.options.get("loss", "logistic"), case.options["beta"], case.options.get("label_smoothing", 0)
    )
    if case.paired:
        u = x["policy_chosen_logps"] - x["policy_rejected_logps"]
        v = x["ref_chosen_logps"] - x["ref_rejected_logps"]
        want = quantile_integral(u, v, h, x.get("weights"), x.get("weights"))
    else:
        want = quantile_integral(x["r_pos"], x["r_neg"], h, x.get("pos_weights"), x.get("neg_weights"))
    for rank in range(k):
        np.testing.assert_allclose(results[rank][name]["out"].item(), want, **tol("float64_processes"))


def single_process_model_gradients(k: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The unwrapped model on the whole batch: the loss and the parameter gradients."""
    model, x_pos, x_neg = ddp_problem(k)
    loss = model_loss(model, x_pos, x_neg, group=None)
    loss.backward()
    return loss.detach(), {f"param_{n}": p.grad for n, p in model.named_parameters()}


def assert_model_results(results: list[dict], k: int) -> None:
    loss, grads = single_process_model_gradients(k)
    for rank, got in enumerate(results):
        torch.testing.assert_close(got["out"], loss, **tol("float64_sums_relative"))
        for n, g in grads.items():
            torch.testing.assert_close(got[n], g, **tol("float32_gathered"), msg=f"rank {rank}, {n}")


@pytest.mark.parametrize("wrapper", ["ddp", "fsdp"])
def test_wrapped_model_parameter_gradients_equal_the_single_process_gradients(ranks, wrapper):
    k, results = ranks
    assert_model_results([r[wrapper] for r in results], k)


def test_llm_wrapper_loss_with_a_group_averages_to_the_single_process_gradients(ranks):
    k, results = ranks
    want = llm_case(list(range(k)), k)
    for rank in range(k):
        torch.testing.assert_close(results[rank]["llm"]["out"], want["out"], **tol("float64_sums_relative"))
    for name, grad in want.items():
        if name.startswith("param_"):  # DDP's average of the ranks' gradients
            mean = torch.stack([results[rank]["llm"][name] for rank in range(k)]).mean(0)
            torch.testing.assert_close(mean, grad, **tol("float32_gathered"), msg=name)


def test_accelerate_parameter_gradients_equal_the_single_process_gradients(tmp_path):
    import_or_skip("accelerate")
    k = 2
    with socket.socket() as s:  # a free port for accelerate's env:// rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spawn(accelerate_worker, (k, port, str(tmp_path)), k)
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(k)]
    assert {r.pop("type") for r in results} == {"DistributedType.MULTI_CPU"}
    assert_model_results(results, k)


# What every rank raises when rank 1 calls the loss differently (rank 1 itself: the second entry).
# The first case differs only in a way that the upcast removes, so it must not raise.
ERRORS = {
    "paired_weights_dtype_by_rank": (("no error", ""),) * 2,
    "dtype": (("ValueError", "disagree on the computation dtype of r_pos and r_neg"),) * 2,
    "rows": (("ValueError", "disagree on the shape (rank 0: 1-D, rank 1: 2 rows"),) * 2,
    "options": (("ValueError", "disagree on the loss options"),) * 2,
    "weights_given": (("ValueError", "disagree on whether neg_weights are given (rank 0: None, rank 1: given"),) * 2,
    "local_check": (
        ("RuntimeError", "rank(s) [1] of the group rejected their inputs"),
        ("ValueError", "r_pos contains NaN or infinite values (check_finite=True), got nan at index 1"),
    ),
    "empty_everywhere": (("ValueError", "r_neg must not be empty: it has no samples on any rank of the group"),) * 2,
    "zero_mass_everywhere": (("ValueError", "pos_weights must not contain a row with zero total mass over the group, got all zero weights"),) * 2,
    "bad_beta": (("RuntimeError", "rank(s) [1] of the group rejected their inputs"), ("ValueError", "beta must be a finite number > 0, got -1.0")),
    "bad_reduction": (("RuntimeError", "rank(s) [1] of the group rejected their inputs"), ("ValueError", "reduction must be one of")),
    "meta_tensor": (("RuntimeError", "rank(s) [1] of the group rejected their inputs"), ("ValueError", "r_pos is a meta tensor, which has no data to gather")),
    "paired_on_one_rank": (("ValueError", "disagree on the loss function (rank 0: unpaired, rank 1: paired"),) * 2,
    "two_lambdas": (("ValueError", "disagree on the loss options"),) * 2,
    "two_functions": (("ValueError", "disagree on the loss options"),) * 2,
    "same_function": (("no error", ""),) * 2,
    "same_lambda_code": (("no error", ""),) * 2,
}  # fmt: skip


@pytest.mark.parametrize("name", list(ERROR_CASES))
def test_disagreeing_or_failing_ranks_raise_on_every_rank(ranks, name):
    k, results = ranks
    others, rank1 = ERRORS[name]
    for rank in range(k):
        kind, message = rank1 if rank == 1 else others
        got_kind, got_message = results[rank][f"error_{name}"]
        assert got_kind == kind, (rank, got_message)
        assert message in got_message, (rank, got_message)


def test_a_rank_outside_a_subgroup_gets_a_clear_error(ranks):
    k, results = ranks
    if k < 3:
        pytest.skip("every rank of 2 belongs to the subgroup of ranks 0 and 1")
    kind, message = results[2]["error_non_member"]
    assert kind == "ValueError" and "this process is not a member of the group" in message, message


@pytest.mark.parametrize(
    ("key", "case_name"), [("after_errors", CASES[0].name), ("compiled", "unpaired_weights")]
)
def test_ranks_stay_in_step_after_errors_and_under_compile(ranks, key, case_name):
    k, results = ranks
    for rank in range(k):
        want = expected(CASES_BY_NAME[case_name], k, rank)
        assert results[rank][key].keys() == want.keys()
        for name, value in want.items():
            torch.testing.assert_close(results[rank][key][name], value, **tol("float32_processes"))


def test_torchrun_example_trains_with_the_same_global_loss_on_every_rank():
    example = Path(__file__).parents[1] / "examples" / "distributed_toy.py"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "3"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [*command, str(example), "--steps", "30"], capture_output=True, text=True, env=env, timeout=120
    )
    assert run.returncode == 0, run.stderr[-3000:]
    steps = [float(x) for x in re.findall(r"global loss (\d+\.\d+)  \(3 ranks\)", run.stdout)]
    assert len(steps) == 4 and steps[-1] < 0.5 * steps[0], run.stdout
    finals = re.findall(r"rank (\d): final global loss (\d+\.\d{6})", run.stdout)  # lines may interleave
    assert sorted(r for r, _ in finals) == ["0", "1", "2"] and len({x for _, x in finals}) == 1, run.stdout


def test_world_without_a_process_group_raises():
    assert not dist.is_initialized()
    with pytest.raises(RuntimeError, match=r"group='world' needs an initialised default process group"):
        aot_loss.unpaired(torch.randn(3), torch.randn(3), group="world")
    with pytest.raises(RuntimeError, match=r"group='world' needs an initialised"):
        aot_loss.PairedAOTLoss(group="world")(*torch.randn(4, 3))


@pytest.mark.parametrize(
    ("group", "error", "message"),
    [
        ("all", ValueError, r"group must be None, 'world' or a torch.distributed.ProcessGroup, got 'all'"),
        (0, TypeError, r"group must be None, 'world' or a torch.distributed.ProcessGroup, got 0"),
        (object, TypeError, r"group must be None, 'world' or a torch.distributed.ProcessGroup, got <class"),
    ],
)
def test_bad_group_arguments(group, error, message):
    with pytest.raises(error, match=message):
        aot_loss.unpaired(torch.randn(3), torch.randn(3), group=group)
    with pytest.raises(error, match=message):
        aot_loss.paired(*torch.randn(4, 3), group=group)
    with pytest.raises(error, match=message):
        aot_loss.UnpairedAOTLoss(group=group)


def test_group_none_never_touches_torch_distributed(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("torch.distributed was called")

    for name in ("is_initialized", "get_rank", "get_world_size", "all_gather", "get_backend"):
        monkeypatch.setattr(_distributed.dist, name, forbidden)
    r_pos, r_neg = torch.randn(4, requires_grad=True), torch.randn(3)
    aot_loss.unpaired(r_pos, r_neg, group=None).backward()
    aot_loss.UnpairedAOTLoss()(r_pos, r_neg)
    assert r_pos.grad is not None


def test_empty_slices_are_refused_without_a_group():
    with pytest.raises(ValueError, match=r"r_neg must not be empty, got shape \(0,\)"):
        aot_loss.unpaired(torch.randn(3), torch.empty(0))


def test_a_group_of_one_rank_is_local(tmp_path, monkeypatch):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1)
    try:
        monkeypatch.setattr(_distributed.dist, "all_gather", None)  # a call would raise TypeError
        r_pos, r_neg = torch.randn(5, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
        for group in ("world", dist.group.WORLD):
            torch.testing.assert_close(
                aot_loss.unpaired(r_pos, r_neg, group=group), aot_loss.unpaired(r_pos, r_neg), **tol("exact")
            )
        module = aot_loss.UnpairedAOTLoss(group="world")
        assert "group='world'" in repr(module)
    finally:
        dist.destroy_process_group()


def test_grad_scale_is_the_identity_with_scaled_gradients_twice_differentiable():
    x = torch.randn(4, dtype=torch.float64, requires_grad=True)
    y = _distributed._ScaleGrad.apply(x, 3.0)
    assert torch.equal(y, x)
    (g,) = torch.autograd.grad((y**3).sum(), x, create_graph=True)
    torch.testing.assert_close(g, 3 * 3 * x**2)
    (gg,) = torch.autograd.grad(g.sum(), x)
    torch.testing.assert_close(gg, 3 * 18 * x)  # the scaled backward of 9 y^2, scaled again
