"""Settings are typed and checked when they load: a bad value stops the process at startup
with an error that names the variable, never on first use."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fresco.settings import ClientSettings, Settings, SettingsError

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("variable", "value", "says"), [
    ("FRESCO_STORAGE_URL", "ftp://host/results", "s3://bucket/prefix or file:///path"),
    ("FRESCO_STORAGE_URL", "s3:///no-bucket", "s3://bucket/prefix"),
    ("FRESCO_DATABASE_URL", "mysql://fresco:hunter2@db/fresco", "postgresql://"),
    ("FRESCO_BROKER_URL", "amqp://guest:hunter2@rabbit//", "redis://"),
    ("FRESCO_S3_ENDPOINT_URL", "minio:9000", "http"),
    ("FRESCO_API_URL", "not a url", "URL"),
    ("FRESCO_DEVICE", "gpu", "'auto', 'cpu' or 'cuda'"),
    ("FRESCO_LEASE_S", "sixty", "number"),
])
def test_a_bad_value_is_an_error_naming_the_variable(monkeypatch, variable, value, says):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as err:
        Settings.load()
    message = str(err.value)
    assert message.startswith(f"{variable}: ") and says in message
    assert "hunter2" not in message, "a rejected URL's password must not reach the logs"


def test_lists_come_from_comma_separated_variables(monkeypatch):
    monkeypatch.setenv("FRESCO_QUEUES", " gpu-a, gpu-b,,")
    monkeypatch.setenv("FRESCO_PRELOAD", "shapes")
    settings = Settings.load()
    assert settings.queues == ["gpu-a", "gpu-b"]
    assert settings.preload == ["shapes"]
    monkeypatch.delenv("FRESCO_QUEUES")
    monkeypatch.delenv("FRESCO_PRELOAD")
    assert Settings.load().queues == [] and Settings.load().preload == []


def test_an_empty_variable_is_an_unset_one(monkeypatch):
    for name in ("FRESCO_PUBLIC_URL", "FRESCO_S3_ENDPOINT_URL", "FRESCO_TORCH_THREADS", "FRESCO_QUEUES"):
        monkeypatch.setenv(name, "")
    settings = Settings.load()
    assert (settings.public_url, settings.s3_endpoint_url, settings.torch_threads, settings.queues) == (None, None, None, [])
    assert settings.base_url == settings.api_url


def test_a_plain_postgres_url_gets_the_psycopg_driver(monkeypatch):
    monkeypatch.setenv("FRESCO_DATABASE_URL", "postgres://u@db:5432/fresco")
    settings = Settings.load()
    assert settings.database_url == "postgresql+psycopg://u@db:5432/fresco"
    assert settings.libpq_url == "postgresql://u@db:5432/fresco"


def test_the_api_key_is_a_secret_of_the_client_settings(monkeypatch):
    monkeypatch.setenv("FRESCO_API_KEY", "fk_hunter2")
    monkeypatch.setenv("FRESCO_API_URL", "http://farm.example:8000")
    client = ClientSettings.load()
    assert client.api_url == "http://farm.example:8000"
    assert client.api_key.get_secret_value() == "fk_hunter2"
    assert "hunter2" not in repr(client) and "hunter2" not in str(client.model_dump())
    assert "api_key" not in Settings.model_fields, "the servers never read the client's key"


@pytest.mark.parametrize("module", ["api.main", "worker.app"])
def test_processes_refuse_to_start_with_a_bad_setting(module):
    """Importing the API app or the worker's Celery app is their startup: a storage URL the
    farm cannot use stops it there, before any request or job."""
    env = {**os.environ, "FRESCO_STORAGE_URL": "ftp://host/results"}
    r = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode != 0
    assert r.stderr.strip().splitlines()[-1] == (
        "fresco.settings.SettingsError: FRESCO_STORAGE_URL: must be s3://bucket/prefix or file:///path, "
        "not 'ftp://host/results'")
