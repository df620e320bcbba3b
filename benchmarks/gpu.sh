#!/usr/bin/env bash
# The prepared GPU benchmark run: hardware (bf16 and fp32), scaling and, where lm-eval is installed,
# the comparisons with lm-evaluation-harness (log-likelihood; greedy generation in bf16 on a 135M-shape
# Llama), on one CUDA device, in about 8 minutes on an H200.
#
#   OUT=/some/folder bash benchmarks/gpu.sh          # on the GPU machine, from the checkout's root
#   DEVICE=cpu QUICK=1 OUT=gpu-smoke bash benchmarks/gpu.sh   # smoke-test this script on a CPU machine
#
# It uses the machine's own python3 (CUDA PyTorch, transformers, pandas, pyarrow, pyyaml) with this
# checkout on PYTHONPATH, so nothing is installed; lm-eval, when missing, is reported and its
# comparison left out. Results: one JSON per benchmark and one log in $OUT (at most 8 files).
set -uo pipefail
OUT=${OUT:-benchmarks/results/gpu}
DEVICE=${DEVICE:-cuda}
QUICK=${QUICK:+--quick}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
LOG="$OUT/gpu_benchmarks.log"
suffix=$([ -n "$QUICK" ] && echo _quick || true)

python3 - "$DEVICE" <<'EOF' 2>&1 | tee "$LOG" || exit 1
import sys, torch, transformers
device = sys.argv[1]
if device == "cuda" and not torch.cuda.is_available():
    sys.exit("error: no CUDA device visible to torch; fix: run this on the GPU machine, or DEVICE=cpu for a smoke test")
name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
print(f"torch {torch.__version__}, transformers {transformers.__version__}, device {name}")
EOF

failed=0
bench() {  # bench NAME RESULT_FILE SCRIPT ARGS...: run one benchmark, keep its JSON as $OUT/NAME.json
    local name=$1 result=$2; shift 2
    echo "== $name: python3 $*" | tee -a "$LOG"
    if timeout 300 python3 "$@" $QUICK >>"$LOG" 2>&1; then
        cp "benchmarks/results/$result$suffix.json" "$OUT/$name.json"
    else
        echo "!! $name failed (exit $?); its output is in $LOG" | tee -a "$LOG"
        failed=1
    fi
}

dtypes=$([ "$DEVICE" = cuda ] && echo "bfloat16 float32" || echo float32)
for dtype in $dtypes; do
    bench "hardware_${DEVICE}_$dtype" hardware benchmarks/bench_hardware.py --device "$DEVICE" --dtype "$dtype" --batch-size 64
done
bench "scaling_$DEVICE" scaling benchmarks/bench_scaling.py --device "$DEVICE"
if python3 -c "import lm_eval" 2>/dev/null; then
    # float32, so that the log-likelihoods can be compared at 1e-4 (PyTorch leaves TF32 matmuls off)
    bench "vs_lm_eval_builtin_$DEVICE" vs_lm_eval benchmarks/bench_vs_lm_eval.py --model builtin --device "$DEVICE"
    bench "vs_lm_eval_neox100m_$DEVICE" vs_lm_eval_neox100m benchmarks/bench_vs_lm_eval.py --model neox100m --device "$DEVICE"
    # greedy generation on the 135M-shape Llama in bf16 (outputs compared as text; near-ties may differ in bf16)
    gdtype=$([ "$DEVICE" = cuda ] && echo bfloat16 || echo float32)
    bench "generate_vs_lm_eval_llama135m_${DEVICE}_$gdtype" "generate_vs_lm_eval_llama135m$([ -n "$QUICK" ] && echo _gen8)" \
        benchmarks/bench_generate_vs_lm_eval.py --model llama135m --device "$DEVICE" --dtype "$gdtype" \
        --per-cell 20 --batch-size 64 --lm-batch-sizes 16,64,256 --ll-per-cell 5
else
    echo "lm-eval is not installed here: the comparison with lm-evaluation-harness is left out (carry its wheels to run it)" | tee -a "$LOG"
fi
grep -E "^(==|!!)|utilization|scoring \(|matmul|ours/lm-eval|identical|^ +(items|checkpoints) " "$LOG" | tail -60
exit $failed
