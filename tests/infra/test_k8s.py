"""The Kubernetes manifests (infra/k8s/): valid, complete, and the same farm as compose.

No cluster is needed, nor kubectl or kustomize (used when present):
- every resource kustomization.yaml lists (and the Secret its generator makes from
  secrets.env.example) is validated against the Kubernetes OpenAPI schemas that
  kubernetes-validate ships, for K8S_VERSION, in strict mode (unknown fields fail);
- the KEDA ScaledObject is a custom resource those schemas do not cover: its shape is
  checked here field by field, and its query runs against the migrated test database;
- the kustomization is checked as kustomize would build it: every listed file exists,
  every manifest in the folder is listed, every name a resource refers to exists; where
  kubectl is installed, `kubectl kustomize` builds it and must give the same resources;
- what no schema knows: probes, the grace period, the GPU request, the shared model
  cache, and the same images, commands and settings as docker-compose.yml.
"""
from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from fresco.settings import Settings
from worker.probes import CHECKS, STALE_AFTER_INTERVALS

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "infra" / "k8s"
KUSTOMIZATION = K8S / "kustomization.yaml"
SECRETS_EXAMPLE = K8S / "secrets.env.example"
COMPOSE = ROOT / "docker-compose.yml"

# One recent release that kubernetes-validate ships schemas for (it has 1.37 too; a
# manifest valid on 1.35 is for the versions after it that clusters run today).
K8S_VERSION = "1.35"

# The commands of docs/design.md ("Processes and settings"), per compose service / component.
COMMANDS = {
    "api": ["uvicorn", "api.main:app", "--host", "0.0.0.0", "--port", "8000"],
    "worker": ["celery", "-A", "worker.app", "worker", "-E"],
    # One argument: Flower hands it to tornado, which exits on `--port 5555`.
    "flower": ["celery", "-A", "worker.app", "flower", "--port=5555"],
    "migrate": ["alembic", "upgrade", "head"],
    "sweeper": ["python", "-m", "worker.sweeper"],
    "webhooks": ["celery", "-A", "worker.app", "worker", "-Q", "fresco.webhooks", "-P", "threads", "-c", "8",
                 "-n", "webhooks@%h"],
}
# Settings Kubernetes sets that compose does not, and why (none: Flower's login comes from
# FLOWER_BASIC_AUTH in both).
K8S_ONLY_ENV: dict[str, set[str]] = {}
# Compose values that are the operator's to set (`${VAR:-default}`): the address clients
# see differs between one box and a cluster.
OPERATOR_SET = {"FRESCO_S3_PUBLIC_ENDPOINT_URL", "FRESCO_PUBLIC_URL"}
SECRET_VAR = re.compile(r"\$\{(\w*(?:PASSWORD|SECRET|ROOT_USER|_USER)\w*)")


# --- loading, as kustomize would ------------------------------------------------------------


def kustomization() -> dict:
    return yaml.safe_load(KUSTOMIZATION.read_text())


def env_file(path: Path) -> dict[str, str]:
    """A kustomize env file: KEY=VALUE lines, # comments."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = value
    return out


def generated_secrets() -> list[dict]:
    """The Secrets kustomization.yaml's secretGenerator makes, from the example file."""
    out = []
    for gen in kustomization().get("secretGenerator", []):
        assert gen["envs"] == ["secrets.env"], "the generator reads secrets.env (from secrets.env.example)"
        data = {k: base64.b64encode(v.encode()).decode() for k, v in env_file(SECRETS_EXAMPLE).items()}
        options = gen.get("options", {})
        out.append({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                    "metadata": {"name": gen["name"], "labels": options.get("labels", {})}, "data": data})
    return out


def load_resources() -> list[tuple[str, dict]]:
    docs = []
    for name in kustomization()["resources"]:
        for doc in yaml.safe_load_all((K8S / name).read_text()):
            if doc is not None:
                docs.append((name, doc))
    return docs + [("secretGenerator", s) for s in generated_secrets()]


