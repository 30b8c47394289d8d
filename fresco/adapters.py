"""LoRA adapters: the registry's entries and the checks an uploaded file must pass.

An adapter is a LoRA for one base model's denoiser (the UNet of SD-family models, the
transformer of SD3 and Flux; ``Family.denoiser``), in diffusers' LoRA format: a
safetensors file whose keys are ``<denoiser>.<module>.lora_A.weight`` /
``lora_B.weight`` (PEFT names; ``lora.down`` / ``lora.up`` are accepted too) with an
optional ``.alpha``. It comes from the registry (``[[adapters]]`` in registry.toml, shared
by every tenant) or from a tenant's upload (``POST /v1/adapters``, private to it). A
spec names adapters in ``loras``; the worker applies them to its warm base
(worker/adapters.py).

An upload is checked here before anything is stored: it must be a valid safetensors file
whose every key is a LoRA weight of a module the base's denoiser has, with shapes that fit
that module. No torch: the API imports this module; the base's weights are read from
their safetensors headers only.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from fresco.errors import InvalidSpec
from fresco.families import FAMILIES

if TYPE_CHECKING:
    from fresco.registry import ModelEntry, Registry

# Ids: registry adapters are named by people (lowercase, digits, "-"; no "." or "_":
# PEFT keeps adapters in a torch ModuleDict, whose keys cannot hold "."); uploaded ones
# are "ad_" + 32 hex digits, so the two never collide.
REGISTRY_ID = r"^[a-z0-9][a-z0-9-]{0,63}$"
UPLOADED_ID = re.compile(r"^ad_[0-9a-f]{32}$")
ADAPTER_KEY = "adapters/{adapter}.safetensors"  # object storage key of an uploaded adapter
DEFAULT_WEIGHT_NAME = "pytorch_lora_weights.safetensors"

# What a spec may ask: at most this many adapters, each weight within these bounds
# (0 is the base's picture, 1 the adapter's trained strength).
MAX_LORAS = 4
MIN_WEIGHT, MAX_WEIGHT = -2.0, 2.0

# <module>.<suffix>: which matrix of the module's LoRA a key holds.
_DOWN = (".lora_A.weight", ".lora.down.weight", ".lora_down.weight")
_UP = (".lora_B.weight", ".lora.up.weight", ".lora_up.weight")
_ALPHA = (".alpha",)


class AdapterEntry(BaseModel):
    """One ``[[adapters]]`` entry of the registry."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=REGISTRY_ID)
    # The model id it was trained for: a spec for another model naming it is a 422.
    base: str
    description: str = ""
    # A file or folder (relative to the registry file), "hub:org/name@revision", or
    # "s3://bucket/key" (a file).
    source: str
    # The file inside a folder or hub repository.
    weight_name: str = DEFAULT_WEIGHT_NAME

    def public(self) -> dict:
        return {"id": self.id, "object": "adapter", "base": self.base, "description": self.description,
                "origin": "registry"}


@dataclass(frozen=True)
class Adapter:
    """An adapter as the API sees it when a spec names it."""

    id: str
    base: str


def registry_file(registry: Registry, entry: AdapterEntry) -> str:
    """A local adapter's file as an absolute path; hub and s3 sources as written."""
    if entry.source.startswith(("hub:", "s3://")):
        return entry.source
    path = Path(entry.source)
    path = path if path.is_absolute() else (registry.root / path).resolve()
    return str(path / entry.weight_name if path.is_dir() else path)


def check_loras(loras: list[dict] | None, entry: ModelEntry, registry: Registry, where: str) -> list[dict]:
    """A spec's ``loras`` made canonical: weights as floats, sorted by id (the order of
    adapters changes nothing in the sum of their deltas, so it must not split batches).
    Registry adapters are checked here; uploaded ids (``ad_…``) are checked against the
    tenant's own by the API (api/adapter_inputs.py)."""
    if not loras:
        return []
    field = f"{where}loras"
    if entry.matmul_precision == "fp8":  # its linear layers are float8 tensors peft cannot wrap
        raise InvalidSpec(f"{field}: model {entry.id} runs fp8 matmuls (matmul_precision); LoRA adapters "
                          "apply only to models in their own precision", field=field)
    if len(loras) > MAX_LORAS:
        raise InvalidSpec(f"{field}: {len(loras)} adapters; at most {MAX_LORAS} per job", field=field)
    seen: set[str] = set()
    out = []
    for i, ref in enumerate(loras):
        item = f"{field}[{i}]"
        adapter_id, weight = ref["id"], float(ref["weight"])
        if adapter_id in seen:
            raise InvalidSpec(f"{item}.id: adapter {adapter_id!r} is named twice", field=f"{item}.id")
        seen.add(adapter_id)
        if not MIN_WEIGHT <= weight <= MAX_WEIGHT:
            raise InvalidSpec(f"{item}.weight: {weight:g} is outside {MIN_WEIGHT:g}..{MAX_WEIGHT:g}",
                              field=f"{item}.weight")
        if not UPLOADED_ID.match(adapter_id):
            found = registry.adapters.get(adapter_id)
            if found is None:
                raise InvalidSpec(f"{item}.id: unknown adapter {adapter_id!r} (GET /v1/adapters lists yours)",
                                  field=f"{item}.id")
            check_base(Adapter(found.id, found.base), entry, f"{item}.id")
        out.append({"id": adapter_id, "weight": weight})
    return sorted(out, key=lambda r: r["id"])


