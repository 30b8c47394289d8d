#!/usr/bin/env bash
# Download the wheels that bench/gpu.py needs on a GPU machine that has torch and
# transformers (and numpy, huggingface-hub, safetensors, regex, requests, pillow,
# filelock, packaging) but no diffusers, no pydantic and no package index.
#
# Target: CPython 3.12, x86_64 manylinux. Wheels land in .whl/ (gitignored); the ones
# needed only when the machine's own copy is too old land in .whl/opt/.
#
# What the benchmark imports beyond torch/transformers/numpy:
#   diffusers          (worker.sampler, the bare loop)
#   pydantic           (fresco.registry, fresco.settings)
#     pydantic-core, annotated-types, typing-inspection
#   pydantic-settings  (fresco.settings, via worker.device)
#     python-dotenv
#   torchao            (--fp8: registry matmul_precision "fp8", worker/device.py; needs torch >= 2.11)
# diffusers' other needs are already there: huggingface-hub >=1.32 (1.33 there),
# safetensors >=0.8, regex, requests, filelock, numpy, Pillow; importlib_metadata is
# only imported on Python < 3.8.
#
# pydantic 2.14 wants typing-extensions >= 4.16.0: that wheel goes to .whl/opt/ and the
# device command installs it only if the machine's typing_extensions is older.
#
#   bash bench/wheels.sh          # then carry .whl to the device
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && PY=${PYTHON:-.venv/bin/python}
DEST=.whl

download() {  # download DEST SPEC...
    local dest=$1; shift
    "$PY" -m pip download -q --no-deps --only-binary=:all: \
        --python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform manylinux1_x86_64 --platform any \
        -d "$dest" "$@"
}

rm -rf "$DEST"
mkdir -p "$DEST/opt"
# Versions are those pinned in pyproject.toml (and the venv's resolution of them).
download "$DEST" \
    diffusers==0.42.1 \
    pydantic==2.14.3 \
    pydantic-core==2.50.4 \
    annotated-types==0.8.0 \
    typing-inspection==0.4.5 \
    pydantic-settings==2.16.3 \
    python-dotenv==1.2.4 \
    torchao==0.18.0
download "$DEST/opt" typing-extensions==4.16.0

echo "wheels in $DEST:"
ls -l "$DEST"/*.whl "$DEST"/opt/*.whl | awk '{printf "  %8d  %s\n", $5, $9}'
total=$(du -cb "$DEST"/*.whl "$DEST"/opt/*.whl | tail -1 | cut -f1)
echo "total: $total bytes ($((total / 1024 / 1024)) MiB)"
if [ "$total" -ge $((40 * 1024 * 1024)) ]; then
    echo "error: wheels exceed 40 MB" >&2
    exit 1
fi
