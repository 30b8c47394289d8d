"""OpenAI image options -> the farm's spec fields: one job per image, sized from `size`
against the model's registry entry (a size it cannot render is a 400 naming the sizes it
can)."""
from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from api.openai_compat.schemas import OpenAIImageOptions
from fresco.errors import InvalidSpec
from fresco.families import FAMILIES
from fresco.registry import ModelEntry, Registry

_SIZE = re.compile(r"^([0-9]{1,5})x([0-9]{1,5})$")
# The spec fields an OpenAIImageOptions carries over as they are (the farm's extensions).
_PASSED = ("negative_prompt", "steps", "guidance_scale", "scheduler", "beta_schedule", "output_format")


def options(body: Any, where: str = "") -> OpenAIImageOptions:
    """``body`` checked as OpenAIImageOptions; the error names the field (``line 3.body.size``)."""
    try:
        return OpenAIImageOptions.model_validate(body)
    except ValidationError as e:
        raise pydantic_error(e, where) from None


def pydantic_error(e: ValidationError, where: str = "") -> InvalidSpec:
    err = e.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or "body"
    if err["type"] == "extra_forbidden":
        message = f"{field}: the farm does not act on this field, so it is refused"
    else:
        message = f"{field}: {err['msg']}"
    field = f"{where}{field}"
    return InvalidSpec(f"{where}{message}", field=field)


def model_entry(model: str | None, registry: Registry, where: str = "") -> ModelEntry:
    entry = registry.get(registry.default if model is None else model)
    if entry is None:
        raise InvalidSpec(f"{where}model: unknown model {model!r}; the farm's models: {', '.join(registry.entries)}",
                          field=f"{where}model")
    return entry


def renderable_sizes(entry: ModelEntry) -> str:
    """The sizes a model renders, in words and with examples."""
    m = FAMILIES[entry.family].size_multiple
    side = min(entry.max_width, entry.max_height)
    examples = dict.fromkeys([f"{entry.min_size}x{entry.min_size}", f"{entry.default_width}x{entry.default_height}",
                              f"{side}x{side}", f"{entry.max_width}x{entry.min_size}"])
    return (f"WxH with W in {entry.min_size}..{entry.max_width} and H in {entry.min_size}..{entry.max_height}, "
            f"each a multiple of {m} (for example {', '.join(examples)})")


def parse_size(size: str | None, entry: ModelEntry, where: str = "",
               fallback: tuple[int, int] | None = None) -> tuple[int, int]:
    """(width, height) of ``size``; absent or ``auto``: ``fallback`` or the model's default."""
    if size is None or size == "auto":
        return fallback or (entry.default_width, entry.default_height)
    match = _SIZE.match(size)
    w, h = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
    if not fits(entry, w, h):
        raise InvalidSpec(f"{where}size: model {entry.id} cannot render {size[:40]!r}; it renders "
                          f"{renderable_sizes(entry)}", field=f"{where}size")
    return w, h


def fits(entry: ModelEntry, width: int, height: int) -> bool:
    m = FAMILIES[entry.family].size_multiple
    return (width % m == 0 and height % m == 0 and entry.min_size <= width <= entry.max_width
            and entry.min_size <= height <= entry.max_height)


def job_fields(opts: OpenAIImageOptions, entry: ModelEntry, size: tuple[int, int]) -> list[dict[str, Any]]:
    """One farm spec (fields as a client writes them) per image: image i of n gets seed + i
    when a seed is given, else a seed of its own."""
    width, height = size
    base = {"model": entry.id, "prompt": opts.prompt, "width": width, "height": height,
            **{k: getattr(opts, k) for k in _PASSED if getattr(opts, k) is not None}}
    return [{**base, **({"seed": opts.seed + i} if opts.seed is not None else {})} for i in range(opts.n)]
