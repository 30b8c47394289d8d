"""Compose that cannot drift: every first-party service of docker-compose.yml run as a
local process, with its declared command and its declared environment, and a batch
pushed through them (Docker cannot run here).

Nothing about a service is written here: its command, environment, dependencies and
healthcheck are read from docker-compose.yml. What a container would have and this
machine has not is mapped, and only through the tables below:

- the third-party services are the ones on this machine: Postgres (a fresh database),
  Redis (this test run's db index), and a moto S3 server in place of MinIO and its
  bucket-creating `minio-init`;
- compose hostnames and published ports are loopback addresses (ADDRESSES);
- paths inside containers (volumes, tmpfs) are folders of the test (PATHS); the
  working directory, /app in the images, is the repository root;
- a few settings are this machine's (MACHINE): no GPU (the worker renders on the CPU),
  no internet (Hugging Face offline), shared CPUs (one torch thread), loopback only.

Then: migrate runs to completion first, the others start in compose's dependency order,
each healthcheck command passes (run locally with the same mappings), a batch submitted
to the api succeeds with its images in the store and its renders in Flower, and the
worker's ready file is gone once it stops.
"""
from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from support.procs import BIN, ROOT, Proc, free_port
from support.services import Database, S3Server
from support.waiting import wait_until

COMPOSE = ROOT / "docker-compose.yml"
FIRST_PARTY_IMAGES = ("fresco:",)  # built from this repository (infra/Dockerfile*)
THIRD_PARTY = {"postgres", "redis", "minio", "minio-init"}  # replaced by this machine's
REQUIRED = ["migrate", "api", "worker", "sweeper", "flower"]

# Values for compose's ${VAR} references: what an operator writes in .env.
OPERATOR_ENV = {
    "POSTGRES_PASSWORD": "pg-secret",  # ignored: this machine's Postgres trusts loopback
    "MINIO_ROOT_USER": "fresco-s3",
    "MINIO_ROOT_PASSWORD": "s3-secret-12345",
    "FRESCO_URL_SECRET": "url-secret-for-the-test",
    "FLOWER_USER": "ops",
    "FLOWER_PASSWORD": "flower-secret",
}
VAR_REF = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
MACHINE = {
    "FRESCO_DEVICE": "cpu",  # no GPU here; the CUDA image's worker renders on the CPU
    "HF_HUB_OFFLINE": "1",  # no internet: models are the ones the repository ships
    "FRESCO_TORCH_THREADS": "1",  # two CPU cores shared with other test runs
    "FLOWER_ADDRESS": "127.0.0.1",  # loopback only on a shared machine (compose publishes the port)
}


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's variable substitution: ${VAR}, ${VAR:-default}, ${VAR-default},
    ${VAR:?error}, ${VAR?error}, and $$ for a literal $."""
    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.group(1), m.group(2), m.group(3)
        value = env.get(name)
        if op in (":-", ":?") and not value:
            value = None
        if value is None:
            if op and op.endswith("?"):
                raise AssertionError(f"compose requires {name}: {arg}")
            return arg if op else ""
        return value
    return VAR_REF.sub(sub, value)


class Mapping:
    """Compose's world to this machine's: addresses, paths and the database."""

    def __init__(self, tmp: Path, pg: str, database: str, redis_db: int, s3: S3Server) -> None:
        self.api_port, self.flower_port = free_port(), free_port()
        s3_host = s3.url.removeprefix("http://")
        server = urlsplit(pg)
        # (compose text, local text), applied in order to every value and argument.
        self.addresses = [
            ("@postgres:5432/fresco", f"@{server.hostname}:{server.port or 5432}/{database}"),
            # this machine's role (it trusts loopback, so compose's password is ignored)
            ("postgresql://fresco:", f"postgresql://{server.username or 'postgres'}:"),
            ("redis://redis:6379/0", f"redis://127.0.0.1:6379/{redis_db}"),
            ("minio:9000", s3_host),
            ("localhost:9000", s3_host),  # MinIO's published port: presigned URLs name it
            ("0.0.0.0", "127.0.0.1"),  # bind loopback only
            ("localhost:8000", f"127.0.0.1:{self.api_port}"),  # the api's published port
            ("127.0.0.1:8000", f"127.0.0.1:{self.api_port}"),
            ("--port 8000", f"--port {self.api_port}"),
            ("--port=5555", f"--port={self.flower_port}"),
            ("127.0.0.1:5555", f"127.0.0.1:{self.flower_port}"),
        ]
        self.tmp = tmp

    def paths(self, service: str) -> list[tuple[str, str]]:
        """Container paths (volumes and tmpfs) to folders of the test, one set per
        service (tmpfs is private to its container; a named volume is shared)."""
        return [("/models-cache", str(self.tmp / "volumes" / "models-cache")),
                ("/run/fresco", str(self.tmp / service / "run" / "fresco"))]

    def text(self, service: str, value: str) -> str:
        for compose_text, local in self.addresses + self.paths(service):
            value = value.replace(compose_text, local)
        return value

    def args(self, service: str, argv: list[str]) -> list[str]:
        argv = [self.text(service, a) for a in argv]
        if "--port" in argv:  # `--port 8000` as two arguments
            i = argv.index("--port")
            if argv[i + 1] == "8000":
                argv[i + 1] = str(self.api_port)
        # The image's commands are on its PATH; here they are the virtual environment's.
        return [str(BIN / argv[0])] + argv[1:] if (BIN / argv[0]).exists() else argv


def listify(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else shlex.split(str(value))


def environment(svc: dict) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): interpolate("" if v is None else str(v), OPERATOR_ENV) for k, v in env.items()}


def start_order(services: dict) -> list[str]:
    """First-party services in compose's dependency order (third-party ones are up)."""
    order: list[str] = []

    def visit(name: str, seen: tuple = ()) -> None:
        assert name not in seen, f"dependency cycle through {name}"
        if name in order or name in THIRD_PARTY:
            return
        for dep in services[name].get("depends_on") or {}:
            visit(dep, seen + (name,))
        order.append(name)
    for name in services:
        visit(name)
    return order


