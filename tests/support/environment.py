"""The test session's environment: a Postgres database and a Redis db index of its own,
a file store in a scratch folder, and the farm's settings pointed at them.

Applied by tests/conftest.py in ``pytest_configure`` (before any test module is imported,
so before any farm module reads its settings) and restored in ``pytest_unconfigure``;
never at import time. Farm processes inherit it through ``os.environ``.
"""
from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from support.procs import ROOT


@dataclass(frozen=True)
class SessionEnvironment:
    """Where this test session's state lives. ``FRESCO_TEST_PG``, ``FRESCO_TEST_REDIS_DB``
    and ``FRESCO_TEST_TMP`` choose the servers and the scratch folder."""

    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    pg: str = field(default_factory=lambda: os.environ.get("FRESCO_TEST_PG", "postgresql://postgres@127.0.0.1:5432"))
    redis_db: int = field(default_factory=lambda: int(os.environ.get("FRESCO_TEST_REDIS_DB", "13")))
    tmp: Path = field(default_factory=lambda: Path(os.environ.get("FRESCO_TEST_TMP", "/tmp")))

    @property
    def db_name(self) -> str:
        return f"fresco_test_{self.run_id}"

    @property
    def database_url(self) -> str:
        return f"{self.pg}/{self.db_name}"

    @property
    def store(self) -> Path:
        return self.tmp / f"fresco-test-{self.run_id}"

    def variables(self) -> dict[str, str]:
        return {
            "FRESCO_DATABASE_URL": self.database_url,
            "FRESCO_BROKER_URL": f"redis://127.0.0.1:6379/{self.redis_db}",
            "FRESCO_STORAGE_URL": f"file://{self.store}/store",
            "FRESCO_MODELS": str(ROOT / "models" / "registry.toml"),
            "FRESCO_API_URL": "http://127.0.0.1:8000",
            "FRESCO_URL_SECRET": f"test-secret-{self.run_id}",
            # Webhook receivers in the tests listen on loopback; no other target is allowed,
            # so nothing a test submits can make a worker send traffic off the machine.
            "FRESCO_WEBHOOK_ALLOWLIST": "127.0.0.1",
            # A test session submits faster than the default rate limit lets any tenant
            # (hypothesis, stress tests); tests/api/test_quotas.py sets limits per tenant.
            "FRESCO_TENANT_SUBMITS_PER_MIN": "0",
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            # moto's S3 server takes any credentials; boto3 only needs some to sign with
            "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
        }


def apply(variables: dict[str, str]) -> dict[str, str | None]:
    """Set ``variables`` in ``os.environ``; returns what they replaced, for ``restore``.
    Settings are read once and cached (fresco.settings.get_settings): the cache is
    cleared so that the next read sees the new values."""
    saved = {k: os.environ.get(k) for k in variables}
    os.environ.update(variables)
    _forget_settings()
    return saved


def restore(saved: dict[str, str | None]) -> None:
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    _forget_settings()


def _forget_settings() -> None:
    from fresco.settings import get_settings

    get_settings.cache_clear()
