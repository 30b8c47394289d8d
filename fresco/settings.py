"""Every setting of the farm, read from the environment once (``FRESCO_*``).

Nothing else in the code base reads ``os.environ``: the API, the workers, the sweeper
and the CLI all take their configuration from :func:`get_settings`. Each default works
on a developer machine with Postgres and Redis on loopback.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent

class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FRESCO_", extra="ignore")

    # --- services -----------------------------------------------------------------
    database_url: str = "postgresql://postgres@127.0.0.1:5432/fresco"
    broker_url: str = "redis://127.0.0.1:6379/0"
    storage_url: str = f"file://{REPO_ROOT / 'var' / 'store'}"
    s3_endpoint_url: str | None = None
    # Endpoint that presigned result URLs name, when clients reach the object store by
    # another address than the workers do (compose: http://minio:9000 inside, the host's
    # address outside). Default: s3_endpoint_url.
    s3_public_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    models: Path = REPO_ROOT / "models" / "registry.toml"

    # --- API ------------------------------------------------------------------------
    api_url: str = "http://127.0.0.1:8000"
    api_key: str | None = None
    # Public base URL used to build absolute links to files the API serves itself
    # (file:// storage). Defaults to api_url.
    public_url: str | None = None
    # HMAC key for the file URLs the API signs (file:// storage). Unset, the API makes 32
    # random bytes once and keeps them in Postgres, so every API process agrees and nobody
    # can derive them from the configuration (api/url_secret.py). Set, it wins.
    url_secret: SecretStr | None = None
    result_url_ttl_s: int = 3600
    max_body_bytes: int = 64 * 1024 * 1024
    max_batch_items: int = 100_000
    ingest_chunk_rows: int = 5_000

    # --- delivery ---------------------------------------------------------------------
    lease_s: float = 60.0
    heartbeat_s: float = 10.0
    max_attempts: int = 3
    sweep_interval_s: float = 5.0
    # A queued job must have waited this long without a message before the sweeper
    # publishes for it, so it does not race the API's own publish after commit.
    republish_after_s: float = 10.0
    # Dynamic batching: how long a worker waits for more compatible jobs to fill a batch.
    batch_wait_ms: int = 30
    # Broker visibility timeout: only a backstop; the lease is the recovery path.
    visibility_timeout_s: int = 6 * 3600
    shutdown_grace_s: float = 30.0
    embedded_sweeper: bool = True  # run the sweeper in each worker's main process
    # How often a worker's main process checks that the render processes holding leases
    # are alive; a dead one's jobs go back to the queue then, not after lease_s.
    dead_child_check_s: float = Field(default=1.0, gt=0)
    # Longest wait between a worker's attempts to reconnect to the broker.
    broker_reconnect_max_s: float = Field(default=2.0, gt=0)
    # Transient faults (storage, database, broker) are retried this many times in-process.
    transient_retries: int = 5
    transient_backoff_s: float = 0.5
    # Task deadlines: base + per-unit-of-work, see worker.deadlines.
    deadline_base_s: float = 120.0
    deadline_per_megapixel_step_s: float = 2.0

    # --- worker -----------------------------------------------------------------------
    device: str = "auto"  # auto | cpu | cuda
    torch_threads: int | None = None
    preload: str = ""  # comma-separated model ids loaded before the worker consumes
    cache_budget_bytes: int | None = None  # default: a fraction of device memory
    queues: str = ""  # comma-separated; empty: every queue the registry uses
    progress_interval_s: float = 0.5
    compile: bool = False  # torch.compile the UNet on CUDA
    # Pad every pipeline call to the model's batch size, so a seed gives bit-identical
    # pixels alone or in any batch. Default: on for CPU (where determinism is promised
    # exactly), off for CUDA (where fp16 kernels differ by 1/255 anyway; bench/README.md).
    pad_batches: bool | None = None
    channels_last: bool = False  # channels_last UNet on CUDA (slower for SD 1.5 on an H100)
    hf_cache_dir: Path | None = None  # shared hub download cache (compose volume)
    # Written by the render process once every FRESCO_PRELOAD model loaded; removed when
    # the worker stops consuming (readiness: compose healthcheck, k8s readinessProbe).
    ready_file: Path | None = None
    # Touched every live_interval_s by the worker's main process while its consumer runs
    # (liveness: `python -m worker.liveness`, worker/liveness.py).
    live_file: Path | None = None
    live_interval_s: float = Field(default=5.0, gt=0)

    @field_validator("database_url")
    @classmethod
    def _pick_driver(cls, v: str) -> str:
        # A plain postgresql:// URL is accepted; SQLAlchemy gets the psycopg 3 driver.
        for prefix in ("postgresql://", "postgres://"):
            if v.startswith(prefix):
                return "postgresql+psycopg://" + v[len(prefix):]
        return v

    @field_validator("url_secret")
    @classmethod
    def _empty_is_unset(cls, v: SecretStr | None) -> SecretStr | None:
        # FRESCO_URL_SECRET= (empty) must not become an empty HMAC key.
        return None if v is not None and not v.get_secret_value() else v

    @property
    def libpq_url(self) -> str:
        """The database URL without SQLAlchemy's driver suffix (for psql, psycopg)."""
        return self.database_url.replace("postgresql+psycopg://", "postgresql://", 1)

    @property
    def base_url(self) -> str:
        return (self.public_url or self.api_url).rstrip("/")

    @property
    def queue_list(self) -> list[str]:
        return [q.strip() for q in self.queues.split(",") if q.strip()]

    @property
    def preload_list(self) -> list[str]:
        return [m.strip() for m in self.preload.split(",") if m.strip()]


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def cpu_count() -> int:
    """Cores this process may run on (cgroup/affinity aware), for torch's thread pool."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1
