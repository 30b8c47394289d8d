"""Every setting of the farm, read from the environment once (``FRESCO_*``).

Nothing else in the code base reads ``os.environ``: the API, the workers, the sweeper
and the CLI all take their configuration from :func:`get_settings`, the SDK and the
client commands from :func:`get_client_settings`. Each default works on a developer
machine with Postgres and Redis on loopback.

Values are checked when the settings load, not on first use: a URL with the wrong
scheme, an unknown device or a malformed number stops the process at startup with a
:class:`SettingsError` that names the variable. This module imports only pydantic and
pydantic-settings, so the client (the base install) can use it.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Annotated, Literal, Self
from urllib.parse import urlsplit

from pydantic import (AfterValidator, AnyHttpUrl, BeforeValidator, Field, SecretStr, TypeAdapter, ValidationError,
                      field_validator, model_validator)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIX = "FRESCO_"

class SettingsError(ValueError):
    """A ``FRESCO_*`` variable holds a value the farm cannot run with; the message names each one."""


_HTTP_URL = TypeAdapter(AnyHttpUrl)


def _http_url(value: str) -> str:
    # Checked by pydantic's URL type, kept as the string given: AnyHttpUrl would add a
    # trailing "/" to a bare host, and these strings are joined with paths.
    _HTTP_URL.validate_python(value)
    return value


def _comma_list(value: object) -> object:
    """``"a, b,,c"`` (the environment's form) -> ``["a", "b", "c"]``; a list passes through."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


HttpUrl = Annotated[str, AfterValidator(_http_url)]
# A list read from the environment as comma-separated names (NoDecode: not as JSON).
CommaList = Annotated[list[str], NoDecode, BeforeValidator(_comma_list)]


def _scheme(url: str) -> str:
    # Only the scheme goes into error messages: database and broker URLs carry passwords.
    return urlsplit(url).scheme or "(no scheme)"


def _postgres_url(value: str) -> str:
    # A plain postgresql:// URL is accepted; SQLAlchemy gets the psycopg 3 driver.
    for prefix in ("postgresql://", "postgres://"):
        if value.startswith(prefix):
            return "postgresql+psycopg://" + value[len(prefix):]
    if not value.startswith("postgresql+psycopg://"):
        raise ValueError(f"must be a postgresql:// URL (Postgres is the only database the farm runs on), "
                         f"not a {_scheme(value)!r} URL")
    return value


def _redis_url(value: str) -> str:
    if _scheme(value) not in ("redis", "rediss"):
        raise ValueError(f"must be a redis:// or rediss:// URL (the broker is Redis), not a {_scheme(value)!r} URL")
    return value


def _storage_url(value: str) -> str:
    url = urlsplit(value)
    if url.scheme == "file" and url.path:
        return value
    if url.scheme == "s3" and url.netloc:
        return value
    raise ValueError(f"must be s3://bucket/prefix or file:///path, not {value!r}")


class _FrescoSettings(BaseSettings):
    # hide_input_in_errors: a rejected database URL must not print its password.
    # env_ignore_empty: `FRESCO_PUBLIC_URL=` (as an .env file writes "unset") is the default.
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", hide_input_in_errors=True,
                                      env_ignore_empty=True)

    @classmethod
    def load(cls) -> Self:
        """Read the environment; a bad value is a :class:`SettingsError` naming its variable."""
        try:
            return cls()
        except ValidationError as e:
            lines = []
            for err in e.errors():
                name = ENV_PREFIX + str(err["loc"][0]).upper() if err["loc"] else cls.__name__
                lines.append(f"{name}: {err['msg'].removeprefix('Value error, ')}")
            raise SettingsError("; ".join(lines)) from None


class ClientSettings(_FrescoSettings):
    """What the SDK and the CLI's client commands read: where the API is and the key."""

    api_url: HttpUrl = "http://127.0.0.1:8000"
    api_key: SecretStr | None = None


