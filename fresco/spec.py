"""The job spec: what one image is rendered from.

Two layers, like diffusers' ``check_inputs``: :class:`SpecFields` checks what needs no
registry (types, non-empty prompt, no NUL byte); :func:`resolve` applies the model's
defaults and limits and returns the complete spec stored in Postgres. Every error names
the field and shows the limit.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from fresco.errors import InvalidSpec
from fresco.registry import BETA_SCHEDULES, OUTPUT_FORMATS, ModelEntry, Registry

MAX_SEED = 2**63 - 1
MAX_CUSTOM_ID = 256
MAX_METADATA_BYTES = 16 * 1024

# Fields that change the shape of the pipeline call: jobs agreeing on all of them can
# share one sampling call. Everything else (prompt, negative prompt, seed, format) is
# per image.
SIGNATURE_FIELDS = ("model", "kind", "width", "height", "steps", "scheduler", "beta_schedule", "guidance_scale",
                    "strength")


class SpecFields(BaseModel):
    """A spec as a client writes it: every field optional but the prompt."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(default=None, description="Model id from GET /v1/models; default: the registry's default model.")
    prompt: str | None = Field(default=None, description="What to draw. Non-empty, no NUL, at most the model's max_prompt_chars.")
    negative_prompt: str | None = Field(default=None, description="What to steer away from (replaces the empty unconditional prompt).")
    width: int | None = Field(default=None, description="Pixels, a multiple of 8 within the model's limits.")
    height: int | None = Field(default=None, description="Pixels, a multiple of 8 within the model's limits.")
    steps: int | None = Field(default=None, description="Sampling steps, 1..the model's max_steps.")
    guidance_scale: float | None = Field(default=None, description="Classifier-free guidance, 0..the model's max_guidance_scale.")
    scheduler: str | None = Field(default=None, description="One of the model's schedulers (ddim, ddpm, pndm, euler, euler_a, heun, dpmpp_2m, dpmpp_sde, unipc, lcm).")
    beta_schedule: str | None = Field(default=None, description="Noise schedule override: linear, scaled_linear or cosine.")
    seed: int | None = Field(default=None, description="0..2^63-1; chosen and recorded when absent. Same seed + spec = same image.")
    output_format: str | None = Field(default=None, description="png (default), webp or jpeg.")
    init_image: str | None = Field(default=None, description="Image-to-image / inpainting input: `upload:ID` from POST /v1/uploads, or base64 (PNG, JPEG, WebP).")
    mask_image: str | None = Field(default=None, description="Inpainting mask (white = repaint), as init_image; needs init_image.")
    strength: float | None = Field(default=None, description="Image-to-image: how far from init_image, (0, 1]; default 0.8.")
    custom_id: str | None = Field(default=None, description="Your own reference, echoed back.")
    metadata: dict[str, Any] | None = Field(default=None, description="Your own JSON object, echoed back (16 KiB at most).")

    @field_validator("prompt", "negative_prompt")
    @classmethod
    def _no_nul(cls, v: str | None) -> str | None:
        if v is not None and "\x00" in v:
            raise ValueError("must not contain a NUL character")
        return v

    @field_validator("custom_id")
    @classmethod
    def _custom_id(cls, v: str | None) -> str | None:
        if v is not None and (len(v) > MAX_CUSTOM_ID or "\x00" in v):
            raise ValueError(f"must be at most {MAX_CUSTOM_ID} characters with no NUL")
        return v


def _fail(prefix: str, field: str, message: str) -> InvalidSpec:
    return InvalidSpec(f"{prefix}{field}: {message}", field=f"{prefix}{field}")


