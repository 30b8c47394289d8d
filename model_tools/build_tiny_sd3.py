"""Build the tiny Stable Diffusion 3 test model with seeded random weights.

SD3's layout at toy width: an ``SD3Transformer2DModel`` (MMDiT, 2x2 patches) over a
16-channel latent; two ``CLIPTextModelWithProjection`` encoders whose pooled outputs
together condition the timestep embedding and whose hidden states, zero-padded to T5's
width, sit beside ``T5EncoderModel``'s in the joint attention; an ``AutoencoderKL``
without quant convs and with a shift factor; ``FlowMatchEulerDiscreteScheduler`` with
SD3's shift of 3. Its pictures are noise; it proves ``StableDiffusion3Pipeline`` runs
through the farm as a real checkpoint would.

    python -m model_tools.build_tiny_sd3 --out models/tiny-sd3
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

from model_tools import tiny_parts

SEED = 20261131
CLIP_WIDTH = 32
T5_WIDTH = 2 * CLIP_WIDTH  # CLIP's two hidden states side by side are padded to T5's width


def build(out: Path) -> StableDiffusion3Pipeline:
    tokenizer = tiny_parts.clip_tokenizer()
    t5_tokenizer = tiny_parts.t5_tokenizer()
    text_encoder = tiny_parts.clip_text_encoder(tokenizer, SEED + 1, hidden=CLIP_WIDTH, projection=CLIP_WIDTH)
    text_encoder_2 = tiny_parts.clip_text_encoder(tokenizer, SEED + 2, hidden=CLIP_WIDTH, projection=CLIP_WIDTH)
    text_encoder_3 = tiny_parts.t5_encoder(t5_tokenizer, SEED + 3, d_model=T5_WIDTH)
    torch.manual_seed(SEED)
    transformer = SD3Transformer2DModel(
        sample_size=32, patch_size=2, in_channels=16, out_channels=16, num_layers=2, attention_head_dim=8,
        num_attention_heads=4, joint_attention_dim=T5_WIDTH, caption_projection_dim=32,
        pooled_projection_dim=2 * CLIP_WIDTH, pos_embed_max_size=64)
    vae = tiny_parts.vae(SEED + 4, latent_channels=16, scaling_factor=1.5305, shift_factor=0.0609,
                         use_quant_conv=False, use_post_quant_conv=False)
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    pipe = StableDiffusion3Pipeline(transformer=transformer, scheduler=scheduler, vae=vae,
                                    text_encoder=text_encoder, tokenizer=tokenizer,
                                    text_encoder_2=text_encoder_2, tokenizer_2=tokenizer,
                                    text_encoder_3=text_encoder_3, tokenizer_3=t5_tokenizer)
    pipe.save_pretrained(out, safe_serialization=True)
    return pipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("models/tiny-sd3"), help="folder to write (diffusers format)")
    build(parser.parse_args().out)


if __name__ == "__main__":
    main()
