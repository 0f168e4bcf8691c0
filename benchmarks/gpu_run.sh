#!/usr/bin/env bash
# Everything issue #4 needs a GPU for, in one script for a machine with a CUDA torch:
#   build     the native extension with the CUDA kernels, in place (AOT_LOSS_BUILD_CUDA=1)
#   test      tests/test_cuda.py (CUDA torch path and native kernels)
#   sanitize  compute-sanitizer memcheck, racecheck and synccheck over both CUDA paths
#   bench     benchmarks/bench_fused.py on the GPU
#   profile   benchmarks/profile_cuda.py: each provider's time three ways and its kernels
#   unsort    benchmarks/unsort_scatter.cu: the 1e7 un-sort's scatter against alternatives
#   errors    the toolchain, and a kernel error raised on CPU operands: on the GPU machine it
#             crashed until the build hid a static libstdc++ (docs/native.md); if it crashes
#             again, cuda-gdb's backtrace
# Usage: OUT=folder benchmarks/gpu_run.sh build test sanitize bench
# Logs and results go to $OUT (default /tmp/aot_loss_gpu); each step runs even if one before
# it failed, so one call on a lent machine reports as much as it can. Steps are capped by
# their timeouts (test 420 s, each sanitizer 240 s, bench 560 s, profile 300 s), more in all
# than one 600 s call of a lent machine: split them, e.g. `build errors test` then
# `build sanitize` then `build bench` then `build profile` (a build takes ~30 s).
set -u
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/aot_loss_gpu}
mkdir -p "$out"
python=${PYTHON:-python3}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-16}

step_build() {
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  "$python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
  local start=$SECONDS
  if ! AOT_LOSS_BUILD_EXT=1 AOT_LOSS_BUILD_CUDA=1 "$python" setup.py build_ext --inplace >"$out/build.log" 2>&1; then
    tail -80 "$out/build.log"
    return 1
  fi
  echo "built in $((SECONDS - start)) s"
  cp aot_loss/_C*.so aot_loss/_C_build.json "$out/"
  "$python" -m aot_loss info
}

step_test() {
  timeout 420 "$python" -m pytest tests/test_cuda.py -q -p no:cacheprovider --maxfail=60 2>&1 |
    tee "$out/test_cuda.log" | tail -60
}

step_sanitize() {
  # Small shapes of every path (block pairs, block merged grid with weights, block rows, long
  # path by segment sort and by segmented sort): a sanitizer run is ~100x slower.
  local script='
import sys, torch, aot_loss
cases = [((64,), (64,), False), ((100,), (37,), True), ((9, 33), (9, 20), False),
         ((4096,), (4096,), False), ((6000,), (4500,), True), ((20, 5000), (20, 4100), False)]
if sys.argv[1:] == ["big"]:  # the un-sort (>= 2^21 values), for memcheck only: slow to race-check
    cases += [((2_100_000,), (2_100_000,), False), ((2_097_152,), (2_000_001,), True)]
for su, sv, weighted in cases:
    u = torch.randn(su, device="cuda", dtype=torch.float64, requires_grad=True)
    v = torch.randn(sv, device="cuda", dtype=torch.float64, requires_grad=True)
    w = torch.rand(su, device="cuda", dtype=torch.float64) if weighted else None
    aot_loss.unpaired(u, v, pos_weights=w, backend="native", reduction="sum").backward()
torch.cuda.synchronize()
print("sanitized", len(cases), "cases")
'
  for tool in memcheck racecheck synccheck; do
    timeout 240 compute-sanitizer --tool "$tool" --error-exitcode 3 "$python" -c "$script" \
      "$([ "$tool" = memcheck ] && echo big)" >"$out/sanitize_$tool.log" 2>&1
    echo "compute-sanitizer $tool: exit $?"
    tail -5 "$out/sanitize_$tool.log"
  done
}

step_bench() {
  timeout 560 "$python" benchmarks/bench_fused.py --device cuda --out "$out" 2>&1 | tee "$out/bench.log"
}

step_profile() {
  timeout 300 "$python" benchmarks/profile_cuda.py >"$out/profile_cuda.txt" 2>&1
  local code=$?
  tail -40 "$out/profile_cuda.txt"
  return $code
}

step_unsort() {
  nvcc -O3 -std=c++17 -arch=sm_90 -Icsrc benchmarks/unsort_scatter.cu -o /tmp/unsort_scatter &&
    timeout 120 /tmp/unsort_scatter | tee "$out/unsort_scatter.txt"
}

step_errors() {
  g++ --version | head -1
  "$python" -c 'import sys, torch; print(sys.version.split()[0], torch.__version__)'
  ldd aot_loss/_C*.so | grep -E "libstdc|libgcc_s|libtorch\.|libc10\."
  local call="import torch, aot_loss
torch.ops.aot_loss.dominance(torch.ones(3), torch.ones(3, dtype=torch.float64), None, None, 'logistic', 0.1, 0.0, False)"
  "$python" -c "$call" >"$out/errors.log" 2>&1
  local code=$?
  echo "a rejected operand on CPU: exit $code (1 with a RuntimeError is right)"
  tail -2 "$out/errors.log"
  if [ "$code" -ge 128 ]; then
    echo "$call" >"$out/errors_call.py"
    timeout 200 cuda-gdb -batch -ex run -ex bt --args "$python" "$out/errors_call.py" 2>&1 |
      grep -v '^\[New Thread\|^\[Thread' | tail -40
  fi
}

status=0
for step in "$@"; do
  echo "=== $step"
  "step_$step" || status=1
done
exit $status