def healthcheck(svc: dict) -> list[str] | None:
    test = (svc.get("healthcheck") or {}).get("test")
    if not test:
        return None
    if test[0] == "CMD":
        return [str(t) for t in test[1:]]
    assert test[0] == "CMD-SHELL", test
    return ["sh", "-c", str(test[1])]


@pytest.fixture
def compose_services() -> dict:
    # What `docker compose up` starts: services under a profile (monitoring) start only
    # when their profile is asked for, and are not the farm's.
    services = {n: s for n, s in yaml.safe_load(COMPOSE.read_text())["services"].items() if not s.get("profiles")}
    first_party = {n for n, s in services.items() if str(s.get("image", "")).startswith(FIRST_PARTY_IMAGES)}
    assert first_party >= set(REQUIRED) and not first_party & THIRD_PARTY, sorted(first_party)
    assert set(services) - first_party <= THIRD_PARTY, "a service the test does not know how to replace"
    return services


@pytest.fixture
def fresh_database(session_env):
    name = f"fresco_compose_{uuid.uuid4().hex[:8]}"
    subprocess.run(["psql", f"{session_env.pg}/postgres", "-qc", f"CREATE DATABASE {name}"], check=True,
                   capture_output=True)
    yield name
    subprocess.run(["psql", f"{session_env.pg}/postgres", "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"],
                   capture_output=True, check=False)


