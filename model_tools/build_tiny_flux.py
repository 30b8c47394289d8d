"""Build the tiny Flux test model with seeded random weights.

FLUX.1-dev's layout at toy width: a ``FluxTransformer2DModel`` (double-stream then
single-stream blocks, rotary positions over three axes, a guidance embedding: the
guidance-distilled variant) over a 16-channel latent packed in 2x2 patches; a
``CLIPTextModel`` whose pooled output conditions the timestep and a ``T5EncoderModel``
whose hidden states are the text tokens; an ``AutoencoderKL`` without quant convs and with
a shift factor; ``FlowMatchEulerDiscreteScheduler`` with resolution-dependent shifting.
Its pictures are noise; it proves ``FluxPipeline`` runs through the farm as a real
checkpoint would.

    python -m model_tools.build_tiny_flux --out models/tiny-flux
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

from model_tools import tiny_parts

SEED = 20261132
LATENT_CHANNELS = 16


def build(out: Path) -> FluxPipeline:
    tokenizer = tiny_parts.clip_tokenizer()
    t5_tokenizer = tiny_parts.t5_tokenizer()
    text_encoder = tiny_parts.clip_text_encoder(tokenizer, SEED + 1, hidden=32)
    text_encoder_2 = tiny_parts.t5_encoder(t5_tokenizer, SEED + 2, d_model=32)
    torch.manual_seed(SEED)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=LATENT_CHANNELS * 4, num_layers=1, num_single_layers=2, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, guidance_embeds=True,
        axes_dims_rope=(4, 6, 6))
    vae = tiny_parts.vae(SEED + 3, latent_channels=LATENT_CHANNELS, scaling_factor=0.3611, shift_factor=0.1159,
                         use_quant_conv=False, use_post_quant_conv=False)
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True,
                                                base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
                                                max_image_seq_len=4096)
    pipe = FluxPipeline(transformer=transformer, scheduler=scheduler, vae=vae, text_encoder=text_encoder,
                        tokenizer=tokenizer, text_encoder_2=text_encoder_2, tokenizer_2=t5_tokenizer)
    pipe.save_pretrained(out, safe_serialization=True)
    return pipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("models/tiny-flux"), help="folder to write (diffusers format)")
    build(parser.parse_args().out)


if __name__ == "__main__":
    main()
