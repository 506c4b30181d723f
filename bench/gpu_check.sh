#!/usr/bin/env bash
# What a lent GPU machine runs, in one call: the kernel tests on CUDA tensors, then the three
# kernel suites of `drvoice-lab bench` (tiny and 7B sizes, bf16) through their thin scripts,
# which need only torch, Triton and transformers. Uses the machine's own python3 (its torch and
# Triton), not this project's pins; nothing is installed.
#
#   bash bench/gpu_check.sh OUTDIR     # OUTDIR gets env.txt, pytest.txt, bench.log, <kernel>.csv
#
# The CSVs share bench/results/<kernel>.csv's header: append their rows (tail -n +2).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: bash bench/gpu_check.sh OUTDIR}
mkdir -p "$out"
py=${PYTHON:-python3}

# The kernels folder is installed as drvoice_kernels; without installing, a link does it.
site=$(mktemp -d)
ln -s "$PWD/kernels" "$site/drvoice_kernels"
export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1

{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  "$py" -c 'import torch, triton; print("torch", torch.__version__, "triton", triton.__version__,
             "cuda", torch.version.cuda, torch.cuda.get_device_name())'
} >"$out/env.txt" 2>&1
cat "$out/env.txt"

start=$SECONDS
# xdist spreads the Triton compilations over the CPU cores; correctness only, no timings.
timeout "${TEST_TIMEOUT:-180}" "$py" -m pytest -q -p no:cacheprovider -n 8 \
  tests/test_kernels_grouping.py tests/test_kernels_srh_ungroup.py \
  tests/test_kernels_linear_cross_entropy.py tests/test_kernels_model.py \
  >"$out/pytest.txt" 2>&1
echo "kernel tests: exit $? in $((SECONDS - start)) s"
tail -n 15 "$out/pytest.txt"

# One size per process, so a timeout loses one size's rows, not a kernel's.
for kernel in grouping srh_ungroup linear_cross_entropy; do
  for size in tiny 7b; do
    start=$SECONDS
    timeout "${BENCH_TIMEOUT:-90}" "$py" bench/bench_$kernel.py --sizes $size \
      --csv "$out/$kernel.csv" >>"$out/bench.log" 2>&1
    echo "bench $kernel $size: exit $? in $((SECONDS - start)) s"
  done
done
cat "$out/bench.log"
