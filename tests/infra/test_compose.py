"""Structural checks of docker-compose.yml, the Dockerfiles and infra/.env.example.

No Docker engine is needed: the compose file is parsed with PyYAML (which resolves its
anchors and `<<` merges as compose does) and checked against docs/design.md ("Processes and
settings", "Delivery") and fresco.settings.
"""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

from fresco.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE_API = ROOT / "infra" / "Dockerfile"
DOCKERFILE_CPU_WORKER = ROOT / "infra" / "Dockerfile.worker"
DOCKERFILE_CUDA = ROOT / "infra" / "Dockerfile.cuda"
ENV_EXAMPLE = ROOT / "infra" / ".env.example"

REQUIRED_SERVICES = {"api", "worker", "redis", "postgres", "minio", "minio-init", "flower", "migrate", "sweeper"}

# The commands of docs/design.md, verbatim.
API_CMD = "uvicorn api.main:app --host 0.0.0.0 --port 8000"
WORKER_CMD = "celery -A worker.app worker -E"
MIGRATE_CMD = "alembic upgrade head"
# docs/design.md writes `--port 5555`, which Flower takes only through worker/flower_args.py;
# compose and k8s keep `--port=5555`, the one form Flower takes on its own.
FLOWER_CMD = "celery -A worker.app flower --port=5555"
SWEEPER_CMD = "python -m worker.sweeper"

# ${VAR}, ${VAR:?msg}, ${VAR?msg}, ${VAR:-default}, ${VAR-default}; `$${` is an escaped `$`.
VAR_REF = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)((?::?[?+-])[^}]*)?\}")
WHOLE_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)((?::?[?+-])[^}]*)?\}$")
SECRET_KEY = re.compile(r"PASSWORD|SECRET|ACCESS_KEY")


@pytest.fixture(scope="module")
def compose() -> dict:
    doc = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(doc, dict) and isinstance(doc.get("services"), dict), "docker-compose.yml has no services"
    return doc


@pytest.fixture(scope="module")
def services(compose: dict) -> dict:
    return compose["services"]


def command_of(svc: dict) -> str:
    """The service's command (and entrypoint) as one space-joined string."""
    parts = []
    for key in ("entrypoint", "command"):
        value = svc.get(key)
        if isinstance(value, list):
            parts.extend(str(v) for v in value)
        elif value is not None:
            parts.append(str(value))
    return " ".join(parts)


def env_of(svc: dict) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):  # ["KEY=value", ...]
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def worker_services(services: dict) -> dict:
    return {name: svc for name, svc in services.items() if WORKER_CMD in command_of(svc)}


def strings(node) -> list[str]:
    """Every scalar string in the parsed document (keys and values): what compose interpolates."""
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in strings(k) + strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in strings(v)]
    return [node] if isinstance(node, str) else []


def seconds(duration) -> float:
    """A compose duration ("90s", "1m30s", "2m", "1h") in seconds."""
    text = str(duration).strip()
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"not a compose duration: {duration!r}"
    unit = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6}
    return sum(float(n) * unit[u] for n, u in parts)


