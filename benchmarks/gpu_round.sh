#!/usr/bin/env bash
# Everything that needs an NVIDIA GPU, in stages that each fit a 10-minute command on a lent machine.
#
#   bash benchmarks/gpu_round.sh tests    # every @pytest.mark.gpu test (triton_ops, attention back ends, rkbs)
#   bash benchmarks/gpu_round.sh speed    # attention_speed at d=128, autotuned and with TRITON_OPS_AUTOTUNE=0
#   bash benchmarks/gpu_round.sh peers    # the full attention_speed sweep against SDPA, FlexAttention, eager
#   bash benchmarks/gpu_round.sh rkbs     # rkbs_gpu: 1M-point Nystroem fits on the GPU
#   bash benchmarks/gpu_round.sh decode   # attention_decode: 1 and 16 queries against 1k-64k cached keys
#                                         # (split-KV vs not vs SDPA), and a packed batch against the padded one
#
# Results go to $OUT (the device tool's result folder) or benchmarks/results/gpu_round. Runs from the repository
# root with the machine's own python (torch and triton preinstalled there); nothing is installed.
set -euo pipefail
case "${1:-}" in tests|speed|peers|rkbs|decode) ;; *) echo "usage: bash benchmarks/gpu_round.sh {tests|speed|peers|rkbs|decode}" >&2; exit 2 ;; esac
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
out="${OUT:-benchmarks/results/gpu_round}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$out/gpu.txt" || true
python -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" >> "$out/gpu.txt"

case "${1:-}" in
  tests)
    timeout 560 python -m pytest -m gpu -q -x --junitxml="$out/gpu_tests.xml" tests/ 2>&1 | tee "$out/gpu_tests.txt"
    ;;
  speed)
    kernels="edp rbf laplacian polynomial linear cosine sigmoid tanh"
    timeout 270 python benchmarks/attention_speed.py --no-peers --n 16384 --d 128 --kernels $kernels \
      --out "$out" --name speed_autotuned
    TRITON_OPS_AUTOTUNE=0 timeout 270 python benchmarks/attention_speed.py --no-peers --n 16384 --d 128 \
      --kernels $kernels --out "$out" --name speed_defaults
    ;;
  peers)
    timeout 580 python benchmarks/attention_speed.py --n 4096 16384 --d 64 128 --out "$out"
    ;;
  rkbs)
    timeout 580 python benchmarks/rkbs_gpu.py --budget 400 --out "$out"
    ;;
  decode)
    timeout 560 python benchmarks/attention_decode.py --out "$out" --no-progress
    ;;
esac
