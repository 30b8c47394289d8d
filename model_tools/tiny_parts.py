"""Parts the tiny family builders share: scaled-down text encoders, their tokenizers and a
VAE, each built from the real architecture's config class with seeded random weights.

The CLIP tokenizer is the one committed with ``models/tiny-sd`` (a byte-level BPE over a
small word list). T5 needs a SentencePiece-style Unigram tokenizer; ``T5Tokenizer`` builds
one from a list of (piece, score) pairs, so nothing is downloaded.
"""
from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL
from transformers import (CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer, T5Config,
                          T5EncoderModel, T5Tokenizer)

REPO_ROOT = Path(__file__).resolve().parent.parent
TINY_SD_TOKENIZER = REPO_ROOT / "models" / "tiny-sd" / "tokenizer"
WORDS = ("a an the of on in with and red green blue yellow white black orange purple cat dog house tree "
         "circle square triangle star car boat mountain sky sun moon flower city street painting photo "
         "portrait landscape night day small big old new number").split()


def clip_tokenizer() -> CLIPTokenizer:
    tokenizer = CLIPTokenizer.from_pretrained(TINY_SD_TOKENIZER)
    assert tokenizer("a red circle").input_ids != tokenizer("a blue square").input_ids, "tokenizer drops the prompt"
    return tokenizer


def t5_tokenizer() -> T5Tokenizer:
    """A Unigram vocabulary: T5's three specials, then a piece per word (word-initial, as
    SentencePiece writes it) and per character, so any prompt tokenizes."""
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [(f"▁{w}", -1.0) for w in WORDS]
    chars = "abcdefghijklmnopqrstuvwxyz0123456789.,'-!?"
    pieces += [(c, -5.0) for c in chars] + [(f"▁{c}", -4.0) for c in chars]
    tokenizer = T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=512)
    a, b = tokenizer("a red circle").input_ids, tokenizer("a blue square").input_ids
    assert a != b and tokenizer.unk_token_id not in a, "T5 tokenizer drops the prompt"
    return tokenizer


def clip_text_encoder(tokenizer: CLIPTokenizer, seed: int, *, hidden: int = 32, projection: int | None = None,
                      layers: int = 2) -> CLIPTextModel | CLIPTextModelWithProjection:
    """CLIP's text transformer at width ``hidden``; with ``projection``, the variant whose
    pooled output is projected (SDXL's second encoder, both of SD3's)."""
    config = CLIPTextConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        hidden_size=hidden, intermediate_size=hidden * 2, num_attention_heads=4, num_hidden_layers=layers,
        layer_norm_eps=1e-5, vocab_size=len(tokenizer), max_position_embeddings=77, hidden_act="gelu",
        projection_dim=projection or hidden)
    torch.manual_seed(seed)
    return CLIPTextModelWithProjection(config) if projection else CLIPTextModel(config)


def t5_encoder(tokenizer: T5Tokenizer, seed: int, *, d_model: int = 32) -> T5EncoderModel:
    """T5 v1.1's encoder (gated GELU feed-forward, as in T5-XXL) at width ``d_model``."""
    config = T5Config(vocab_size=len(tokenizer), d_model=d_model, d_kv=8, d_ff=d_model * 2, num_layers=2,
                      num_heads=4, relative_attention_num_buckets=8, feed_forward_proj="gated-gelu",
                      is_encoder_decoder=False, use_cache=False, pad_token_id=tokenizer.pad_token_id,
                      eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False)
    torch.manual_seed(seed)
    return T5EncoderModel(config)


def vae(seed: int, *, latent_channels: int = 4, **config) -> AutoencoderKL:
    """AutoencoderKL with two blocks (a factor of 2 between pixels and latents, where the
    real ones have four blocks and a factor of 8). ``config``: the family's own flags
    (scaling and shift factors, quant convs)."""
    torch.manual_seed(seed)
    return AutoencoderKL(
        block_out_channels=(16, 32), in_channels=3, out_channels=3, latent_channels=latent_channels, sample_size=64,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), norm_num_groups=16, **config)