def depends(svc: dict) -> dict[str, str]:
    deps = svc.get("depends_on") or {}
    if isinstance(deps, list):  # short form: started only
        return {d: "service_started" for d in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def dockerfile_of(svc: dict) -> str | None:
    build = svc.get("build")
    if isinstance(build, dict):
        return build.get("dockerfile")
    return None


def torch_pin() -> str:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + [d for extra in project["optional-dependencies"].values() for d in extra]
    pins = [d for d in deps if re.match(r"torch\s*==", d)]
    assert len(pins) == 1, f"pyproject.toml should pin torch exactly once, found {pins}"
    return pins[0].replace(" ", "")


# --- services and commands ---------------------------------------------------------------


def test_required_services_exist(services):
    missing = REQUIRED_SERVICES - services.keys()
    assert not missing, f"docker-compose.yml lacks services: {sorted(missing)}"


@pytest.mark.parametrize("name, command", [
    ("api", API_CMD),
    ("worker", WORKER_CMD),
    ("migrate", MIGRATE_CMD),
    ("flower", FLOWER_CMD),
    ("sweeper", SWEEPER_CMD),
])
def test_service_runs_the_design_command(services, name, command):
    assert command in command_of(services[name]), (
        f"{name} must run `{command}` (docs/design.md), runs `{command_of(services[name])}`")


def test_worker_command_leaves_pool_and_concurrency_to_the_app(services):
    for name, svc in worker_services(services).items():
        cmd = command_of(svc)
        for flag in ("--concurrency", "-c ", "--pool", "-P ", "--autoscale"):
            assert flag not in cmd, f"{name}: {flag.strip()} overrides worker/app.py (one render process per GPU)"


def test_one_shot_services_do_not_restart(services):
    for name in ("migrate", "minio-init"):
        assert str(services[name].get("restart", "no")) == "no", f"{name} is one-shot: it must not restart"


def test_minio_init_creates_the_bucket(services):
    cmd = command_of(services["minio-init"])
    assert "mc mb" in cmd and "/fresco" in cmd, f"minio-init must create the bucket fresco: {cmd}"
    assert "s3://fresco/" in env_of(services["api"])["FRESCO_STORAGE_URL"], "the API must store in the bucket minio-init creates"
    assert depends(services["minio-init"]).get("minio") == "service_healthy"


# --- start order ----------------------------------------------------------------------------


def test_api_and_workers_wait_for_migrations(services):
    for name in ["api", *worker_services(services)]:
        assert depends(services[name]).get("migrate") == "service_completed_successfully", (
            f"{name} must depend on migrate with condition service_completed_successfully")


def test_api_waits_for_redis_and_bucket(services):
    deps = depends(services["api"])
    assert deps.get("redis") == "service_healthy"
    assert deps.get("minio-init") == "service_completed_successfully"


def test_migrate_waits_for_healthy_postgres(services):
    assert depends(services["migrate"]).get("postgres") == "service_healthy"


def test_every_dependency_exists(services):
    for name, svc in services.items():
        for dep, cond in depends(svc).items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            assert cond in {"service_started", "service_healthy", "service_completed_successfully"}, (name, dep, cond)
            if cond == "service_healthy":
                assert services[dep].get("healthcheck"), f"{name} waits for {dep} to be healthy, but {dep} has no healthcheck"


# --- data services ---------------------------------------------------------------------------


def test_redis_keeps_its_data(services):
    redis = services["redis"]
    cmd = command_of(redis)
    assert "redis-server" in cmd
    assert "--appendonly yes" in cmd, "Redis must run with AOF (docs/design.md, Delivery)"
    assert "--appendfsync everysec" in cmd
    assert "--maxmemory-policy noeviction" in cmd, "Redis must never evict broker keys"
    assert "redis-cli" in command_of({"command": redis["healthcheck"]["test"]})
    assert any(str(v).endswith(":/data") for v in redis.get("volumes", [])), "Redis data (the AOF) needs a volume"


def test_postgres(services, compose):
    pg = services["postgres"]
    assert str(pg["image"]).startswith("postgres:16")
    assert "pg_isready" in command_of({"command": pg["healthcheck"]["test"]})
    vols = [str(v) for v in pg.get("volumes", [])]
    assert any(v.endswith(":/var/lib/postgresql/data") for v in vols), "Postgres needs a data volume"
    for v in vols:
        assert v.split(":")[0] in (compose.get("volumes") or {}), f"Postgres volume {v} is not a named volume"


def test_minio_has_a_healthcheck(services):
    assert services["minio"].get("healthcheck", {}).get("test"), "minio needs a healthcheck (minio-init waits on it)"


def test_api_healthcheck_and_ports(services):
    api = services["api"]
    assert "/readyz" in command_of({"command": api["healthcheck"]["test"]}), "healthy means its dependencies answer too"
    assert any(str(p).endswith("8000:8000") or str(p) == "8000" for p in api.get("ports", []))
    assert any(str(p).endswith("5555:5555") for p in services["flower"].get("ports", []))


# --- GPU workers ------------------------------------------------------------------------------


def test_worker_reserves_one_nvidia_gpu(services):
    workers = worker_services(services)
    assert "worker" in workers
    for name, svc in workers.items():
        devices = svc["deploy"]["resources"]["reservations"]["devices"]
        assert len(devices) == 1, f"{name}: one GPU per worker"
        (dev,) = devices
        assert dev.get("driver") == "nvidia", f"{name}: GPU driver must be nvidia"
        assert "gpu" in dev.get("capabilities", []), f"{name}: capabilities must include gpu"
        assert dev.get("count") == 1 or len(dev.get("device_ids", [])) == 1, f"{name}: exactly one GPU (count 1 or one device_id)"


def test_worker_drains_before_docker_kills_it(services):
    default_grace = Settings.model_fields["shutdown_grace_s"].default
    for name, svc in worker_services(services).items():
        assert "stop_grace_period" in svc, f"{name}: the default 10 s stop grace kills a running render"
        grace = seconds(svc["stop_grace_period"])
        assert grace >= 30, f"{name}: stop_grace_period {grace}s is too short to drain"
        soft = float(env_of(svc).get("FRESCO_SHUTDOWN_GRACE_S", default_grace))
        assert grace > soft, f"{name}: stop_grace_period ({grace}s) must exceed FRESCO_SHUTDOWN_GRACE_S ({soft}s)"


def test_workers_share_the_model_cache(services, compose):
    workers = worker_services(services)
    mounts = {}
    for name, svc in workers.items():
        env = env_of(svc)
        cache = env.get("FRESCO_HF_CACHE_DIR")
        assert cache, f"{name}: FRESCO_HF_CACHE_DIR must point at the shared model cache"
        assert env.get("HF_HOME") == cache, f"{name}: HF_HOME must be the shared cache too"
        sources = [str(v).split(":")[0] for v in svc.get("volumes", []) if str(v).split(":")[1] == cache]
        assert len(sources) == 1, f"{name}: nothing is mounted at {cache}"
        mounts[name] = sources[0]
    assert len(set(mounts.values())) == 1, f"workers mount different caches: {mounts}"
    volume = next(iter(mounts.values()))
    assert volume in (compose.get("volumes") or {}), f"the model cache {volume} must be a named volume"


def test_worker_readiness_file(services):
    for name, svc in worker_services(services).items():
        env = env_of(svc)
        assert env.get("FRESCO_READY_FILE"), f"{name}: FRESCO_READY_FILE tells when the preload is done"
        assert env.get("FRESCO_LIVE_FILE"), f"{name}: FRESCO_LIVE_FILE tells that the consumer runs"
        for path in (env["FRESCO_READY_FILE"], env["FRESCO_LIVE_FILE"]):
            assert str(Path(path).parent) in svc.get("tmpfs", []), f"{name}: {path} must be on a tmpfs"
        check = command_of({"command": svc["healthcheck"]["test"]})
        assert "python -m worker.probes ready live" in check, f"{name}: healthcheck must check both files: {check}"
        assert "FRESCO_PRELOAD" in env


def test_sweeper_and_flower_have_healthchecks(services):
    sweeper, flower = services["sweeper"], services["flower"]
    assert "python -m worker.probes live" in command_of({"command": sweeper["healthcheck"]["test"]})
    live = env_of(sweeper).get("FRESCO_LIVE_FILE")
    assert live and str(Path(live).parent) in sweeper.get("tmpfs", []), "the sweeper's live file on a tmpfs"
    assert "5555/healthcheck" in command_of({"command": flower["healthcheck"]["test"]})


def test_flower_keeps_a_bounded_number_of_tasks(services):
    # Flower holds every task it has seen in memory unless told otherwise (100,000 by default).
    assert 0 < int(env_of(services["flower"])["FLOWER_MAX_TASKS"]) <= 20000


def test_images(services):
    for name in ("api", "migrate", "sweeper", "flower"):
        assert dockerfile_of(services[name]) == "infra/Dockerfile", f"{name} uses the CPU image"
    for name, svc in worker_services(services).items():
        assert dockerfile_of(svc) == "infra/Dockerfile.cuda", f"{name} uses the CUDA image"
        assert env_of(svc).get("FRESCO_DEVICE") == "cuda"


# --- settings and secrets ---------------------------------------------------------------------


def test_fresco_variables_are_settings(services):
    fields = {f"FRESCO_{name.upper()}" for name in Settings.model_fields}
    used = {key for svc in services.values() for key in env_of(svc) if key.startswith("FRESCO_")}
    assert used, "no FRESCO_* settings in compose"
    unknown = used - fields
    assert not unknown, f"compose sets FRESCO_* variables that fresco.settings ignores: {sorted(unknown)}"


def test_shared_environment(services):
    required = {"FRESCO_DATABASE_URL", "FRESCO_BROKER_URL", "FRESCO_STORAGE_URL", "FRESCO_S3_ENDPOINT_URL",
                "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "FRESCO_URL_SECRET"}
    for name in ["api", "migrate", "sweeper", "flower", *worker_services(services)]:
        env = env_of(services[name])
        missing = required - env.keys()
        assert not missing, f"{name} lacks {sorted(missing)}"
        assert env["FRESCO_DATABASE_URL"].endswith("@postgres:5432/fresco")
        assert env["FRESCO_BROKER_URL"] == "redis://redis:6379/0"
    first = env_of(services["api"])
    for name in ["migrate", "sweeper", "flower", *worker_services(services)]:
        env = env_of(services[name])
        assert all(env[k] == first[k] for k in required), f"{name} talks to other services than the API"


def test_secrets_come_from_the_environment(services):
    for name, svc in services.items():
        for key, value in env_of(svc).items():
            if SECRET_KEY.search(key):
                m = WHOLE_REF.match(value)
                assert m, f"{name}: {key} must be a ${{VAR}} reference, not a literal"
                assert not (m.group(2) or "").lstrip(":").startswith("-"), f"{name}: {key} must not default to a literal"
            # URLs with credentials: the password part is a reference too.
            for password in re.findall(r"://[^:/@\s]+:([^@\s]+)@", value):
                assert WHOLE_REF.match(password), f"{name}: {key} embeds a literal password"


def test_flower_and_minio_require_credentials(services):
    # Flower's login comes from its environment (FLOWER_BASIC_AUTH), never its command line.
    assert "basic-auth" not in command_of(services["flower"]) and "basic_auth" not in command_of(services["flower"])
    value = env_of(services["flower"]).get("FLOWER_BASIC_AUTH", "")
    m = re.fullmatch(r"(\$\{[^}]*\}):(\$\{[^}]*\})", value)
    assert m, f"flower must get FLOWER_BASIC_AUTH=${{USER_VAR}}:${{PASSWORD_VAR}}: {value!r}"
    for part in m.groups():
        ref = WHOLE_REF.match(part)
        assert ref and (ref.group(2) or "").startswith(":?"), f"flower basic auth must be ${{VAR:?...}}: {part}"
    env = env_of(services["minio"])
    for key in ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"):
        ref = WHOLE_REF.match(env.get(key, ""))
        assert ref and (ref.group(2) or "").startswith(":?"), f"minio {key} must be a required ${{VAR:?...}}"


def test_env_example_lists_every_variable(compose):
    referenced = {m.group(1) for s in strings(compose) for m in VAR_REF.finditer(s)}
    assert {"POSTGRES_PASSWORD", "FLOWER_PASSWORD", "MINIO_ROOT_PASSWORD", "FRESCO_URL_SECRET"} <= referenced
    listed = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line.strip())
        if m:
            listed[m.group(1)] = m.group(2)
    missing = referenced - listed.keys()
    assert not missing, f"infra/.env.example lacks {sorted(missing)}"
    for key, value in listed.items():
        if SECRET_KEY.search(key):
            assert "change-me" in value, f".env.example: {key} must be a change-me placeholder"


def test_no_bare_dollar_variables(compose):
    # `$VAR` would be interpolated by compose from the host; the container's shell needs `$$VAR`.
    for s in strings(compose):
        bare = re.findall(r"(?<!\$)\$(?![{$])([A-Za-z_]\w*)", s)
        assert not bare, f"unescaped ${bare[0]} in {s!r}: write $${bare[0]} or ${{{bare[0]}}}"


# --- images ------------------------------------------------------------------------------------


def test_dockerfiles_pin_torch():
    pin = torch_pin()
    assert pin == "torch==2.13.0"
    cpu = DOCKERFILE_CPU_WORKER.read_text()
    cuda = DOCKERFILE_CUDA.read_text()
    for path, text in ((DOCKERFILE_CPU_WORKER, cpu), (DOCKERFILE_CUDA, cuda)):
        assert pin in text, f"{path.name} must install {pin}"
        assert re.search(r"pip install -e '\.\[worker[],]", text), f"{path.name} must install the project with the worker extra"
    assert re.search(r"^FROM python:3\.11-slim\b", cpu, re.M)
    assert "--index-url https://download.pytorch.org/whl/cpu" in cpu, "the CPU worker takes torch from the CPU index"
    assert re.search(r"^FROM (nvidia/cuda|pytorch/pytorch):", cuda, re.M)
    # the GPU image also takes torchao for registry matmul_precision = "fp8" (the CPU one has no use for it)
    assert "pip install -e '.[worker,fp8]'" in cuda and "fp8" not in cpu
    assert "whl/cpu" not in cuda, "the CUDA image must not install the CPU torch"


def test_api_image_carries_no_torch():
    text = DOCKERFILE_API.read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert "pip install -e '.[api]'" in text, "the API image installs the project with the api extra"
    installs = " ".join(re.findall(r"^RUN .*pip install.*$", text, re.M))
    for heavy in ("torch", "diffusers", "[worker]", "[dev]"):
        assert heavy not in installs, f"the API image must not install {heavy}"


@pytest.mark.parametrize("dockerfile", [DOCKERFILE_API, DOCKERFILE_CPU_WORKER, DOCKERFILE_CUDA])
def test_images_run_as_non_root(dockerfile):
    users = re.findall(r"^USER\s+(\S+)", dockerfile.read_text(), re.M)
    assert users and users[-1] not in ("root", "0"), f"{dockerfile.name} must run as a non-root user"


@pytest.mark.parametrize("dockerfile", [DOCKERFILE_API, DOCKERFILE_CPU_WORKER, DOCKERFILE_CUDA])
def test_build_context_keeps_secrets_and_venv_out(dockerfile):
    ignore = dockerfile.with_name(dockerfile.name + ".dockerignore")
    assert ignore.exists(), f"{ignore.name} keeps .env and .venv out of the image"
    patterns = set(ignore.read_text().split())
    assert {".env", ".venv", ".git"} <= patterns