class Settings(_FrescoSettings):
    """What the API, the workers, the sweeper and the admin commands read."""

    # --- services -----------------------------------------------------------------
    database_url: Annotated[str, AfterValidator(_postgres_url)] = "postgresql://postgres@127.0.0.1:5432/fresco"
    broker_url: Annotated[str, AfterValidator(_redis_url)] = "redis://127.0.0.1:6379/0"
    storage_url: Annotated[str, AfterValidator(_storage_url)] = f"file://{REPO_ROOT / 'var' / 'store'}"
    s3_endpoint_url: HttpUrl | None = None
    # Endpoint that presigned result URLs name, when clients reach the object store by
    # another address than the workers do (compose: http://minio:9000 inside, the host's
    # address outside). Default: s3_endpoint_url.
    s3_public_endpoint_url: HttpUrl | None = None
    s3_region: str = "us-east-1"
    models: Path = REPO_ROOT / "models" / "registry.toml"

    # --- API ------------------------------------------------------------------------
    # The API's own address (the client reads FRESCO_API_URL too: ClientSettings).
    api_url: HttpUrl = "http://127.0.0.1:8000"
    # Public base URL used to build absolute links to files the API serves itself
    # (file:// storage). Defaults to api_url.
    public_url: HttpUrl | None = None
    # HMAC key for the file URLs the API signs (file:// storage). Unset (or empty), the API
    # makes 32 random bytes once and keeps them in Postgres, so every API process agrees and
    # nobody can derive them from the configuration (api/url_secret.py). Set, it wins.
    url_secret: SecretStr | None = None
    result_url_ttl_s: int = 3600
    max_body_bytes: int = 64 * 1024 * 1024
    # How long a gallery sign-in (/ui/, api/ui/session.py) lasts before the key is asked again.
    ui_session_ttl_s: int = Field(default=12 * 3600, gt=0)
    max_batch_items: int = 100_000
    # How long POST /openai/v1/images/generations and /edits wait in the request for their
    # images (the OpenAI API has no asynchronous form); past it the unfinished jobs are
    # canceled and the answer is a 504 (api/openai_compat/images.py).
    openai_wait_s: float = Field(default=300.0, gt=0, le=3600)
    # Largest LoRA file POST /v1/adapters accepts (fresco/adapters.py); 413 above it (and
    # above max_body_bytes, which every request is held to).
    adapter_max_bytes: int = Field(default=64 * 1024 * 1024, gt=0)

    # --- delivery ---------------------------------------------------------------------
    lease_s: float = 60.0
    heartbeat_s: float = 10.0
    max_attempts: int = 3
    sweep_interval_s: float = 5.0
    # A queued job must have waited this long without a message before the sweeper
    # publishes for it, so it does not race the API's own publish after commit.
    republish_after_s: float = 10.0
    # Retention: finished jobs (succeeded, failed, canceled) older than this are deleted
    # with their stored images by the sweeper, a chunk of rows per transaction; 0 keeps
    # them forever. A farm rendering millions a month keeps a small hot table this way.
    retention_days: float = Field(default=30.0, ge=0)
    retention_chunk: int = Field(default=500, ge=1, le=10_000)
    # Dynamic batching: how long a worker waits for more compatible jobs to fill a batch.
    batch_wait_ms: int = 30
    # Broker visibility timeout: only a backstop; the lease is the recovery path.
    visibility_timeout_s: int = 6 * 3600
    shutdown_grace_s: float = 30.0
    embedded_sweeper: bool = True  # run the sweeper in each worker's main process
    # How often a worker's main process checks that the render processes holding leases
    # are alive; a dead one's jobs go back to the queue then, not after lease_s. The same
    # pass requeues the jobs of workers whose liveness beat went stale (worker/reaper.py).
    dead_child_check_s: float = Field(default=1.0, gt=0)
    # Liveness, apart from the lease (worker/liveness.py): each worker's main process,
    # which never renders, beats its row in `workers` this often; a worker not heard from
    # for liveness_timeout_s is dead and its running jobs go back to the queue, however
    # long their lease. The lease (lease_s) stays the backstop for a render process that
    # hangs while its worker lives, and is never cut short for a live, busy worker.
    liveness_beat_s: float = Field(default=2.0, gt=0)
    liveness_timeout_s: float = Field(default=10.0, gt=0)
    # Longest wait between a worker's attempts to reconnect to the broker.
    broker_reconnect_max_s: float = Field(default=2.0, gt=0)
    # Transient faults (storage, database, broker) are retried this many times in-process.
    transient_retries: int = 5
    transient_backoff_s: float = 0.5
    # Task deadlines: base + per-unit-of-work (fresco.dispatch.time_limits).
    deadline_base_s: float = 120.0
    deadline_per_megapixel_step_s: float = 2.0

    # --- fair share and quotas (docs/design.md, "Fair share and quotas") ---------------
    # Defaults for every tenant; `fresco tenants set NAME ...` overrides them per tenant.
    # A tenant's share of claims among tenants waiting at the same priority, relative to
    # the others' weights (2 gets twice the jobs of 1).
    tenant_weight: float = Field(default=1.0, gt=0)
    # Queued jobs a tenant may hold; a submission that would pass it is a 429 and creates
    # nothing. 0: no limit. Twice FRESCO_MAX_BATCH_ITEMS' default, so one full batch fits.
    tenant_max_queued: int = Field(default=200_000, ge=0)
    # Submissions (requests: POST /v1/jobs, POST /v1/batches, whatever their size) a
    # tenant may make per clock minute; more is a 429 until the minute ends. 0: no limit.
    tenant_submits_per_min: int = Field(default=600, ge=0)
    # The largest fraction of the farm's running jobs a tenant may hold while other
    # tenants wait for the same kind of work (signature); 1: no cap.
    tenant_max_running_share: float = Field(default=1.0, gt=0, le=1)
    # Aging: a queued job's priority counts one level higher for every this many seconds
    # it has waited (up to the highest priority waiting), so low priority is never starved
    # by a stream of high priority. 0: no aging (strict priority).
    priority_aging_s: float = Field(default=300.0, ge=0)

    # --- webhooks (worker/webhooks.py) ---------------------------------------------------
    # Hosts, addresses or CIDRs a webhook may target although they resolve to loopback,
    # link-local, private or reserved addresses (refused otherwise). Env: comma-separated.
    webhook_allowlist: CommaList = []
    # How long a delivery is retried (from its event) before it ends `failed`.
    webhook_retry_for_s: float = Field(default=86400.0, gt=0)
    # First retry after about this long; doubled each attempt (with jitter), at most an hour.
    webhook_backoff_s: float = Field(default=5.0, gt=0)
    # Connect + read timeout of one POST to a receiver.
    webhook_timeout_s: float = Field(default=10.0, gt=0)

    # --- worker -----------------------------------------------------------------------
    device: Literal["auto", "cpu", "cuda"] = "auto"
    torch_threads: int | None = None  # set: pinned (autotune leaves it); unset: tuned, else all cores
    # Render processes per worker (Celery's pool). Set: pinned; unset: 1, or what the
    # preload tuning measured best on a CPU (worker/autotune.py).
    render_processes: int | None = Field(default=None, ge=1)
    # Measure and pick, at preload, the batch size (CUDA) or threads and render processes
    # (CPU) for each FRESCO_PRELOAD model (worker/autotune.py). Off: the registry's batch,
    # FRESCO_TORCH_THREADS (or every core) and FRESCO_RENDER_PROCESSES (or 1).
    autotune: bool = True
    preload: CommaList = []  # model ids loaded before the worker consumes; env: comma-separated
    cache_budget_bytes: int | None = None  # default: a fraction of device memory
    # Bytes of LoRA weights a render process keeps applied to its warm models
    # (worker/adapters.py); the least recently used adapter is unloaded past it.
    adapter_cache_bytes: int = Field(default=512 * 1024 * 1024, gt=0)
    queues: CommaList = []  # env: comma-separated; empty: every queue the registry uses
    progress_interval_s: float = 0.5
    # torch.compile the UNet on CUDA, one graph per batch shape, warmed at preload for
    # each preloaded model's default shape (worker/device.py). Never on a CPU.
    compile: bool = False
    # torch.compile's mode: "default" compiles in about a minute per shape;
    # "max-autotune-no-cudagraphs" searches kernels for many minutes.
    compile_mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = "default"
    # Inductor's compile cache (TORCHINDUCTOR_CACHE_DIR): on the model-cache volume, so a
    # restarted worker loads compiled kernels instead of compiling again. Default:
    # <FRESCO_HF_CACHE_DIR>/inductor when that is set, else inductor's own (/tmp).
    compile_cache_dir: Path | None = None
    # What FRESCO_COMPILE compiles of the UNet: "unet" (the whole module, one graph per
    # shape) or "blocks" (diffusers' regional compile: each repeated transformer block
    # compiled once and reused; resnets stay eager). H200, SD 1.5, B=16 (bench/README.md):
    # unet 1.40x eager, start to first image 69 s cold / 27 s cached; blocks 1.17x,
    # 46 s / 22 s.
    compile_scope: Literal["unet", "blocks"] = "unet"
    # FRESCO_COMPILE also compiles the VAE decoder (one graph per batch shape): it halved
    # the decode of 16 latents on an H200 (0.210 -> 0.106 s, ~4% of a call).
    compile_vae: bool = True
    # Store and record call N−1's images on a thread while call N samples
    # (worker/store_queue.py): auto = on CUDA only; on, off.
    pipeline_stores: Literal["auto", "on", "off"] = "auto"
    # Processes that encode each image and its thumbnail beside the render loop
    # (worker/encode_pool.py). Unset: min(4, cores / 2) on CUDA, where an encoder thread
    # would take the interpreter lock from the sampling loop; 0 (in the store step) on a
    # CPU, where the cores are sampling. 0: in the store step.
    encode_processes: int | None = Field(default=None, ge=0, le=64)
    # Pad every pipeline call to the model's batch size, so a seed gives bit-identical
    # pixels alone or in any batch. Default: on for CPU (where determinism is promised
    # exactly); on CUDA for the models FRESCO_COMPILE compiles (UNet families: a short
    # unit then reuses the compiled graph instead of compiling its own shape), else off
    # (fp16 kernels differ by 1/255 anyway; bench/README.md).
    pad_batches: bool | None = None
    hf_cache_dir: Path | None = None  # shared hub download cache (compose volume)
    # Written by the render process once every FRESCO_PRELOAD model loaded; removed when
    # the worker stops consuming (readiness: compose healthcheck, k8s readinessProbe).
    ready_file: Path | None = None
    # Touched every live_interval_s by the worker's main process while its consumer runs
    # (liveness probe: `python -m worker.probes live`, worker/probes.py).
    live_file: Path | None = None
    live_interval_s: float = Field(default=5.0, gt=0)
    # Port of the worker's Prometheus /metrics (served by its main process for every
    # render process). Unset: the worker serves no metrics.
    metrics_port: int | None = Field(default=None, gt=0, lt=65536)
    # prometheus-client's multiprocess directory: each render process writes its samples
    # there, the main process reads them all. Wiped when the worker starts. Default: a
    # folder per worker port under the temporary directory (metrics_path).
    metrics_dir: Path | None = None

    # --- logs -------------------------------------------------------------------------
    # json: one JSON object a line (for machines); text: aligned key=value lines (people).
    log_format: Literal["json", "text"] = "json"

    @model_validator(mode="after")
    def _timeout_outlasts_beats(self) -> Self:
        # A timeout of fewer than two beats would declare a live worker dead on one late beat.
        if self.liveness_timeout_s < 2 * self.liveness_beat_s:
            raise ValueError(f"FRESCO_LIVENESS_TIMEOUT_S ({self.liveness_timeout_s:g}) must be at least twice "
                             f"FRESCO_LIVENESS_BEAT_S ({self.liveness_beat_s:g})")
        return self

    @field_validator("url_secret")
    @classmethod
    def _empty_is_unset(cls, v: SecretStr | None) -> SecretStr | None:
        # An empty key, however given, must not become an empty HMAC key.
        return None if v is not None and not v.get_secret_value() else v

    @property
    def libpq_url(self) -> str:
        """The database URL without SQLAlchemy's driver suffix (for psql, psycopg)."""
        return self.database_url.replace("postgresql+psycopg://", "postgresql://", 1)

    @property
    def metrics_path(self) -> Path:
        """The worker's multiprocess metrics directory (FRESCO_METRICS_DIR or its default)."""
        import tempfile

        return self.metrics_dir or Path(tempfile.gettempdir()) / f"fresco-metrics-{self.metrics_port}"

    @property
    def base_url(self) -> str:
        return (self.public_url or self.api_url).rstrip("/")


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.load()


@functools.lru_cache(maxsize=1)
def get_client_settings() -> ClientSettings:
    return ClientSettings.load()


def cpu_count() -> int:
    """Cores this process may run on (cgroup/affinity aware), for torch's thread pool."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1
