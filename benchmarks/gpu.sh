#!/usr/bin/env bash
# Measure training throughput and evaluation cost on one CUDA GPU, then write their results page.
#
#   benchmarks/gpu.sh [FOLDER [OUTPUT]]     # default: benchmarks/results/cuda and benchmarks/RESULTS_cuda.md
#
# Estimate: under five minutes on one GPU, most of it the domain classifier's one-time training
# and data loading. train.amp and train.compile keep their config defaults (bf16 autocast on,
# compile off). The study-cost benchmark is not run here: its quick budget is a CPU budget.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python=${PYTHON:-python}
folder=${1:-benchmarks/results/cuda}
output=${2:-benchmarks/RESULTS_cuda.md}

"$python" benchmarks/throughput.py --device cuda --epochs 5 --limit 0 --json "$folder/throughput.json"
"$python" benchmarks/evaluation.py --device cuda --throughput "$folder/throughput.json" \
    --json "$folder/evaluation.json"
"$python" benchmarks/results.py --folder "$folder" --output "$output"
