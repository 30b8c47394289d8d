"""The SDK and the CLI install light: `pip install fresco` without extras.

A real virtual environment gets the base dependencies from the package index, pinned as
pyproject.toml pins them, and the project itself without its extras. Every check runs in
that environment with the checkout off the path, so what it imports is what a user of the
client gets: no torch, celery or sqlalchemy, and an admin command that names the extra to
install instead of a traceback. One check drives the light client against the real API.

The environment is cached under the temporary directory, keyed by pyproject.toml's hash
and the checkout's path (the project is installed editable, so code changes need no
rebuild): the first run takes a minute or so, the next ones seconds.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = ROOT / "pyproject.toml"
# What the server extras bring and the client must never load.
HEAVY = ("torch", "diffusers", "transformers", "celery", "kombu", "sqlalchemy", "psycopg", "boto3", "fastapi",
         "flower", "PIL", "numpy")


def _light_venv() -> Path:
    text = PYPROJECT.read_bytes()
    # The checkout's path too: the project is installed editable, so a venv serves one checkout.
    key = hashlib.sha256(text + sys.version.encode() + str(ROOT).encode()).hexdigest()[:12]
    venv = Path(tempfile.gettempdir()) / f"fresco-light-venv-{key}"
    with open(f"{venv}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two runs at once: the second waits for the first's venv
        if (venv / ".ok").exists():
            return venv
        shutil.rmtree(venv, ignore_errors=True)  # a run that died half-way
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        base = tomllib.loads(text.decode())["project"]["dependencies"]
        for cmd in (pip + base, pip + ["--no-deps", "-e", str(ROOT)]):
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
            assert r.returncode == 0, f"{' '.join(cmd)} failed:\n{r.stdout}\n{r.stderr}"
        (venv / ".ok").write_text("ok")
    return venv


@pytest.fixture(scope="module")
def light(tmp_path_factory) -> "Light":
    return Light(_light_venv(), tmp_path_factory.mktemp("light"))


class Light:
    """Commands run in the light venv, from a folder outside the checkout, with no PYTHONPATH."""

    def __init__(self, venv: Path, cwd: Path) -> None:
        self.venv = venv
        self.cwd = cwd
        self.env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("VIRTUAL_ENV")}
        self.env["PATH"] = f"{venv / 'bin'}:/usr/bin:/bin"

    def run(self, *cmd: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(list(cmd), cwd=self.cwd, env={**self.env, **env}, capture_output=True, text=True,
                              timeout=120)

    def python(self, code: str, **env: str) -> subprocess.CompletedProcess:
        return self.run(str(self.venv / "bin" / "python"), "-c", code, **env)


def test_the_light_venv_has_no_server_dependencies(light):
    r = light.python("import importlib.util, json; "
                     f"print(json.dumps([m for m in {HEAVY!r} if importlib.util.find_spec(m)]))")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [], "the base install pulled in server dependencies"


def test_importing_the_client_loads_no_server_module(light):
    code = ("import json, sys; import fresco.client; from fresco.client import ApiError, Client; "
            "Client(api_url='http://127.0.0.1:9', api_key='k'); "
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    r = light.python(code)
    assert r.returncode == 0, r.stderr
    loaded = set(json.loads(r.stdout))
    assert "fresco" in loaded and not loaded & {*HEAVY, "api", "worker", "db"}, sorted(loaded)
    # ... and it is the checkout's code, not some other package named fresco.
    r = light.python("import fresco.client; print(fresco.client.__file__)")
    assert Path(r.stdout.strip()).resolve() == ROOT / "fresco" / "client" / "__init__.py"


def test_cli_help_runs_on_the_base_install(light):
    r = light.run("fresco", "--help")
    assert r.returncode == 0, r.stderr
    assert "submit" in r.stdout and "keys" in r.stdout
    r = light.run("fresco", "submit", "--help")
    assert r.returncode == 0, r.stderr
    assert "--wait" in r.stdout


def test_a_server_command_names_the_extra_to_install(light):
    r = light.run("fresco", "keys", "create", "--tenant", "light")
    assert r.returncode != 0
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "pip install 'fresco[api]'" in lines[0]
    assert r.stdout == ""


def test_the_tenants_admin_command_names_the_extra_to_install(light):
    r = light.run("fresco", "tenants", "show")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "pip install 'fresco[api]'" in r.stderr and r.stdout == ""


def test_the_light_cli_submits_to_the_real_api(light, farm, tmp_path):
    """`fresco submit` from the base install, against the API as uvicorn serves it: the batch
    lands in Postgres with the prompts and defaults given (no worker: it stays queued)."""
    farm.start_api()
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\n# a comment\na blue square\n")
    r = light.run("fresco", "submit", str(prompts), "--steps", "3", "--width", "32", "--height", "32",
                  FRESCO_API_URL=farm.env["FRESCO_API_URL"], FRESCO_API_KEY=farm.key)
    assert r.returncode == 0, r.stderr
    batch_id = r.stdout.strip().splitlines()[-1]
    batch = farm.batch(batch_id)
    assert batch["total"] == 2
    jobs = farm.jobs(batch_id)
    assert sorted(j["spec"]["prompt"] for j in jobs) == ["a blue square", "a red circle"]
    assert {(j["spec"]["steps"], j["spec"]["width"], j["spec"]["height"]) for j in jobs} == {(3, 32, 32)}
    # A wrong key is the API's 401, reported by the SDK in one line, not a traceback.
    r = light.run("fresco", "submit", str(prompts), FRESCO_API_URL=farm.env["FRESCO_API_URL"],
                  FRESCO_API_KEY="not-a-key")
    assert r.returncode == 1
    assert "Traceback" not in r.stderr and r.stderr.startswith("fresco: 401"), r.stderr