def resolve(fields: dict[str, Any], registry: Registry, *, where: str = "") -> dict[str, Any]:
    """Apply registry defaults and limits; return the complete spec or raise InvalidSpec.

    ``fields`` is a SpecFields dump with unset fields left out; ``where`` prefixes the
    field in error messages (``items[3].``) so a client can find the bad item.
    """
    model_id = fields.get("model") or registry.default
    entry: ModelEntry | None = registry.get(model_id)
    if entry is None:
        raise _fail(where, "model", f"unknown model {model_id!r}; available: {', '.join(registry.entries)}")
    prompt = fields.get("prompt")
    if prompt is None or not prompt.strip():
        raise _fail(where, "prompt", "is required and must not be empty")
    for name in ("prompt", "negative_prompt"):
        value = fields.get(name)
        if value is not None and len(value) > entry.max_prompt_chars:
            raise _fail(where, name, f"is {len(value)} characters; model {entry.id} allows at most {entry.max_prompt_chars}")

    width = fields.get("width") or entry.default_width
    height = fields.get("height") or entry.default_height
    for name, value, limit in (("width", width, entry.max_width), ("height", height, entry.max_height)):
        if value % 8:
            raise _fail(where, name, f"{value} is not a multiple of 8")
        if not entry.min_size <= value <= limit:
            raise _fail(where, name, f"{value} is outside {entry.min_size}..{limit} for model {entry.id}")

    steps = fields.get("steps") if fields.get("steps") is not None else entry.default_steps
    if not 1 <= steps <= entry.max_steps:
        raise _fail(where, "steps", f"{steps} is outside 1..{entry.max_steps} for model {entry.id}")
    guidance = fields.get("guidance_scale")
    guidance = float(entry.default_guidance if guidance is None else guidance)
    if not 0.0 <= guidance <= entry.max_guidance:
        raise _fail(where, "guidance_scale", f"{guidance} is outside 0..{entry.max_guidance} for model {entry.id}")
    scheduler = fields.get("scheduler") or entry.default_scheduler
    if scheduler not in entry.schedulers:
        raise _fail(where, "scheduler", f"{scheduler!r} is not one of model {entry.id}'s schedulers: {', '.join(entry.schedulers)}")
    beta = fields.get("beta_schedule")
    if beta is not None and beta not in BETA_SCHEDULES:
        raise _fail(where, "beta_schedule", f"{beta!r} is not one of {', '.join(BETA_SCHEDULES)}")
    fmt = fields.get("output_format") or "png"
    if fmt not in OUTPUT_FORMATS:
        raise _fail(where, "output_format", f"{fmt!r} is not one of {', '.join(OUTPUT_FORMATS)}")
    seed = fields.get("seed")
    if seed is None:
        seed = secrets.randbelow(2**32)  # chosen here so it is recorded with the job
    elif not 0 <= seed <= MAX_SEED:
        raise _fail(where, "seed", f"{seed} is outside 0..{MAX_SEED}")
    init_image, mask_image, strength = fields.get("init_image"), fields.get("mask_image"), fields.get("strength")
    kind = "inpainting" if mask_image is not None else "image-to-image" if init_image is not None else "text-to-image"
    if mask_image is not None and init_image is None:
        raise _fail(where, "mask_image", "needs an init_image to paint into")
    if kind not in entry.kinds:
        field = "mask_image" if kind == "inpainting" else "init_image"
        raise _fail(where, field, f"model {entry.id} does not do {kind} (it does: {', '.join(entry.kinds)})")
    if kind == "text-to-image":
        if strength is not None:
            raise _fail(where, "strength", "applies only with an init_image")
    else:
        strength = 0.8 if strength is None else float(strength)
        if not 0.0 < strength <= 1.0:
            raise _fail(where, "strength", f"{strength} is outside (0, 1]")
    metadata = fields.get("metadata")
    if metadata is not None:
        import json

        if len(json.dumps(metadata)) > MAX_METADATA_BYTES:
            raise _fail(where, "metadata", f"is larger than {MAX_METADATA_BYTES} bytes as JSON")

    spec = {
        "model": entry.id,
        "kind": kind,
        "prompt": prompt,
        "negative_prompt": fields.get("negative_prompt"),
        "width": width,
        "height": height,
        "steps": steps,
        "guidance_scale": guidance,
        "scheduler": scheduler,
        "beta_schedule": beta,
        "seed": seed,
        "output_format": fmt,
    }
    if kind != "text-to-image":
        spec.update(init_image=init_image, mask_image=mask_image, strength=strength)
    return spec


@dataclass(frozen=True, slots=True)
class Signature:
    """The batch signature: jobs with equal signatures can share one pipeline call.

    Printed readable on purpose (it is stored in the jobs table and shows in logs and
    Flower): ``model|kind|WxH|steps|scheduler|beta or -|guidance`` and ``|s<strength>``
    for image-to-image and inpainting, numbers as ``%g``. ``str`` prints it and
    :meth:`parse` reads it back; print(parse(text)) == text for every printed form."""

    model: str
    kind: str
    width: int
    height: int
    steps: int
    scheduler: str
    beta_schedule: str | None
    guidance_scale: float
    strength: float | None = None

    @classmethod
    def of(cls, spec: dict[str, Any]) -> "Signature":
        """The signature of a resolved spec (see :func:`resolve`)."""
        return cls(spec["model"], spec["kind"], spec["width"], spec["height"], spec["steps"], spec["scheduler"],
                   spec["beta_schedule"], spec["guidance_scale"], spec.get("strength"))

    def __str__(self) -> str:
        text = (f"{self.model}|{self.kind}|{self.width}x{self.height}|{self.steps}"
                f"|{self.scheduler}|{self.beta_schedule or '-'}|{self.guidance_scale:g}")
        if self.strength is not None:
            text += f"|s{self.strength:g}"
        return text

    @classmethod
    def parse(cls, text: str) -> "Signature":
        """Read a printed signature; ValueError names what is wrong with it."""
        parts = text.split("|")
        if len(parts) not in (7, 8) or "x" not in parts[2] or (len(parts) == 8 and not parts[7].startswith("s")):
            raise ValueError(f"not a batch signature: {text!r}")
        width, height = (int(x) for x in parts[2].split("x", 1))
        return cls(parts[0], parts[1], width, height, int(parts[3]), parts[4],
                   None if parts[5] == "-" else parts[5], float(parts[6]),
                   float(parts[7][1:]) if len(parts) == 8 else None)


def signature(spec: dict[str, Any]) -> str:
    """The printed signature of a resolved spec: what the jobs table stores."""
    return str(Signature.of(spec))


def signature_work(sig: str) -> tuple[int, int, int]:
    """(width, height, steps) of a printed signature: what its render costs."""
    s = Signature.parse(sig)
    return s.width, s.height, s.steps