def check_base(adapter: Adapter, entry: ModelEntry, field: str) -> None:
    if adapter.base != entry.id:
        raise InvalidSpec(f"{field}: adapter {adapter.id!r} was made for model {adapter.base!r}, not {entry.id!r}",
                          field=field)


# --- uploads ------------------------------------------------------------------------------

def read_safetensors(data: bytes, field: str = "file") -> dict[str, tuple[str, list[int]]]:
    """name -> (dtype, shape) of a safetensors file; InvalidSpec if it is not one."""
    import safetensors

    try:
        tensors = safetensors.deserialize(data)
    except (safetensors.SafetensorError, ValueError, OverflowError) as e:  # say what the library found
        raise InvalidSpec(f"{field}: not a safetensors file ({str(e)[:200]}); adapters are uploaded as "
                          ".safetensors only", field=field) from None
    return {name: (info["dtype"], list(info["shape"])) for name, info in tensors}


@functools.lru_cache(maxsize=8)
def _base_shapes(folder: str) -> dict[str, tuple[int, ...]]:
    """Weight name -> shape of every tensor of a denoiser folder (headers only)."""
    from safetensors import safe_open

    shapes: dict[str, tuple[int, ...]] = {}
    for file in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(str(file), framework="numpy") as f:
            for name in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                shapes[name] = tuple(f.get_slice(name).get_shape())
    return shapes


def check_upload(data: bytes, entry: ModelEntry, registry: Registry) -> dict:
    """Check an uploaded LoRA against its base model; returns facts about it (rank,
    modules). Nothing here stores anything."""
    tensors = read_safetensors(data)
    if not tensors:
        raise InvalidSpec("file: the safetensors file holds no tensors", field="file")
    denoiser = FAMILIES[entry.family].denoiser
    source = registry.resolve_source(entry)
    folder = Path(source) / denoiser
    if source.startswith(("hub:", "s3://")) or not folder.is_dir():
        raise InvalidSpec(f"model: adapters for model {entry.id} cannot be uploaded: its weights are not in a "
                          "folder the API can read to check the adapter's keys (its source is "
                          f"{entry.source!r}); add the adapter to the registry instead", field="model")
    base = _base_shapes(str(folder))
    pairs: dict[str, dict[str, list[int]]] = {}
    for name, (dtype, shape) in tensors.items():
        module, part = _split(name, denoiser)
        if module is None:
            raise InvalidSpec(f"file: key {name!r} is not a LoRA weight of model {entry.id}'s {denoiser} "
                              f"(expected {denoiser}.<module>.lora_A.weight / lora_B.weight)", field="file")
        weight = base.get(f"{module}.weight")
        if weight is None:
            raise InvalidSpec(f"file: key {name!r} names module {module!r}, which model {entry.id}'s {denoiser} "
                              "does not have (an adapter for another base model?)", field="file")
        if part == "alpha":
            continue
        if not dtype.startswith(("F", "BF")) or len(shape) != len(weight):
            raise InvalidSpec(f"file: key {name!r} is {dtype} {shape}; module {module!r} has a weight of shape "
                              f"{list(weight)}", field="file")
        pairs.setdefault(module, {})[part] = shape
        fits = shape[1] == weight[1] if part == "down" else shape[0] == weight[0]
        if not fits:
            raise InvalidSpec(f"file: key {name!r} has shape {shape}, which does not fit module {module!r} of "
                              f"shape {list(weight)} in model {entry.id} (an adapter for another base model?)",
                              field="file")
    ranks = set()
    for module, parts in pairs.items():
        if set(parts) != {"down", "up"} or parts["down"][0] != parts["up"][1]:
            raise InvalidSpec(f"file: module {module!r} needs a lora_A and a lora_B weight of one rank",
                              field="file")
        ranks.add(parts["down"][0])
    return {"modules": len(pairs), "rank": max(ranks)}


def _split(key: str, denoiser: str) -> tuple[str | None, str]:
    """(module, "down" | "up" | "alpha") of a LoRA key, the denoiser's prefix removed."""
    key = key.removeprefix(f"{denoiser}.")
    for suffixes, part in ((_DOWN, "down"), (_UP, "up"), (_ALPHA, "alpha")):
        for suffix in suffixes:
            if key.endswith(suffix):
                return key[: -len(suffix)], part
    return None, ""
