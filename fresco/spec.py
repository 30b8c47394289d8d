"""The job spec: what one image is rendered from.

Two layers, like diffusers' ``check_inputs``: :class:`SpecFields` checks what needs no
registry (strict JSON types, bounds that hold for every model, no NUL byte);
:func:`resolve` applies the model's defaults and limits and returns the complete spec
stored in Postgres. Every error names the field and shows the limit.

Types are strict, decided once for every body format: a number must be a JSON number
(``"64"`` is refused), an integer field takes only integers (``64.0`` is refused), a
boolean is never a number, and ``null`` means the same as leaving the field out. A value
is refused rather than replaced: ``width: 0`` or ``scheduler: ""`` is a 422, never the
model's default.
"""
from __future__ import annotations

import secrets
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from fresco.adapters import MAX_LORAS, MAX_WEIGHT, MIN_WEIGHT, check_loras
from fresco.errors import InvalidSpec
from fresco.families import check_spec as check_family
from fresco.registry import BETA_SCHEDULES, OUTPUT_FORMATS, ModelEntry, Registry

MAX_SEED = 2**63 - 1
MAX_CUSTOM_ID = 256
# The caller's own JSON (``metadata``, on a job and on a batch) is bounded at the edge so
# that whatever is stored can be served back: 16 KiB as compact UTF-8 JSON, and nesting
# well inside what the JSON encoders on the way out recurse through (pydantic-core's
# serializer gives up near 255 levels).
MAX_METADATA_BYTES = 16 * 1024
MAX_JSON_DEPTH = 32

# Fields that change the shape of the pipeline call: jobs agreeing on all of them can
# share one sampling call. Everything else (prompt, negative prompt, seed, format) is
# per image.
SIGNATURE_FIELDS = ("model", "kind", "width", "height", "steps", "scheduler", "beta_schedule", "guidance_scale",
                    "strength", "loras")


_INT = "A JSON integer (not a string such as \"64\", not 64.0, not a boolean)."
_NUM = "A JSON number (an integer is fine; not a string, not a boolean, finite)."


