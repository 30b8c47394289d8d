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
from worker.device import compile_cache_dir, compile_module, compile_pipeline, prepare_pipeline


class FakePipe:
    def __init__(self) -> None:
        self.unet = torch.nn.Linear(2, 2)

    def to(self, device: str) -> "FakePipe":
        return self


def test_a_cpu_worker_never_compiles():
    pipe = prepare_pipeline(FakePipe(), "cpu", Settings(compile=True))
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


def tiny_pipeline():
    """A real diffusers UNet (with its repeated transformer blocks) and VAE, tiny."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    unet = UNet2DConditionModel(block_out_channels=(8, 16), layers_per_block=1, sample_size=8, in_channels=4,
                                out_channels=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=8,
                                norm_num_groups=4, attention_head_dim=2)
    vae = AutoencoderKL(block_out_channels=(8,), latent_channels=4, norm_num_groups=4,
                        down_block_types=("DownEncoderBlock2D",), up_block_types=("UpDecoderBlock2D",))

    class Pipe:
        def __init__(self) -> None:
            self.unet, self.vae = unet, vae

    return Pipe()


def test_the_whole_unet_and_the_vae_decoder_are_compiled_by_default(tmp_path: Path):
    pipe = tiny_pipeline()
    unet, decoder = pipe.unet, pipe.vae.decoder
    compile_pipeline(pipe, Settings(compile=True, compile_cache_dir=tmp_path))
    assert isinstance(pipe.unet, torch._dynamo.eval_frame.OptimizedModule) and pipe.unet._orig_mod is unet
    assert isinstance(pipe.vae.decoder, torch._dynamo.eval_frame.OptimizedModule)
    assert pipe.vae.decoder._orig_mod is decoder


def test_compile_scope_blocks_compiles_each_repeated_block_in_place(tmp_path: Path):
    from diffusers.models.attention import BasicTransformerBlock

    pipe = tiny_pipeline()
    unet, decoder = pipe.unet, pipe.vae.decoder
    compile_pipeline(pipe, Settings(compile=True, compile_cache_dir=tmp_path, compile_scope="blocks",
                                    compile_vae=False))
    assert pipe.unet is unet and pipe.vae.decoder is decoder
    blocks = [m for m in unet.modules() if isinstance(m, BasicTransformerBlock)]
    assert blocks and all(m._compiled_call_impl is not None for m in blocks)
    assert unet._compiled_call_impl is None  # the resnets and the rest stay eager


def test_compile_scope_blocks_compiles_the_whole_unet_of_a_model_without_repeated_blocks(tmp_path: Path):
    pipe = FakePipe()
    compile_pipeline(pipe, Settings(compile=True, compile_cache_dir=tmp_path, compile_scope="blocks"))
    assert isinstance(pipe.unet, torch._dynamo.eval_frame.OptimizedModule)


def test_compiled_cuda_workers_pad_short_units_to_the_compiled_shape():
    """A unit shorter than the batch would otherwise make a new static shape, and its jobs
    would wait for that graph's compile. Only UNet families are compiled; a transformer
    family's short unit is not padded on CUDA."""
    from types import SimpleNamespace

    from worker.unit import Resources

    unet_family, transformer_family = SimpleNamespace(family="sd"), SimpleNamespace(family="flux")

    def pads(device: str, entry=unet_family, **settings) -> bool:
        return Resources(settings=Settings(**settings), registry=None, storage=None, cache=None,
                         device=device).pad_batches(entry)

    assert pads("cpu") and pads("cpu", compile=True) and pads("cpu", transformer_family)
    assert not pads("cuda") and pads("cuda", compile=True)
    assert not pads("cuda", transformer_family, compile=True)
    assert not pads("cuda", compile=True, pad_batches=False) and pads("cuda", pad_batches=True)
