#!/usr/bin/env bash
# Every GPU measurement of bench/README.md ("GPU") in one run of about eight minutes, for
# a lent GPU machine that has torch and transformers but no diffusers, no torchao and no
# package index: carry .whl/ (made here by `bash bench/wheels.sh`) with the working tree.
#
#   OUT=/some/dir bash bench/gpu_session.sh     # results: $OUT/*.txt and $OUT/*.json
#
# Stages, most important first; each has a time limit, and a stage that would start past
# SESSION_S seconds (default 500) is skipped, so a slow machine still returns what it
# measured. STAGES (space-separated names) picks and orders them; default: all below.
#   sd15-stores    SD 1.5 arch 512², B=16, 6+ calls a row: bare pipeline vs the farm's
#                  engine, and the engine storing to a local folder with its stores
#                  pipelined through the encode processes (a CUDA worker's way)
#   sd15-compile   FRESCO_COMPILE's path with the VAE decoder compiled too, empty cache:
#                  start to first image cold, compiled vs the stock eager pipeline at
#                  B=16, the VAE decoder eager vs compiled, same-seed tolerance
#   sd15-warm      a new process on the cache sd15-compile filled: start to first image
#   imports        what that start spends importing (python -X importtime) and in CUDA init
#   sd15-blocks    sd15-compile with FRESCO_COMPILE_SCOPE=blocks (regional compile)
#   sd15-blocks-warm  sd15-warm on sd15-blocks' cache
#   sd15-fp8       bf16 pipeline, then matmul_precision fp8 (torchao): eager, then
#                  compiled, each against bf16 on the same seeds (PSNR)
#   sd15-cudagraphs  sd15-compile with FRESCO_COMPILE_MODE=reduce-overhead (CUDA graphs:
#                  no per-kernel launch cost; not yet measured)
#   sd15-stores-all  the 2026-12-04 table: B=16,8 with serial stores and thread encoding
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
    grep -E '^\| |start to first|tolerance|determinism|VAE decode|fp8 .*vs bf16|quantized in|encode processes|^Total' "$OUT/$name.txt" \
        || tail -5 "$OUT/$name.txt"
}

CACHE=/tmp/fresco-inductor
rm -rf "$CACHE" "$CACHE-blocks" "$CACHE-fp8" "$CACHE-cg"
run_stage() {
    case $1 in
    sd15-stores) stage sd15-stores 130 90 --arch sd15 --batches 16 --modes bare,engine,pipelined \
        --min-calls 6 --min-images 16 --no-det --max-seconds 110 ;;
    sd15-compile) stage sd15-compile 170 110 --arch sd15 --compile-session --compile-vae --batches 16 \
        --min-calls 4 --min-images 16 --cache-dir "$CACHE" --max-seconds 150 ;;
    sd15-warm) stage sd15-warm 60 35 --arch sd15 --compile-session --compile-vae --first-only --batches 16 \
        --cache-dir "$CACHE" ;;
    imports)
        echo "== imports at $(elapsed) s"
        timeout 60 "$PY" -X importtime -c '
import time; t0 = time.perf_counter()
import torch, diffusers, transformers
from worker import sampler
from worker.device import prepare_pipeline
t1 = time.perf_counter(); torch.cuda.init(); torch.cuda.get_device_name(); t2 = time.perf_counter()
print(f"imports {t1 - t0:.1f} s, CUDA init {t2 - t1:.1f} s", flush=True)' > "$OUT/imports.txt" 2> "$OUT/importtime.raw"
        sort -t'|' -k2 -n -r "$OUT/importtime.raw" | head -40 >> "$OUT/imports.txt"
        head -12 "$OUT/imports.txt" ;;
    sd15-blocks) stage sd15-blocks 150 90 --arch sd15 --compile-session --compile-scope blocks --compile-vae \
        --batches 16 --min-calls 4 --min-images 16 --cache-dir "$CACHE-blocks" --max-seconds 130 ;;
    sd15-blocks-warm) stage sd15-blocks-warm 50 30 --arch sd15 --compile-session --compile-scope blocks \
        --compile-vae --first-only --batches 16 --cache-dir "$CACHE-blocks" ;;
    sd15-fp8) stage sd15-fp8 "${FP8_S:-200}" 60 --arch sd15 --compile-session --fp8 --batches 16 --min-calls 3 \
        --min-images 16 --cache-dir "$CACHE-fp8" --max-seconds "$(( ${FP8_S:-200} - 20 ))" ;;
    sd15-cudagraphs) stage sd15-cudagraphs 170 110 --arch sd15 --compile-session --compile-mode reduce-overhead \
        --compile-vae --batches 16 --min-calls 4 --min-images 16 --cache-dir "$CACHE-cg" --max-seconds 150 ;;
    sd15-stores-all) stage sd15-stores-all 130 80 --arch sd15 --batches 16,8 \
        --modes bare,engine,store,pipelined,pipelined-inline --min-calls 2 --min-images 4 --no-det --max-seconds 100 ;;
    *) echo "unknown stage $1" ;;
    esac
}
for name in ${STAGES:-sd15-stores sd15-compile sd15-warm imports sd15-blocks sd15-blocks-warm sd15-fp8}; do
    run_stage "$name"
done
echo "session done in $(elapsed) s"
