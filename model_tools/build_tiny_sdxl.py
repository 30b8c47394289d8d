"""Build the tiny Stable Diffusion XL test model with seeded random weights.

The real SDXL layout at toy width: a UNet whose cross-attention reads both text encoders'
hidden states side by side and whose "text_time" embedding takes the second encoder's
projected pooled output plus the six size and crop numbers (original size, crop top-left,
target size); ``CLIPTextModel`` and ``CLIPTextModelWithProjection`` with their tokenizers;
an ``AutoencoderKL``; Euler with SDXL's scaled-linear betas. Its pictures are noise; it
proves ``StableDiffusionXLPipeline`` runs through the farm as a real checkpoint would.

    python -m model_tools.build_tiny_sdxl --out models/tiny-sdxl
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

from model_tools import tiny_parts

SEED = 20261130
TIME_EMBED = 8  # per size/crop number; SDXL: 256


def build(out: Path) -> StableDiffusionXLPipeline:
    tokenizer = tiny_parts.clip_tokenizer()
    text_encoder = tiny_parts.clip_text_encoder(tokenizer, SEED + 1, hidden=32)
    text_encoder_2 = tiny_parts.clip_text_encoder(tokenizer, SEED + 2, hidden=32, projection=32)
    torch.manual_seed(SEED)
    unet = UNet2DConditionModel(
        block_out_channels=(16, 32), layers_per_block=1, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2), attention_head_dim=(2, 4), use_linear_projection=True,
        cross_attention_dim=32 + 32,  # both encoders' hidden states, concatenated
        addition_embed_type="text_time", addition_time_embed_dim=TIME_EMBED,
        projection_class_embeddings_input_dim=6 * TIME_EMBED + 32,  # six size/crop numbers + pooled text
        norm_num_groups=16)
    vae = tiny_parts.vae(SEED + 3, scaling_factor=0.13025, force_upcast=True)
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       steps_offset=1, timestep_spacing="leading", interpolation_type="linear")
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
                                     tokenizer=tokenizer, tokenizer_2=tokenizer, unet=unet, scheduler=scheduler,
                                     force_zeros_for_empty_prompt=True)
    pipe.save_pretrained(out, safe_serialization=True)
    return pipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("models/tiny-sdxl"), help="folder to write (diffusers format)")
    build(parser.parse_args().out)


if __name__ == "__main__":
    main()