def test_compose_services_run_as_declared_and_render_a_batch(compose_services, fresh_database, session_env,
                                                               tmp_path):
    s3 = S3Server(tmp_path / "moto.log", bucket="fresco")  # compose's bucket: s3://fresco/results
    s3.start()
    mapping = Mapping(tmp_path, session_env.pg, fresh_database, session_env.redis_db, s3)
    # Only what a container has besides its declared environment: its PATH, a HOME, and the
    # code of its image (here the repository, first on the path as /app is in the image).
    base = {"PATH": f"{BIN}:{os.environ['PATH']}", "HOME": str(tmp_path), "LANG": "C.UTF-8", "PYTHONPATH": str(ROOT)}
    procs: dict[str, Proc] = {}
    envs: dict[str, dict[str, str]] = {}
    try:
        for name in start_order(compose_services):
            svc = compose_services[name]
            env = {**base, **{k: mapping.text(name, v) for k, v in environment(svc).items()}, **MACHINE}
            envs[name] = env
            for _, local in mapping.paths(name):
                Path(local).mkdir(parents=True, exist_ok=True)
            argv = mapping.args(name, listify(svc.get("entrypoint") or []) + listify(svc["command"]))
            if svc.get("restart") == "no":  # a one-shot (migrate): it must finish, and succeed
                r = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
                assert r.returncode == 0, f"{name} ({' '.join(argv)}) failed:\n{r.stdout[-2000:]}{r.stderr[-3000:]}"
                continue
            procs[name] = Proc(name, argv, env, tmp_path / f"{name}.log")

        # Every healthcheck, as compose would run it inside the container.
        def healthy(name: str) -> bool:
            if not procs[name].alive():
                raise AssertionError(f"{name} exited:\n{procs[name].tail()}")
            cmd = [mapping.text(name, a) for a in healthcheck(compose_services[name])]
            cmd = [str(BIN / cmd[0])] + cmd[1:] if (BIN / cmd[0]).exists() else cmd
            checked = subprocess.run(cmd, cwd=ROOT, env=envs[name], capture_output=True, timeout=30, check=False)
            return checked.returncode == 0
        for name in procs:
            assert healthcheck(compose_services[name]), f"{name} has no healthcheck"
            wait_until(lambda name=name: healthy(name), 180, f"{name}'s healthcheck to pass", interval=1)

        # A batch through the api, rendered by the worker, stored in the S3 store.
        from db import tenants

        db = Database(envs["api"]["FRESCO_DATABASE_URL"])
        with db.session() as s:
            key = tenants.create_key(s, tenant="compose")
        db.dispose()
        api = httpx.Client(base_url=f"http://127.0.0.1:{mapping.api_port}", timeout=30,
                           headers={"Authorization": f"Bearer {key}"})
        defaults = {"model": "tiny-sd", "width": 32, "height": 32, "steps": 2}
        items = [{"prompt": "a harbour", "seed": 1}, {"prompt": "a hill", "seed": 2}]
        r = api.post("/v1/batches", json={"defaults": defaults, "items": items})
        assert r.status_code == 202, r.text
        batch = r.json()

        def finished() -> dict | None:
            b = api.get(f"/v1/batches/{batch['id']}").json()
            return b if b["status"] in ("succeeded", "failed", "partial", "canceled") else None
        final = wait_until(finished, 240, "the batch to finish", interval=0.5)
        assert final["status"] == "succeeded", (final, procs["worker"].tail())
        stored = [k for k in s3.keys() if f"/{batch['id']}/" in k]
        images = [k for k in stored if not k.endswith(".thumb.webp")]  # each with the gallery's thumbnail
        assert len(images) == 2 and len(stored) == 4 and all(k.startswith("results/") for k in stored), stored

        # Flower, on the same broker with compose's login, shows the batch's render.
        flower = httpx.get(f"http://127.0.0.1:{mapping.flower_port}/api/tasks", params={"search": batch["id"]},
                           auth=(OPERATOR_ENV["FLOWER_USER"], OPERATOR_ENV["FLOWER_PASSWORD"]), timeout=10)
        assert flower.status_code == 200 and flower.json(), flower.text[:500]

        # The worker's ready file goes when it stops consuming.
        ready = Path(envs["worker"]["FRESCO_READY_FILE"])
        assert ready.exists()
        procs["worker"].stop(signal.SIGTERM, timeout=60)
        assert not ready.exists(), "the ready file outlived the worker"
    finally:
        for proc in reversed(list(procs.values())):
            proc.stop(timeout=30)
        s3.stop()
