"""Where a model's weights come from: a local folder, a Hugging Face hub id pinned to a
revision, or an s3:// folder. This machine has no route to the hub, so the hub test seeds
a hub cache folder in the layout huggingface_hub itself writes (models--org--name/
snapshots/<commit>) and loads with HF_HUB_OFFLINE=1: the same from_pretrained call
(repo id, revision, cache_dir) a worker with internet makes, minus the download. The S3
test uses the moto server over HTTP."""
from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from fresco.errors import ModelUnavailable
from fresco.registry import load_registry
from fresco.settings import REPO_ROOT, Settings
from support.registry import model, write_registry
from worker.model_cache import ModelCache
from worker.sampler import render

TINY_SD = REPO_ROOT / "models" / "tiny-sd"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _registry(tmp_path, source: str):
    path = write_registry(tmp_path / "registry.toml", model("m", source=source, default_width=32, default_height=32,
                                                              min_size=32, default_steps=2))
    return load_registry(path)


def _image(cache: ModelCache, registry) -> np.ndarray:
    entry = registry.get("m")
    pipe, config = cache.get(entry)
    spec = {"prompt": "a red circle", "seed": 7, "steps": 2, "width": 32, "height": 32, "scheduler": "ddim",
            "beta_schedule": None, "guidance_scale": 7.5}
    return render(pipe, config, [spec])


@pytest.fixture(scope="module")
def folder_image(tmp_path_factory):
    """The reference: the same weights loaded from their folder."""
    tmp = tmp_path_factory.mktemp("folder")
    registry = _registry(tmp, str(TINY_SD))
    return _image(ModelCache(registry, Settings(), "cpu"), registry)


def _seed_hub_cache(cache_dir, repo: str = "fresco/tiny-sd") -> None:
    root = cache_dir / f"models--{repo.replace('/', '--')}"
    shutil.copytree(TINY_SD, root / "snapshots" / COMMIT)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(COMMIT)


def test_hub_id_pinned_revision_loads_from_the_shared_cache(tmp_path, folder_image, monkeypatch):
    """Two render processes (two caches) pointed at one FRESCO_HF_CACHE_DIR load the pinned
    revision from it: what the compose volume gives workers on one machine."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _seed_hub_cache(tmp_path / "hub")
    registry = _registry(tmp_path, f"hub:fresco/tiny-sd@{COMMIT}")
    settings = Settings(hf_cache_dir=tmp_path / "hub")
    for _ in range(2):
        cache = ModelCache(registry, settings, "cpu")
        assert np.array_equal(_image(cache, registry), folder_image)
        assert cache.stats.loads == 1


def test_hub_id_with_a_revision_not_in_the_cache_fails_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _seed_hub_cache(tmp_path / "hub")
    registry = _registry(tmp_path, "hub:fresco/tiny-sd@" + "f" * 40)
    cache = ModelCache(registry, Settings(hf_cache_dir=tmp_path / "hub"), "cpu")
    with pytest.raises(ModelUnavailable) as e:
        cache.get(registry.get("m"))
    assert "model m could not be loaded from hub:fresco/tiny-sd@" in str(e.value)
    assert cache.stats.load_failures == 1 and cache.stats.loads == 0


def test_s3_folder_is_mirrored_once_into_the_shared_cache(tmp_path, s3_server, folder_image, monkeypatch):
    for k, v in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    client = s3_server.client()
    prefix = f"models/tiny-sd-{tmp_path.name}"
    for f in TINY_SD.rglob("*"):
        if f.is_file():
            client.upload_file(str(f), s3_server.bucket, f"{prefix}/{f.relative_to(TINY_SD)}")
    registry = _registry(tmp_path, f"s3://{s3_server.bucket}/{prefix}")
    settings = Settings(hf_cache_dir=tmp_path / "cache", s3_endpoint_url=s3_server.url)
    source = f"s3://{s3_server.bucket}/{prefix}"
    # two render processes mirror at once on one machine (threads here: the mirror is what
    # is shared; a process loads one model at a time): the files are fetched once
    with ThreadPoolExecutor(2) as pool:
        mirrors = set(pool.map(lambda _: ModelCache(registry, settings, "cpu")._download_s3(source), range(2)))
    assert len(mirrors) == 1
    fetched = s3_server.log.read_text().count(f"GET /{s3_server.bucket}/{prefix}/model_index.json")
    assert fetched == 1, fetched
    assert np.array_equal(_image(ModelCache(registry, settings, "cpu"), registry), folder_image)
    mirrored = [p for p in (tmp_path / "cache" / "s3").rglob("*") if p.is_file()]
    assert any(p.name == "model_index.json" for p in mirrored)
    # the second process finds the complete mirror and downloads nothing, even with S3 gone
    stamp = {p: p.stat().st_mtime_ns for p in mirrored}
    offline = Settings(hf_cache_dir=tmp_path / "cache", s3_endpoint_url="http://127.0.0.1:9")
    assert np.array_equal(_image(ModelCache(registry, offline, "cpu"), registry), folder_image)
    assert {p: p.stat().st_mtime_ns for p in mirrored} == stamp


@pytest.mark.parametrize("memory_format", ["contiguous", "channels_last"])
def test_the_registry_memory_format_reaches_the_unet_and_keeps_the_image(tmp_path, folder_image, memory_format):
    """A model's `memory_format` is applied where the worker loads it; it changes how the
    UNet's tensors lie in memory, not the picture (within 1/255 on a CPU)."""
    import torch

    registry = load_registry(write_registry(tmp_path / "registry.toml", model(
        "m", source=str(TINY_SD), default_width=32, default_height=32, min_size=32, default_steps=2,
        memory_format=memory_format)))
    cache = ModelCache(registry, Settings(), "cpu")
    pipe, _ = cache.get(registry.get("m"))
    weight = pipe.unet.conv_in.weight
    assert weight.is_contiguous(memory_format=torch.channels_last) is (memory_format == "channels_last")
    assert weight.is_contiguous() is (memory_format == "contiguous")
    image = _image(cache, registry)
    assert int(np.abs(image.astype(int) - folder_image.astype(int)).max()) <= 1
