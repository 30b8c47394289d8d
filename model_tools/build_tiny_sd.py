"""Build the tiny Stable Diffusion-architecture test model with seeded random weights.

It is the exact ``StableDiffusionPipeline`` path (UNet2DConditionModel, AutoencoderKL,
CLIPTextModel, a CLIPTokenizer from a generated vocab and merges) at a size a CPU runs
in milliseconds a step. Its pictures are noise; what it proves is that the farm loads a
diffusers-format folder with ``from_pretrained`` exactly as it would a real checkpoint.

    python -m model_tools.build_tiny_sd --out models/tiny-sd
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

SEED = 20261127
WORDS = ("a an the of on in with and red green blue yellow white black orange purple cat dog house tree "
         "circle square triangle star car boat mountain sky sun moon flower city street painting photo "
         "portrait landscape night day small big old new").split()


def _bytes_to_unicode() -> dict[int, str]:
    """CLIP's byte-to-unicode table (GPT-2 style), so every byte has a token."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def write_tokenizer_files(folder: Path) -> tuple[Path, Path]:
    """A byte-level BPE vocab: every byte alone and word-final, plus merges that spell
    a small word list, so prompts made of those words are one token a word."""
    chars = list(_bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for c in chars:
        vocab.setdefault(c, len(vocab))
    for c in chars:
        vocab.setdefault(c + "</w>", len(vocab))
    merges: list[str] = []
    for word in WORDS:
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        while len(parts) > 1:
            merge = f"{parts[0]} {parts[1]}"
            if merge not in merges:
                merges.append(merge)
            parts = [parts[0] + parts[1]] + parts[2:]
            vocab.setdefault(parts[0], len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    vocab_path, merges_path = folder / "vocab.json", folder / "merges.txt"
    vocab_path.write_text(json.dumps(vocab))
    merges_path.write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return vocab_path, merges_path


def build(out: Path) -> StableDiffusionPipeline:
    with tempfile.TemporaryDirectory() as tmp:
        # Positional paths: with transformers 5 the vocab_file= keyword silently gives
        # a tokenizer that drops the prompt.
        tokenizer = CLIPTokenizer(*map(str, write_tokenizer_files(Path(tmp))), model_max_length=77)
    a, b = tokenizer("a red circle").input_ids, tokenizer("a blue square").input_ids
    assert a != b and len(a) > 2, "tokenizer drops the prompt"

    torch.manual_seed(SEED)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=32)
    torch.manual_seed(SEED + 1)
    vae = AutoencoderKL(
        block_out_channels=(32, 64), in_channels=3, out_channels=3, latent_channels=4, sample_size=64,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), norm_num_groups=32)
    torch.manual_seed(SEED + 2)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=5,
        layer_norm_eps=1e-5, vocab_size=len(tokenizer), max_position_embeddings=77))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(out, safe_serialization=True)
    return pipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("models/tiny-sd"), help="folder to write (diffusers format)")
    args = parser.parse_args()
    build(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
