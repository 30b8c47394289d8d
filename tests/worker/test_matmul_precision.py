"""The registry's ``matmul_precision`` (worker/device.py): "fp8" is opt-in per model, a
model with it takes no LoRA adapters (a 422 before anything is stored), and where the
hardware has no float8 matmuls the model runs in its dtype with a warning, so a mixed
fleet renders everywhere. The fp8 path itself (torchao on a GPU of compute capability
8.9+) cannot run on a CPU: it is measured by bench/gpu.py --compile-session --fp8."""
from __future__ import annotations

import logging
import textwrap

import pytest
import torch

from fresco.errors import InvalidSpec, RegistryError
from fresco.registry import load_registry
from fresco.settings import Settings
from fresco.spec import resolve
from worker.device import apply_matmul_precision, prepare_pipeline

ENTRY = """
[[models]]
id = "m8"
source = "tiny-sd"
min_size = 32
{extra}

[[adapters]]
id = "a1"
base = "m8"
source = "a1"
"""


def registry(tmp_path, extra: str):
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "registry.toml"
    path.write_text(textwrap.dedent(ENTRY.format(extra=extra)))
    return load_registry(path)


def test_off_by_default_and_only_known_precisions(tmp_path):
    assert registry(tmp_path, "").get("m8").matmul_precision == "default"
    assert registry(tmp_path, 'matmul_precision = "fp8"').get("m8").matmul_precision == "fp8"
    with pytest.raises(RegistryError, match="matmul_precision"):
        registry(tmp_path, 'matmul_precision = "fp4"')


def test_an_fp8_model_takes_no_adapters(tmp_path):
    plain, fp8 = registry(tmp_path / "a", ""), registry(tmp_path / "b", 'matmul_precision = "fp8"')
    spec = {"model": "m8", "prompt": "x", "loras": [{"id": "a1", "weight": 1.0}]}
    assert resolve(dict(spec), plain)["loras"] == [{"id": "a1", "weight": 1.0}]
    with pytest.raises(InvalidSpec, match="fp8") as caught:
        resolve(dict(spec), fp8)
    assert caught.value.extra["field"] == "loras"
    assert "loras" not in resolve({"model": "m8", "prompt": "x"}, fp8)  # without adapters it renders


def test_without_float8_hardware_the_model_runs_in_its_dtype(caplog):
    layer = torch.nn.Linear(16, 16)
    weight = layer.weight.detach().clone()
    with caplog.at_level(logging.WARNING, logger="worker.device"):
        assert apply_matmul_precision(layer, "fp8", "cpu") == "default"
    assert "fp8 needs a GPU of compute capability 8.9" in caplog.text
    assert type(layer.weight) is torch.nn.Parameter and torch.equal(layer.weight, weight)  # untouched
    assert apply_matmul_precision(layer, "default", "cpu") == "default"


def test_prepare_leaves_a_cpu_pipeline_as_it_was(caplog):
    class Pipe:
        def __init__(self) -> None:
            self.unet = torch.nn.Linear(4, 4)

        def to(self, device: str) -> "Pipe":
            return self
    pipe = Pipe()
    unet = pipe.unet
    with caplog.at_level(logging.WARNING, logger="worker.device"):
        assert prepare_pipeline(pipe, "cpu", Settings(compile=True), "fp8").unet is unet
    assert "runs in its dtype" in caplog.text