class LoraRef(BaseModel):
    """One adapter a job applies, and how strongly."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    id: str = Field(description="An adapter id from GET /v1/adapters (the registry's, or one your tenant uploaded) "
                                "made for the job's model.")
    weight: float = Field(default=1.0, description=f"How strongly it applies, {MIN_WEIGHT:g}..{MAX_WEIGHT:g}: 0 draws "
                                                   f"the base model's picture, 1 the adapter's as trained. {_NUM}")


class SpecFields(BaseModel):
    """A spec as a client writes it: every field optional but the prompt. ``null`` is the
    same as leaving a field out."""

    # strict: no "64" for 64, no true for 1; ints are still accepted for float fields.
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    model: str | None = Field(default=None, description="Model id from GET /v1/models; default: the registry's default model. An empty string is refused.")
    prompt: str | None = Field(default=None, description="What to draw. Non-empty, no NUL, at most the model's max_prompt_chars.")
    negative_prompt: str | None = Field(default=None, description="What to steer away from (replaces the empty unconditional prompt).")
    width: int | None = Field(default=None, gt=0, description=f"Pixels, a multiple of 8 (16 for SD3 and Flux models) within the model's min_size..max_width. {_INT}")
    height: int | None = Field(default=None, gt=0, description=f"Pixels, a multiple of 8 (16 for SD3 and Flux models) within the model's min_size..max_height. {_INT}")
    steps: int | None = Field(default=None, ge=1, description=f"Sampling steps, 1..the model's max_steps. {_INT}")
    guidance_scale: float | None = Field(default=None, ge=0, description=f"Classifier-free guidance, 0..the model's max_guidance_scale. {_NUM}")
    scheduler: str | None = Field(default=None, description="One of the model's schedulers (ddim, ddpm, pndm, euler, euler_a, heun, dpmpp_2m, dpmpp_sde, unipc, lcm; flow_euler for flow-matching models). GET /v1/models lists each model's. An empty string is refused.")
    beta_schedule: str | None = Field(default=None, description="Noise schedule override: linear, scaled_linear or cosine.")
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED, description=f"0..2^63-1; chosen and recorded when absent. Same seed + spec = same image. {_INT}")
    output_format: str | None = Field(default=None, description="png (default), webp or jpeg. An empty string is refused.")
    init_image: str | None = Field(default=None, description="Image-to-image / inpainting input: `upload:ID` from POST /v1/uploads, or base64 (PNG, JPEG, WebP).")
    mask_image: str | None = Field(default=None, description="Inpainting mask (white = repaint), as init_image; needs init_image.")
    strength: float | None = Field(default=None, gt=0, le=1, description=f"Image-to-image: how far from init_image, (0, 1]; default 0.8. int(steps × strength) must be at least 1. {_NUM}")
    reuse: bool | None = Field(default=None, description="The result cache: true gives this job the image of an identical earlier job of your tenant that succeeded (same model revision, every spec field and the seed; so give a seed) instead of rendering it again; the job then names it in `reused_from`. Default false: always render.")
    loras: list[LoraRef] | None = Field(default=None, description=f"LoRA adapters applied to the model for this job, at "
                                       f"most {MAX_LORAS}, each id once: `[{{\"id\": \"shapes-swap\", "
                                       f"\"weight\": 0.8}}]`. Jobs with the same adapters and weights share a "
                                       "sampling call. See docs/models.md, Adapters.")
    custom_id: str | None = Field(default=None, description="Your own reference, echoed back.")
    metadata: dict[str, Any] | None = Field(default=None, description=f"Your own JSON object, echoed back: at most {MAX_METADATA_BYTES // 1024} KiB as compact JSON, nested at most {MAX_JSON_DEPTH} levels, finite numbers only.")

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


def _fail(prefix: str, field: str, message: str, inherited: Collection[str] = ()) -> InvalidSpec:
    if field in inherited:  # the value came from the batch's defaults: name where to fix it
        where = prefix.rstrip(".")
        return InvalidSpec(f"defaults.{field} (applied to {where}): {message}", field=f"defaults.{field}")
    return InvalidSpec(f"{prefix}{field}: {message}", field=f"{prefix}{field}")


def resolve(fields: dict[str, Any], registry: Registry, *, where: str = "",
            inherited: Collection[str] = ()) -> dict[str, Any]:
    """Apply registry defaults and limits; return the complete spec or raise InvalidSpec.

    ``fields`` is a SpecFields dump with unset fields left out; ``where`` prefixes the
    field in error messages (``items[3].``) so a client can find the bad item;
    ``inherited`` names the fields that came from a batch's ``defaults``, so their errors
    name ``defaults.<field>``. A field is absent only when it is None: a given value that
    is empty or zero is checked like any other, never replaced by the model's default.
    """
    def fail(field: str, message: str) -> InvalidSpec:
        return _fail(where, field, message, inherited)

    model_id = fields.get("model")
    model_id = registry.default if model_id is None else model_id
    entry: ModelEntry | None = registry.get(model_id)
    if entry is None:
        raise fail("model", f"unknown model {model_id!r}; available: {', '.join(registry.entries)}")
    prompt = fields.get("prompt")
    if prompt is None or not prompt.strip():
        raise fail("prompt", "is required and must not be empty")
    for name in ("prompt", "negative_prompt"):
        value = fields.get(name)
        if value is not None and len(value) > entry.max_prompt_chars:
            raise fail(name, f"is {len(value)} characters; model {entry.id} allows at most {entry.max_prompt_chars}")

    width = _given(fields, "width", entry.default_width)
    height = _given(fields, "height", entry.default_height)
    for name, value, limit in (("width", width, entry.max_width), ("height", height, entry.max_height)):
        if value % 8:
            raise fail(name, f"{value} is not a multiple of 8")
        if not entry.min_size <= value <= limit:
            raise fail(name, f"{value} is outside {entry.min_size}..{limit} for model {entry.id}")

    steps = _given(fields, "steps", entry.default_steps)
    if not 1 <= steps <= entry.max_steps:
        raise fail("steps", f"{steps} is outside 1..{entry.max_steps} for model {entry.id}")
    guidance = float(_given(fields, "guidance_scale", entry.default_guidance))
    if not 0.0 <= guidance <= entry.max_guidance:
        raise fail("guidance_scale", f"{guidance} is outside 0..{entry.max_guidance} for model {entry.id}")
    scheduler = _given(fields, "scheduler", entry.default_scheduler)
    if scheduler not in entry.schedulers:
        raise fail("scheduler",
                   f"{scheduler!r} is not one of model {entry.id}'s schedulers: {', '.join(entry.schedulers)}")
    beta = fields.get("beta_schedule")
    if beta is not None and beta not in BETA_SCHEDULES:
        raise fail("beta_schedule", f"{beta!r} is not one of {', '.join(BETA_SCHEDULES)}")
    fmt = _given(fields, "output_format", "png")
    if fmt not in OUTPUT_FORMATS:
        raise fail("output_format", f"{fmt!r} is not one of {', '.join(OUTPUT_FORMATS)}")
    seed = fields.get("seed")
    if seed is None:
        seed = secrets.randbelow(2**32)  # chosen here so it is recorded with the job
    elif not 0 <= seed <= MAX_SEED:
        raise fail("seed", f"{seed} is outside 0..{MAX_SEED}")
    init_image, mask_image, strength = fields.get("init_image"), fields.get("mask_image"), fields.get("strength")
    kind = "inpainting" if mask_image is not None else "image-to-image" if init_image is not None else "text-to-image"
    if mask_image is not None and init_image is None:
        raise fail("mask_image", "needs an init_image to paint into")
    if kind not in entry.kinds:
        field = "mask_image" if kind == "inpainting" else "init_image"
        raise fail(field, f"model {entry.id} does not do {kind} (it does: {', '.join(entry.kinds)})")
    if kind == "text-to-image":
        if strength is not None:
            raise fail("strength", "applies only with an init_image")
    else:
        strength = 0.8 if strength is None else float(strength)
        if not 0.0 < strength <= 1.0:
            raise fail("strength", f"{strength} is outside (0, 1]")
        # diffusers denoises int(steps * strength) of the steps: none is no image at all.
        if int(steps * strength) < 1:
            raise fail("strength", f"{strength:g} with {steps} steps gives int({steps} × {strength:g}) = 0 denoising "
                                   f"steps; raise strength or steps so that int(steps × strength) is at least 1")

    check_family(entry, fields, where)
    # loras from the batch's defaults: an error names defaults.loras…, where to fix it
    loras = check_loras(fields.get("loras"), entry, registry, "defaults." if "loras" in inherited else where)
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
    if fields.get("reuse"):  # only when asked: the specs of every other job stay as they were
        spec["reuse"] = True
    if loras:  # absent when none: a job without adapters has the spec it always had
        spec["loras"] = loras
    return spec


def _given(fields: dict[str, Any], name: str, default: Any) -> Any:
    value = fields.get(name)
    return default if value is None else value


@dataclass(frozen=True, slots=True)
class Signature:
    """The batch signature: jobs with equal signatures can share one pipeline call.

    Printed readable on purpose (it is stored in the jobs table and shows in logs and
    Flower): ``model|kind|WxH|steps|scheduler|beta or -|guidance`` and ``|s<strength>``
    for image-to-image and inpainting, numbers as ``%g``, then ``|l<id>@<weight>+…`` when
    the job applies LoRA adapters (sorted by id, weights as ``repr`` so that equal
    signatures mean exactly equal weights: the worker applies the first job's). ``str``
    prints it and :meth:`parse` reads it back; print(parse(text)) == text for every
    printed form."""

    model: str
    kind: str
    width: int
    height: int
    steps: int
    scheduler: str
    beta_schedule: str | None
    guidance_scale: float
    strength: float | None = None
    loras: tuple[tuple[str, float], ...] = ()  # (adapter id, weight), sorted by id

    @classmethod
    def of(cls, spec: dict[str, Any]) -> Signature:
        """The signature of a resolved spec (see :func:`resolve`)."""
        loras = tuple((r["id"], float(r["weight"])) for r in spec.get("loras") or ())
        return cls(spec["model"], spec["kind"], spec["width"], spec["height"], spec["steps"], spec["scheduler"],
                   spec["beta_schedule"], spec["guidance_scale"], spec.get("strength"), loras)

    def __str__(self) -> str:
        text = (f"{self.model}|{self.kind}|{self.width}x{self.height}|{self.steps}"
                f"|{self.scheduler}|{self.beta_schedule or '-'}|{self.guidance_scale:g}")
        if self.strength is not None:
            text += f"|s{self.strength:g}"
        if self.loras:
            text += "|l" + "+".join(f"{name}@{weight!r}" for name, weight in self.loras)
        return text

    @classmethod
    def parse(cls, text: str) -> Signature:
        """Read a printed signature; ValueError names what is wrong with it."""
        parts = text.split("|")
        tail = parts[7:]
        strength = float(tail.pop(0)[1:]) if tail and tail[0].startswith("s") else None
        loras: tuple[tuple[str, float], ...] = ()
        if tail and tail[0].startswith("l") and len(tail[0]) > 1:
            pairs = [item.rpartition("@") for item in tail.pop(0)[1:].split("+")]
            if not all(name and sep for name, sep, _ in pairs):
                raise ValueError(f"not a batch signature: {text!r}")
            loras = tuple((name, float(weight)) for name, _, weight in pairs)
        if len(parts) < 7 or tail or "x" not in parts[2]:
            raise ValueError(f"not a batch signature: {text!r}")
        width, height = (int(x) for x in parts[2].split("x", 1))
        return cls(parts[0], parts[1], width, height, int(parts[3]), parts[4],
                   None if parts[5] == "-" else parts[5], float(parts[6]), strength, loras)


def signature(spec: dict[str, Any]) -> str:
    """The printed signature of a resolved spec: what the jobs table stores."""
    return str(Signature.of(spec))


def signature_work(sig: str) -> tuple[int, int, int]:
    """(width, height, steps) of a printed signature: what its render costs."""
    s = Signature.parse(sig)
    return s.width, s.height, s.steps
