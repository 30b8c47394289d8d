#!/usr/bin/env bash
# Every GPU measurement of bench/README.md ("GPU") in one run of about six minutes, for a
# lent GPU machine that has torch and transformers but no diffusers and no package index:
# carry .whl/ (made here by `bash bench/wheels.sh`) with the working tree.
#
#   OUT=/some/dir bash bench/gpu_session.sh     # results: $OUT/*.txt and $OUT/*.json
#
# Stages, most important first; each has a time limit, and a stage that would start past
# SESSION_S seconds (default 420) is skipped, so a slow machine still returns what it
# measured:
#   1. sd15-eager    SD 1.5 arch 512², B=1,8,16: bare pipeline vs the farm's engine, the
#                    engine with encode + store to a local folder, serial and pipelined
#   2. sd15-compile  the same engine with FRESCO_COMPILE's path (torch.compile per shape,
#                    empty cache): start to first image cold, compiled vs eager at B=16,
#                    same-seed tolerance
#   3. sd15-warm     a new process on the cache stage 2 filled: start to first image
#   4. sdxl-eager    SDXL arch 1024², B=1,4: bare vs engine vs engine with pipelined stores
#   5. sd15-compile-cl  stage 2 with a channels_last UNet (only if the time is left)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results/gpu-session}
SESSION_S=${SESSION_S:-420}
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
    grep -E '^\| |start to first|tolerance|determinism|VAE decode' "$OUT/$name.txt" || tail -5 "$OUT/$name.txt"
}

CACHE=/tmp/fresco-inductor
rm -rf "$CACHE"
stage sd15-eager 150 90 --arch sd15 --batches 16,8,1 --min-calls 2 --min-images 4 --max-seconds 110
stage sd15-compile 200 120 --arch sd15 --compile-session --batches 16 --min-calls 3 --min-images 16 \
    --cache-dir "$CACHE" --max-seconds 170
stage sd15-warm 80 40 --arch sd15 --compile-session --first-only --batches 16 --cache-dir "$CACHE"
stage sdxl-eager 110 60 --arch sdxl --batches 4,1 --modes bare,engine,pipelined --min-calls 2 --min-images 4 \
    --no-det --max-seconds 80
# channels_last with compile (cold again: another cache), if the time is there
stage sd15-compile-cl 200 150 --arch sd15 --compile-session --channels-last --batches 16 --min-calls 3 \
    --min-images 16 --cache-dir "$CACHE-cl" --max-seconds 170
echo "session done in $(elapsed) s"