RESOURCES = load_resources()
BUILTIN = [(f, d) for f, d in RESOURCES if not d["apiVersion"].startswith("keda.sh/")]
CUSTOM = [(f, d) for f, d in RESOURCES if d["apiVersion"].startswith("keda.sh/")]


def of_kind(kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for _, d in RESOURCES if d["kind"] == kind}


def workloads() -> dict[str, dict]:
    """component label -> pod spec, for every Deployment and Job."""
    out = {}
    for _, d in RESOURCES:
        if d["kind"] in ("Deployment", "Job"):
            out[d["metadata"]["labels"]["app.kubernetes.io/component"]] = d["spec"]["template"]["spec"]
    return out


def container(component: str) -> dict:
    (c,) = workloads()[component]["containers"]
    return c


def container_env(c: dict) -> dict[str, object]:
    """Variable -> value (str) or ("secret", key) / ("configmap", name), envFrom included."""
    config = of_kind("ConfigMap")
    env: dict[str, object] = {}
    for source in c.get("envFrom", []):
        ref = source["configMapRef"]["name"]
        env.update(config[ref]["data"])
    for item in c.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = ("secret", ref["name"], ref["key"])
    return env


def compose_services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def compose_command(svc: dict) -> list[str]:
    cmd = svc.get("command")
    return [str(c) for c in cmd] if isinstance(cmd, list) else str(cmd).split()


def compose_env(svc: dict) -> dict[str, str]:
    return {str(k): str(v) for k, v in (svc.get("environment") or {}).items()}


# --- the kustomization ------------------------------------------------------------------------


def test_every_manifest_is_listed_and_every_listed_file_exists():
    listed = kustomization()["resources"]
    assert len(listed) == len(set(listed)), f"listed twice: {listed}"
    missing = [name for name in listed if not (K8S / name).is_file()]
    assert not missing, f"kustomization.yaml lists files that do not exist: {missing}"
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {KUSTOMIZATION.name}
    unlisted = on_disk - set(listed)
    assert not unlisted, f"manifests kustomization.yaml does not apply: {sorted(unlisted)}"


def test_the_secret_comes_from_a_file_nobody_commits():
    assert SECRETS_EXAMPLE.is_file()
    ignored = (ROOT / ".gitignore").read_text().split()
    assert "infra/k8s/secrets.env" in ignored, ".gitignore must keep infra/k8s/secrets.env out of git"
    for ignore in ("Dockerfile.dockerignore", "Dockerfile.cuda.dockerignore"):
        assert "infra/k8s/secrets.env" in (ROOT / "infra" / ignore).read_text().split(), (
            f"infra/{ignore} must keep infra/k8s/secrets.env out of the image")
    values = env_file(SECRETS_EXAMPLE)
    for key, value in values.items():
        assert "change-me" in value, f"secrets.env.example: {key} must be a change-me placeholder"
    # KEDA's driver reads the same URL as the farm: the plain form both accept.
    assert values["FRESCO_DATABASE_URL"].startswith("postgresql://")


def test_names_refer_to_resources_that_exist():
    secrets = {s["metadata"]["name"]: s for s in generated_secrets()}
    configmaps, claims = of_kind("ConfigMap"), of_kind("PersistentVolumeClaim")
    used_keys = set()
    for component, pod in workloads().items():
        for c in pod["containers"]:
            for source in c.get("envFrom", []):
                assert source["configMapRef"]["name"] in configmaps, (component, source)
            for item in c.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] in secrets, f"{component}: no Secret {ref['name']}"
                    data = secrets[ref["name"]]["data"]
                    assert ref["key"] in data, f"{component}: {ref['key']} is not in secrets.env.example"
                    used_keys.add(ref["key"])
            mounted = {m["name"] for m in c.get("volumeMounts", [])}
            assert mounted <= {v["name"] for v in pod.get("volumes", [])}, f"{component}: mounts an undeclared volume"
        for volume in pod.get("volumes", []):
            claim = volume.get("persistentVolumeClaim")
            if claim:
                assert claim["claimName"] in claims, f"{component}: no PersistentVolumeClaim {claim['claimName']}"
    unused = set(env_file(SECRETS_EXAMPLE)) - used_keys
    assert not unused, f"secrets.env.example holds keys no pod reads: {sorted(unused)}"


