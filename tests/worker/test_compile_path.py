"""FRESCO_COMPILE's path (worker/device.py) as far as a CPU can check it quickly: a CPU
worker never compiles, the compile cache lands on the model-cache volume, and a module is
wrapped for compiling on its first call, the caches set for it. Compiling and running
the graph needs CUDA and about a minute per shape: bench/gpu.py --compile-session
measures it (bench/README.md)."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from fresco.settings import Settings
from worker.device import compile_cache_dir, compile_module, prepare_pipeline


class FakePipe:
    def __init__(self) -> None:
        self.unet = torch.nn.Linear(2, 2)

    def to(self, device: str) -> "FakePipe":
        return self


def test_a_cpu_worker_never_compiles():
    pipe = prepare_pipeline(FakePipe(), "cpu", Settings(compile=True, channels_last=True))
    assert type(pipe.unet) is torch.nn.Linear


def test_the_compile_cache_is_on_the_model_cache_volume(tmp_path: Path):
    assert compile_cache_dir(Settings(hf_cache_dir=tmp_path)) == tmp_path / "inductor"
    assert compile_cache_dir(Settings(hf_cache_dir=tmp_path, compile_cache_dir=tmp_path / "c")) == tmp_path / "c"
    assert compile_cache_dir(Settings(hf_cache_dir=None, compile_cache_dir=None)) is None


def test_a_compiled_module_is_wrapped_lazily_with_its_cache_dir(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.delenv("TRITON_CACHE_DIR", raising=False)
    compiled = compile_module(torch.nn.Linear(2, 2), Settings(compile=True, compile_cache_dir=tmp_path / "ind"))
    assert isinstance(compiled, torch._dynamo.eval_frame.OptimizedModule)  # compiled lazily, on its first call
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "ind") and (tmp_path / "ind").is_dir()
    assert os.environ["TRITON_CACHE_DIR"] == str(tmp_path / "ind" / "triton")
