#!/usr/bin/env bash
# The one prepared check for a machine with an NVIDIA GPU. On an H200 its steps took 2 s
# (detect), 65 s (tests), 84 s and 81 s (the cuDNN benchmarks); the scan's benchmarks take
# longer, as XLA compiles each scanned model for about 50 s there, and did not finish
# within a 110 s step limit: about 10 minutes in all (benchmarks/results/accelerator/).
#
#   benchmarks/accelerator_check.sh [OUT]            run it (default OUT: benchmarks/results/accelerator)
#   benchmarks/accelerator_check.sh --dry-run [OUT]  what CI runs: every CPU-safe part (device
#                                                    detection, the tests collect, the scripts parse)
#
# Steps, each logged to OUT/<step>.log, its exit code and seconds appended to OUT/summary.txt;
# a failing step does not stop the next:
#   1. detect      pipeline/device.py's choice, nvidia-smi, and JAX seeing the GPU
#   2. tests       pytest -m accelerator (real cuDNN against the scan, NMT training on the
#                  GPU in float32 and bf16, three processes sharing the GPU's memory)
#   3. rnn-*       benchmarks/rnn_speed.py lstm-S and lstm-M, rnnpipe's scan and its cuDNN
#                  path, each in an interleaved run against PyTorch on CUDA (cuDNN)
#   4. nmt-*       benchmarks/nmt_speed.py, the attention NMT, the same two ways
#   5. table       OUT/gpu-table.md (benchmarks/accelerator_table.py)
#   6. repro       a default `dvc repro` timed on the GPU, in a copy of the repository,
#                  when this Python has the pipeline's dependencies (dvc, prefect, ...);
#                  else it says so and is skipped
#
# The Python is .venv's when there is one, else $PYTHON, else python3 (a GPU image's own,
# with jax[cuda] and torch installed). STEP_LIMIT=SECONDS caps each step (a lease with a
# fixed budget). Nothing here fails on timing.
set -uo pipefail
cd "$(dirname "$0")/.."

DRY=0
if [ "${1:-}" = --dry-run ]; then DRY=1; shift; fi
OUT=${1:-benchmarks/results/accelerator}
if [ -x .venv/bin/python ]; then PY=${PYTHON:-.venv/bin/python}; else PY=${PYTHON:-python3}; fi
mkdir -p "$OUT"
: > "$OUT/summary.txt"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=${XLA_PYTHON_CLIENT_PREALLOCATE:-false}

# step NAME DRY-COMMAND -- COMMAND...: run COMMAND (or, in a dry run, DRY-COMMAND) and log it.
step() {
  local name=$1 dry=$2
  shift 3
  local t0=$SECONDS rc
  if [ "$DRY" = 1 ]; then
    echo "== $name (dry run): $dry"
    bash -c "$dry" > "$OUT/$name.log" 2>&1
    rc=$?
  else
    echo "== $name: $*"
    if [ -n "${STEP_LIMIT:-}" ] && type -P "$1" >/dev/null; then set -- timeout "$STEP_LIMIT" "$@"; fi
    "$@" 2>&1 | tee "$OUT/$name.log"
    rc=${PIPESTATUS[0]}
  fi
  echo "$name exit=$rc seconds=$((SECONDS - t0))" | tee -a "$OUT/summary.txt"
  return 0
}

read -r platform _ < <(RNNPIPE_DEVICE=${RNNPIPE_DEVICE:-auto} python3 pipeline/device.py 2>/dev/null) || platform=none
if [ "$DRY" = 0 ] && [ "$platform" != cuda ]; then
  echo "no NVIDIA GPU here (pipeline/device.py chose: $platform); use --dry-run to check the script" >&2
  exit 2
fi
export JAX_PLATFORMS=$([ "$DRY" = 1 ] && echo cpu || echo cuda)

step detect "python3 pipeline/device.py; $PY -m pipeline.device --verify cpu" -- \
  bash -c "python3 pipeline/device.py && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv \
           && $PY -m pipeline.device --verify cuda"
step tests "$PY -m pytest -m accelerator --collect-only -q -p no:cacheprovider tests/test_accelerator.py" -- \
  "$PY" -m pytest -m accelerator -q -p no:cacheprovider tests/test_accelerator.py
for kernel in scan cudnn; do
  step "rnn-$kernel" "$PY benchmarks/rnn_speed.py --help" -- \
    "$PY" benchmarks/rnn_speed.py --device gpu --kernel "$kernel" --rows lstm-S lstm-M --frameworks jax torch \
      --rounds 5 --steps 30 --out "$OUT/rnn-speed-$kernel"
done
for kernel in scan cudnn; do
  step "nmt-$kernel" "$PY benchmarks/nmt_speed.py --help" -- \
    "$PY" benchmarks/nmt_speed.py --device gpu --kernel "$kernel" --rows luong --rounds 5 --steps 20 \
      --out "$OUT/nmt-speed-$kernel"
done
step table "$PY benchmarks/accelerator_table.py --help" -- \
  "$PY" benchmarks/accelerator_table.py "$OUT"

repro() {
  if ! "$PY" -c "import dvc, dvclive, prefect, statsforecast" 2>/dev/null; then
    echo "skipped: $PY lacks the pipeline's dependencies (dvc, dvclive, prefect, statsforecast); install them with ./dev"
    return 0
  fi
  local copy
  copy=$(mktemp -d)/rnnpipe
  git clone -q . "$copy" 2>/dev/null || cp -a . "$copy"
  (cd "$copy" && time "$PY" -m dvc repro -q && "$PY" -m dvc metrics show)
}
step repro "$PY -c 'import dvc' 2>/dev/null && echo dvc found || echo 'dvc missing: the repro step would be skipped'" -- repro

echo
cat "$OUT/summary.txt"
! grep -qv "exit=0" "$OUT/summary.txt"
