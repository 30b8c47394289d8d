"""What the API image (infra/Dockerfile: the `api` extra, no torch) runs must not need the
worker's dependencies, and the API reports the package's version."""
from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKER_ONLY = {"torch", "diffusers", "transformers", "accelerate", "safetensors", "numpy"}

# The API image's processes, as far as importing goes: uvicorn api.main:app, python -m
# worker.sweeper, and celery flower, which loads worker.app and the modules it includes.
ENTRY_POINTS = {
    "api": "import api.main",
    "sweeper": "import worker.sweeper",
    "flower": "import worker.app; worker.app.app.loader.import_default_modules()",
}


@pytest.mark.parametrize("process", sorted(ENTRY_POINTS))
def test_api_image_processes_import_no_worker_dependency(process):
    code = f"{ENTRY_POINTS[process]}; import json, sys; print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    # A fresh interpreter: this test process may have loaded torch for other tests.
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    loaded = set(json.loads(r.stdout.splitlines()[-1]))
    assert not loaded & WORKER_ONLY, f"{process} imports {sorted(loaded & WORKER_ONLY)}"


def test_the_api_reports_the_package_version(client):
    assert client.get("/openapi.json").json()["info"]["version"] == version("fresco")