def test_selectors_match_their_pods():
    deployments = of_kind("Deployment")
    for name, d in deployments.items():
        labels = d["spec"]["template"]["metadata"]["labels"]
        selector = d["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items(), f"{name}: selector {selector} does not match its pods"
    for name, svc in of_kind("Service").items():
        selector = svc["spec"]["selector"].items()
        targets = [d for d in deployments.values() if selector <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert len(targets) == 1, f"Service {name} selects {len(targets)} Deployments"
        (c,) = targets[0]["spec"]["template"]["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in ports, f"Service {name}: no container port named {port['targetPort']}"
            assert port["port"] == ports[port["targetPort"]], f"Service {name}: same port as compose publishes"


@pytest.mark.skipif(shutil.which("kubectl") is None,
                    reason="kubectl is not installed: the kustomization is checked file by file above")
def test_kustomize_builds_what_these_tests_check(tmp_path):
    """`kubectl kustomize` (kustomize built in, offline) builds the same resources these
    tests load, in the fresco namespace, and refuses to build without secrets.env."""
    folder = tmp_path / "k8s"
    shutil.copytree(K8S, folder, ignore=shutil.ignore_patterns("secrets.env"))
    refused = subprocess.run(["kubectl", "kustomize", str(folder)], capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "secrets.env" in refused.stderr, "must refuse to build without the secrets"
    shutil.copy(SECRETS_EXAMPLE, folder / "secrets.env")
    built = subprocess.run(["kubectl", "kustomize", str(folder)], capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    docs = [d for d in yaml.safe_load_all(built.stdout) if d]
    assert sorted((d["kind"], d["metadata"]["name"]) for d in docs) == sorted(
        (d["kind"], d["metadata"]["name"]) for _, d in RESOURCES)
    for d in docs:
        if d["kind"] != "Namespace":
            assert d["metadata"]["namespace"] == "fresco", d["metadata"]
        if not d["apiVersion"].startswith("keda.sh/"):
            kubernetes_validate.validate(d, K8S_VERSION, strict=True)
    (secret,) = [d for d in docs if d["kind"] == "Secret"]
    assert secret == {**secret, "data": generated_secrets()[0]["data"]}, "the Secret these tests validate"


# --- schemas ----------------------------------------------------------------------------------


@pytest.mark.parametrize("source, doc", BUILTIN, ids=[f"{d['kind']}/{d['metadata']['name']}" for _, d in BUILTIN])
def test_manifest_matches_the_kubernetes_schema(source, doc):
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        path = "/".join(str(p) for p in e.path)
        pytest.fail(f"{source}: {doc['kind']}/{doc['metadata']['name']} at {path}: {e.message}")


def test_every_resource_is_validated_one_way_or_the_other():
    assert {d["kind"] for _, d in BUILTIN} >= {"Namespace", "ConfigMap", "Secret", "PersistentVolumeClaim", "Job",
                                               "Deployment", "Service"}
    assert [d["kind"] for _, d in CUSTOM] == ["ScaledObject"], "a new custom resource needs a shape check here"


# --- KEDA ---------------------------------------------------------------------------------------


def test_scaledobject_shape():
    (scaled,) = of_kind("ScaledObject").values()
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    assert set(spec) <= {"scaleTargetRef", "minReplicaCount", "maxReplicaCount", "pollingInterval",
                         "cooldownPeriod", "idleReplicaCount", "fallback", "advanced", "triggers"}, sorted(spec)
    target = spec["scaleTargetRef"]
    assert target.get("kind", "Deployment") == "Deployment"
    assert target["name"] in of_kind("Deployment"), f"scaleTargetRef {target['name']} is not a Deployment here"
    assert target["name"] == "fresco-worker"
    for key in ("minReplicaCount", "maxReplicaCount", "pollingInterval", "cooldownPeriod"):
        assert isinstance(spec[key], int) and spec[key] >= 0, key
    assert spec["minReplicaCount"] < spec["maxReplicaCount"]
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= 300, "a new worker pays a model load: scale down slowly"

    (trigger,) = spec["triggers"]
    assert trigger["type"] == "postgresql"
    meta = trigger["metadata"]
    # KEDA's trigger metadata is a map of strings: a bare number is rejected by the CRD.
    assert all(isinstance(v, str) for v in meta.values()), meta
    assert {"query", "targetQueryValue", "connectionFromEnv"} <= meta.keys()
    assert float(meta["targetQueryValue"]) > 0 and float(meta.get("activationTargetQueryValue", "0")) >= 0
    # connectionFromEnv names a variable of the target's container; it comes from the Secret.
    env = container_env(container("worker"))
    assert env.get(meta["connectionFromEnv"]) == ("secret", "fresco-secrets", "FRESCO_DATABASE_URL")


def test_scaledobject_counts_queued_and_running_jobs(farm):
    """KEDA's query, run on the migrated schema, counts the jobs a submission queues."""
    from sqlalchemy import text

    from db.session import session_scope
    from support.farm import cancel_unfinished_jobs

    (scaled,) = of_kind("ScaledObject").values()
    query = scaled["spec"]["triggers"][0]["metadata"]["query"]

    def count() -> int:
        with session_scope() as s:
            value = s.execute(text(query)).scalar_one()
        assert isinstance(value, int), f"KEDA needs a number, the query returns {value!r}"
        return value

    # no worker: the jobs stay queued
    try:
        farm.start_api()
        before = count()
        batch = farm.submit([{"prompt": f"scale {i}"} for i in range(3)], defaults={"model": "tiny-sd", "steps": 2})
        assert count() == before + 3
        first, second, _ = farm.jobs(batch["id"])
        # A running job still needs its worker (no worker here: the state is set by hand).
        with session_scope() as s:
            s.execute(text("UPDATE jobs SET status = 'running' WHERE id = :id"), {"id": first["id"]})
        assert count() == before + 3
        assert farm.http.post(f"/v1/jobs/{second['id']}/cancel").status_code == 200
        assert count() == before + 2
    finally:
        farm.close()
        cancel_unfinished_jobs(farm.db)
    assert count() == before


def test_scaledobject_says_why_postgres_and_not_redis():
    text = (K8S / "worker-scaledobject.yaml").read_text()
    assert "Why Postgres and not the length of the Redis list" in text


# --- the same farm as compose ----------------------------------------------------------------------


@pytest.mark.parametrize("component", sorted(COMMANDS))
def test_same_command_and_image_as_compose(component):
    c = container(component)
    assert c["command"] == COMMANDS[component], f"{component} must run `{' '.join(COMMANDS[component])}` (docs/design.md)"
    assert "args" not in c, f"{component}: arguments beyond the design command"
    svc = compose_services()[component]
    cmd = compose_command(svc)
    assert cmd[:len(COMMANDS[component])] == COMMANDS[component], f"compose {component} runs {cmd}"
    extra = cmd[len(COMMANDS[component]):]
    # compose once passed Flower's login as an argument; both now take it from FLOWER_BASIC_AUTH.
    assert all(a.startswith("--basic-auth=") for a in extra), f"compose {component} has arguments k8s lacks: {extra}"
    if extra:
        assert "FLOWER_BASIC_AUTH" in container_env(c)
    assert c["image"] == svc["image"], f"{component}: image {c['image']}, compose builds {svc['image']}"


@pytest.mark.parametrize("component", sorted(COMMANDS))
def test_same_settings_as_compose(component):
    k8s = container_env(container(component))
    compose = compose_env(compose_services()[component])
    missing = compose.keys() - k8s.keys()
    assert not missing, f"{component}: compose sets {sorted(missing)}, k8s does not"
    extra = k8s.keys() - compose.keys() - K8S_ONLY_ENV.get(component, set())
    assert not extra, f"{component}: k8s sets {sorted(extra)}, compose does not"
    for key, value in compose.items():
        if SECRET_VAR.search(value):  # a password, key or secret: from the Secret, never the ConfigMap
            assert isinstance(k8s[key], tuple) and k8s[key][0] == "secret", f"{component}: {key} must come from a Secret"
        elif "${" not in value and key not in OPERATOR_SET:
            assert k8s[key] == value, f"{component}: {key} is {k8s[key]!r} here, {value!r} in compose"
        elif (m := re.fullmatch(r"\$\{\w+:-([^}]*)\}", value)) and key not in OPERATOR_SET:
            assert k8s[key] == m.group(1), f"{component}: {key} is {k8s[key]!r}, compose's default is {m.group(1)!r}"
    fields = {f"FRESCO_{name.upper()}" for name in Settings.model_fields}
    unknown = {k for k in k8s if k.startswith("FRESCO_")} - fields
    assert not unknown, f"{component}: FRESCO_* variables fresco.settings ignores: {sorted(unknown)}"


# --- what no schema checks ------------------------------------------------------------------------


def probe_command(probe: dict) -> list[str]:
    return probe["exec"]["command"]


def test_worker_requests_one_gpu_and_tolerates_gpu_nodes():
    pod = workloads()["worker"]
    c = container("worker")
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1, "one GPU per worker pod"
    assert c["resources"].get("requests", {}).get("nvidia.com/gpu", 1) == 1
    assert any(t["key"] == "nvidia.com/gpu" for t in pod.get("tolerations", [])), "GPU nodes are usually tainted"
    assert container_env(c)["FRESCO_DEVICE"] == "cuda"
    for component in set(workloads()) - {"worker"}:
        assert "nvidia.com/gpu" not in str(container(component).get("resources")), f"{component} holds no GPU"


def test_worker_drains_before_the_kubelet_kills_it():
    from worker.signals import BACKSTOP_S

    pod = workloads()["worker"]
    grace = float(container_env(container("worker"))["FRESCO_SHUTDOWN_GRACE_S"])
    period = pod["terminationGracePeriodSeconds"]
    # The unit finishes or is handed back by FRESCO_SHUTDOWN_GRACE_S (+ the SIGALRM
    # backstop), then the hand-back itself needs a few seconds of Postgres and Redis.
    assert period >= grace + BACKSTOP_S + 10, f"terminationGracePeriodSeconds {period} vs FRESCO_SHUTDOWN_GRACE_S {grace}"
    assert period == compose_stop_grace(), "the same grace as compose's stop_grace_period"


def compose_stop_grace() -> int:
    text = str(compose_services()["worker"]["stop_grace_period"])
    m = re.fullmatch(r"(\d+)s", text)
    assert m, f"stop_grace_period {text!r}"
    return int(m.group(1))


def test_worker_probes_readiness_on_preload_and_liveness_on_consuming():
    c = container("worker")
    env = container_env(c)
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in workloads()["worker"]["volumes"]}
    for key in ("FRESCO_READY_FILE", "FRESCO_LIVE_FILE"):
        folder = str(Path(env[key]).parent)
        assert folder in mounts and "emptyDir" in volumes[mounts[folder]], f"{key} must be on a pod-local emptyDir"
    assert probe_command(c["readinessProbe"]) == ["python", "-m", "worker.probes", "ready"]
    assert probe_command(c["livenessProbe"]) == ["python", "-m", "worker.probes", "live"]
    assert probe_command(c["startupProbe"]) == ["python", "-m", "worker.probes", "live"]
    interval = Settings.model_fields["live_interval_s"].default
    live = c["livenessProbe"]
    # Stale after STALE_AFTER_INTERVALS touches; restarted only after several failed probes,
    # so a Redis restart (the consumer reconnects by itself) does not cost a warm pod.
    window = live["periodSeconds"] * live["failureThreshold"]
    assert window >= 120, f"liveness gives up after {window} s without consuming: too eager"
    assert STALE_AFTER_INTERVALS * interval < window
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert c[probe].get("timeoutSeconds", 1) >= 5, f"{probe}: a Python probe needs more than 1 s on a busy node"


def test_every_long_running_container_has_probes():
    from api.main import app as api_app
    from flower.urls import handlers as flower_handlers

    api_paths = set(api_app.openapi()["paths"])
    flower_paths = {h[0] if isinstance(h, tuple) else h.regex.pattern.rstrip("$") for h in flower_handlers}
    for component, pod in workloads().items():
        if component == "migrate":
            assert pod["restartPolicy"] in ("Never", "OnFailure")
            continue
        c = container(component)
        assert "livenessProbe" in c, f"{component} has no liveness probe"
        for name in ("livenessProbe", "readinessProbe", "startupProbe"):
            probe = c.get(name)
            if probe is None:
                continue
            if "httpGet" in probe:
                paths = api_paths if component == "api" else flower_paths
                assert probe["httpGet"]["path"] in paths, f"{component} {name}: no route {probe['httpGet']['path']}"
            else:
                cmd = probe_command(probe)
                assert cmd[:3] == ["python", "-m", "worker.probes"] and set(cmd[3:]) <= CHECKS.keys(), cmd
                assert "FRESCO_LIVE_FILE" in container_env(c) or "live" not in cmd, f"{component}: live without a file"
    for component in ("api", "flower"):
        assert "readinessProbe" in container(component), f"{component}'s Service needs a readiness probe"


def test_workers_share_one_model_cache():
    c = container("worker")
    env = container_env(c)
    assert env["FRESCO_HF_CACHE_DIR"] == env["HF_HOME"]
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volume = {v["name"]: v for v in workloads()["worker"]["volumes"]}[mounts[env["FRESCO_HF_CACHE_DIR"]]]
    claim = of_kind("PersistentVolumeClaim")[volume["persistentVolumeClaim"]["claimName"]]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"], "pods on several nodes mount the cache at once"


def test_pods_run_as_the_images_user():
    for component, pod in workloads().items():
        ctx = pod["securityContext"]
        assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] == 10001, component
        for c in pod["containers"]:
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, component
    for dockerfile in ("Dockerfile", "Dockerfile.cuda"):
        assert "--uid 10001 fresco" in (ROOT / "infra" / dockerfile).read_text()


def test_flower_takes_its_login_from_the_environment_and_answers_healthchecks_without_it(tmp_path):
    """What the cluster relies on: FLOWER_BASIC_AUTH from the Secret guards Flower, and the
    probes' /healthcheck answers without it. Flower runs here with the manifest's command."""
    import os

    import httpx
    from support.procs import BIN, Proc, free_port
    from support.waiting import wait_until

    port = free_port()
    command = container("flower")["command"]
    assert command[-1] == "--port=5555"
    env = {**os.environ, "FLOWER_BASIC_AUTH": "ops:s3cret", "FLOWER_ADDRESS": "127.0.0.1"}
    flower = Proc("flower", [str(BIN / command[0]), *command[1:-1], f"--port={port}"], env, tmp_path / "flower.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(f"{url}/healthcheck", timeout=2).status_code == 200, 60,
                   "Flower's /healthcheck to answer without a login")
        assert httpx.get(f"{url}/api/tasks", timeout=5).status_code == 401
        assert httpx.get(f"{url}/api/tasks", auth=("ops", "s3cret"), timeout=5).status_code == 200
    finally:
        flower.stop(timeout=10)
