#!/usr/bin/env bash
# Every GPU measurement of bench/README.md ("GPU") in one run of about eight minutes, for
# a lent GPU machine that has torch and transformers but no diffusers, no torchao and no
# package index: carry .whl/ (made here by `bash bench/wheels.sh`) with the working tree.
#
#   OUT=/some/dir bash bench/gpu_session.sh     # results: $OUT/*.txt and $OUT/*.json
#
# Stages, most important first; each has a time limit, and a stage that would start past
# SESSION_S seconds (default 500) is skipped, so a slow machine still returns what it
# measured:
#   1. sd15-stores   SD 1.5 arch 512², B=16,8: bare pipeline vs the farm's engine, the
#                    engine with encode + store to a local folder: serial, pipelined with
#                    the encode processes (a CUDA worker), pipelined encoding on the store
#                    thread (the 2026-12-04 run's way)
#   2. sd15-compile  FRESCO_COMPILE's path (torch.compile per shape, kernel tuning, empty
#                    cache): start to first image cold, compiled vs the stock eager
#                    pipeline at B=16, same-seed tolerance
#   3. sd15-warm     a new process on the cache stage 2 filled: start to first image
#   4. sd15-fp8      bf16 pipeline, then matmul_precision fp8 (torchao) compiled: speed
#                    and the images against bf16 on the same seeds (PSNR)
#   5. sd15-compile-cl  stage 2 with a channels_last UNet (if the time is left)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results/gpu-session}
SESSION_S=${SESSION_S:-500}
PY=${PYTHON:-python3}
EXTRA=${GPU_BENCH_ARGS:-}  # e.g. "--device cpu --tiny": a smoke test of this script on a CPU
mkdir -p "$OUT"
start=$(date +%s)
elapsed() { echo $(( $(date +%s) - start )); }

{
    date -u +"date: %Y-%m-%dT%H:%M:%SZ"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1
    nproc
    "$PY" -c 'import torch, transformers; print("torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__)'
} > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"

SITE=/tmp/fresco-site
rm -rf "$SITE"
"$PY" -m pip install -q --no-index --no-deps --target "$SITE" .whl/*.whl > "$OUT/install.txt" 2>&1
# typing-extensions only where the machine's own is older than pydantic needs
"$PY" -c 'import sys; from importlib.metadata import version as v; sys.exit(tuple(map(int, v("typing_extensions").split(".")[:2])) < (4, 16))' \
    || "$PY" -m pip install -q --no-index --no-deps --target "$SITE" .whl/opt/*.whl >> "$OUT/install.txt" 2>&1
export PYTHONPATH="$SITE:$PWD" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
echo "installed in $(elapsed) s"

stage() {  # stage NAME LIMIT_S NEEDS_S ARGS...
    local name=$1 limit=$2 needs=$3; shift 3
    if [ $(( $(elapsed) + needs )) -gt "$SESSION_S" ]; then
        echo "== $name skipped at $(elapsed) s (needs ~$needs s of $SESSION_S)" | tee "$OUT/$name.txt"
        return
    fi
    echo "== $name at $(elapsed) s"
    timeout -k 5 "$limit" "$PY" bench/gpu.py --t0 "$(date +%s.%N)" --json "$OUT/$name.json" "$@" $EXTRA \
        > "$OUT/$name.txt" 2>&1
    echo "   rc=$? at $(elapsed) s"
    grep -E '^\| |start to first|tolerance|determinism|VAE decode|fp8 vs|encode processes|^Total' "$OUT/$name.txt" \
        || tail -5 "$OUT/$name.txt"
}

CACHE=/tmp/fresco-inductor
rm -rf "$CACHE" "$CACHE-fp8" "$CACHE-cl"
stage sd15-stores 130 80 --arch sd15 --batches 16,8 --modes bare,engine,store,pipelined,pipelined-inline \
    --min-calls 2 --min-images 4 --no-det --max-seconds 100
stage sd15-compile 180 110 --arch sd15 --compile-session --batches 16 --min-calls 3 --min-images 16 \
    --cache-dir "$CACHE" --max-seconds 160
stage sd15-warm 60 35 --arch sd15 --compile-session --first-only --batches 16 --cache-dir "$CACHE"
stage sd15-fp8 170 120 --arch sd15 --compile-session --fp8 --batches 16 --min-calls 3 --min-images 16 \
    --cache-dir "$CACHE-fp8" --max-seconds 150
stage sd15-compile-cl 170 110 --arch sd15 --compile-session --channels-last --batches 16 --min-calls 3 \
    --min-images 16 --cache-dir "$CACHE-cl" --max-seconds 150
echo "session done in $(elapsed) s"
