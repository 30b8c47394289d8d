"""The model registry: one TOML file (``FRESCO_MODELS``) mapping a model id to its source,
pipeline, dtype, defaults and limits. The API validates specs against it; workers load
pipelines from it; ``GET /v1/models`` serves it.

A bad file is a startup error that names the entry and the field.
"""
from __future__ import annotations

import functools
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from fresco.adapters import AdapterEntry
from fresco.constants import DEFAULT_QUEUE
from fresco.errors import RegistryError
from fresco.families import FAMILIES, FamilyName

# Every scheduler name the farm knows, mapped to its diffusers class (and kwargs).
# `euler_a` is Euler ancestral; `dpmpp_2m` is DPM-Solver++ (2M); `dpmpp_sde` needs the
# optional torchsde package and `lcm` an LCM-distilled model, so registry entries only
# list them where they apply.
SCHEDULERS: dict[str, tuple[str, dict]] = {
    "ddim": ("DDIMScheduler", {}),
    "ddpm": ("DDPMScheduler", {}),
    "pndm": ("PNDMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "dpmpp_sde": ("DPMSolverSDEScheduler", {}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "lcm": ("LCMScheduler", {}),
    # flow-matching models (SD3, Flux) only: fresco/families.py
    "flow_euler": ("FlowMatchEulerDiscreteScheduler", {}),
}
BETA_SCHEDULES = ("linear", "scaled_linear", "cosine")
OUTPUT_FORMATS = ("png", "webp", "jpeg")
PipelineKind = Literal["text-to-image", "image-to-image", "inpainting"]


DType = Literal["float32", "float16", "bfloat16"]


class DTypes(BaseModel):
    """torch dtype per device: fp32 on a CPU, half precision on a GPU."""

    model_config = ConfigDict(extra="forbid")
    cpu: DType = "float32"
    cuda: DType = "float16"


class BatchSizes(BaseModel):
    """Most jobs in one pipeline call, per device (B)."""

    model_config = ConfigDict(extra="forbid")
    cpu: int = Field(default=4, ge=1, le=1024)
    cuda: int = Field(default=16, ge=1, le=1024)


class ModelEntry(BaseModel):
    """One registry entry. Sizes are pixels; limits are inclusive."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
    description: str = ""
    # A folder (relative to the registry file), "hub:org/name@revision", or "s3://bucket/prefix".
    source: str
    # "module:Class" of a DiffusionPipeline subclass; default: diffusers' auto pipeline.
    pipeline_class: str | None = None
    # What the spec may ask of it and how the worker calls it (fresco/families.py).
    family: FamilyName = "sd"
    kinds: list[PipelineKind] = ["text-to-image"]
    dtype: DTypes = DTypes()
    # "fp8": the denoiser's linear layers run float8 matmuls (torchao's dynamic float8
    # quantization, per-row scales) on GPUs that have them (compute capability 8.9+:
    # Ada, Hopper); elsewhere the model runs in its dtype, with a warning. Off by default:
    # it changes pixels; `bench/gpu.py --compile-session --fp8` measures by how much
    # against bf16 on the same seeds (42.6 dB PSNR on an H200: docs/models.md). A model with
    # it takes no LoRA adapters.
    matmul_precision: Literal["default", "fp8"] = "default"
    # The UNet's memory format, the best measured for this model: contiguous (PyTorch's
    # default) for SD 1.5, where channels_last ran at 0.75-0.91x eager and within 1%
    # compiled on an H100 and H200 (bench/README.md). UNet families only.
    memory_format: Literal["contiguous", "channels_last"] = "contiguous"
    max_batch: BatchSizes = BatchSizes()
    queue: str = DEFAULT_QUEUE

    default_width: int = 512
    default_height: int = 512
    min_size: int = 64
    max_width: int = 1024
    max_height: int = 1024
    default_steps: int = 25
    max_steps: int = 150
    default_guidance: float = 7.5
    max_guidance: float = 30.0
    default_scheduler: str = "ddim"
    schedulers: list[str] = ["ddim", "ddpm", "pndm", "euler", "euler_a", "heun", "dpmpp_2m", "unipc"]
    max_prompt_chars: int = 2000

    @model_validator(mode="before")
    @classmethod
    def _family_defaults(cls, data: Any) -> Any:
        """An entry that lists no schedulers gets its family's (a flow-matching model cannot
        run the noise-prediction defaults)."""
        if isinstance(data, dict) and data.get("family") in FAMILIES:
            family = FAMILIES[data["family"]]
            data = {"schedulers": list(family.default_schedulers), "default_scheduler": family.default_scheduler,
                    **data}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> ModelEntry:
        family = FAMILIES[self.family]
        for name in self.schedulers:
            if name not in SCHEDULERS:
                raise ValueError(f"schedulers: unknown scheduler {name!r} (known: {', '.join(SCHEDULERS)})")
            if name not in family.schedulers:
                raise ValueError(f"schedulers: {name!r} does not apply to family {family.name} "
                                 f"(it runs: {', '.join(family.schedulers)})")
        if self.memory_format != "contiguous" and family.denoiser != "unet":
            raise ValueError(f"memory_format: {self.memory_format!r} applies to UNet families only (sd, sdxl); "
                             f"family {family.name}'s {family.denoiser} runs contiguous")
        if self.default_scheduler not in self.schedulers:
            raise ValueError(f"default_scheduler: {self.default_scheduler!r} is not in schedulers")
        for field in ("default_width", "default_height", "min_size", "max_width", "max_height"):
            if getattr(self, field) % family.size_multiple:
                raise ValueError(f"{field}: {getattr(self, field)} is not a multiple of {family.size_multiple}"
                                 + (f" (family {family.name})" if family.size_multiple != 8 else ""))
        if not self.min_size <= self.default_width <= self.max_width:
            raise ValueError("default_width: outside min_size..max_width")
        if not self.min_size <= self.default_height <= self.max_height:
            raise ValueError("default_height: outside min_size..max_height")
        if not 1 <= self.default_steps <= self.max_steps:
            raise ValueError("default_steps: outside 1..max_steps")
        return self

    def batch_size(self, device: str) -> int:
        return self.max_batch.cuda if device == "cuda" else self.max_batch.cpu

    def torch_dtype_name(self, device: str) -> str:
        return self.dtype.cuda if device == "cuda" else self.dtype.cpu

    def accepted_fields(self) -> list[str]:
        """The spec fields a job for this model may set: all but those its family refuses
        and the image inputs of kinds it does not do."""
        from fresco.spec import SpecFields  # fresco.spec imports this module

        refused = set(FAMILIES[self.family].refuses)
        if self.kinds == ["text-to-image"]:
            refused |= {"init_image", "mask_image", "strength"}
        elif "inpainting" not in self.kinds:
            refused.add("mask_image")
        return [name for name in SpecFields.model_fields if name not in refused]

    def public(self) -> dict:
        """What ``GET /v1/models`` shows: defaults and limits, not where weights live."""
        family = FAMILIES[self.family]
        return {
            "id": self.id,
            "object": "model",
            "description": self.description,
            "family": family.name,
            "guidance": family.guidance,
            "fields": self.accepted_fields(),
            "kinds": self.kinds,
            "queue": self.queue,
            "defaults": {
                "width": self.default_width, "height": self.default_height,
                "steps": self.default_steps, "guidance_scale": self.default_guidance,
                "scheduler": self.default_scheduler,
            },
            "limits": {
                "min_size": self.min_size, "max_width": self.max_width, "max_height": self.max_height,
                "size_multiple": family.size_multiple,
                "max_steps": self.max_steps, "max_guidance_scale": self.max_guidance,
                "max_prompt_chars": self.max_prompt_chars,
                "max_batch": {"cpu": self.max_batch.cpu, "cuda": self.max_batch.cuda},
            },
            "schedulers": self.schedulers,
            "beta_schedules": [] if "beta_schedule" in family.refuses else list(BETA_SCHEDULES),
            "output_formats": list(OUTPUT_FORMATS),
        }


class Registry:
    """Loaded registry. The first entry (or ``default``) is the default model."""

    def __init__(self, entries: list[ModelEntry], default: str, root: Path,
                 adapters: list[AdapterEntry] | None = None) -> None:
        self.entries = {e.id: e for e in entries}
        self.default = default
        self.root = root
        self.adapters = {a.id: a for a in adapters or []}

    def adapters_for(self, model_id: str) -> list[AdapterEntry]:
        """The registry's adapters made for this model."""
        return [a for a in self.adapters.values() if a.base == model_id]

    def get(self, model_id: str) -> ModelEntry | None:
        return self.entries.get(model_id)

    def ordered(self) -> list[ModelEntry]:
        """Default model first: clients that pick "the first model" get the default."""
        first = self.entries[self.default]
        return [first] + [e for e in self.entries.values() if e.id != self.default]

    def queues(self) -> list[str]:
        return sorted({e.queue for e in self.entries.values()})

    def resolve_source(self, entry: ModelEntry) -> str:
        """A local folder as an absolute path; hub and s3 sources as written."""
        if entry.source.startswith(("hub:", "s3://")):
            return entry.source
        path = Path(entry.source)
        return str(path if path.is_absolute() else (self.root / path).resolve())


def load_registry(path: Path | str) -> Registry:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise RegistryError(f"model registry {path} does not exist (set FRESCO_MODELS)") from None
    except tomllib.TOMLDecodeError as e:
        raise RegistryError(f"model registry {path} is not valid TOML: {e}") from None
    items = raw.get("models")
    if not isinstance(items, list) or not items:
        raise RegistryError(f"model registry {path}: no [[models]] entries")
    entries: list[ModelEntry] = []
    for i, item in enumerate(items):
        name = item.get("id", f"#{i + 1}") if isinstance(item, dict) else f"#{i + 1}"
        try:
            entries.append(ModelEntry.model_validate(item))
        except ValidationError as e:
            err = e.errors()[0]
            field, msg = ".".join(str(p) for p in err["loc"]), err["msg"]
            if not field:  # a cross-field check: its message starts with the field's name
                field, _, msg = msg.removeprefix("Value error, ").partition(": ")
            raise RegistryError(f"model registry {path}: model {name!r}, field {field}: {msg}") from None
    ids = [e.id for e in entries]
    dupes = {i for i in ids if ids.count(i) > 1}
    if dupes:
        raise RegistryError(f"model registry {path}: model id {sorted(dupes)[0]!r} is listed twice")
    default = raw.get("default", entries[0].id)
    if default not in ids:
        raise RegistryError(f"model registry {path}: default {default!r} is not a listed model")
    adapters = _load_adapters(path, raw.get("adapters", []), set(ids))
    return Registry(entries, default, path.parent.resolve(), adapters)


def _load_adapters(path: Path, items: Any, models: set[str]) -> list[AdapterEntry]:
    """The ``[[adapters]]`` entries (fresco/adapters.py): LoRAs naming their base model."""
    if not isinstance(items, list):
        raise RegistryError(f"model registry {path}: adapters must be [[adapters]] tables")
    adapters: list[AdapterEntry] = []
    for i, item in enumerate(items):
        name = item.get("id", f"#{i + 1}") if isinstance(item, dict) else f"#{i + 1}"
        try:
            adapter = AdapterEntry.model_validate(item)
        except ValidationError as e:
            err = e.errors()[0]
            raise RegistryError(f"model registry {path}: adapter {name!r}, field "
                                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}") from None
        if adapter.base not in models:
            raise RegistryError(f"model registry {path}: adapter {name!r}, field base: {adapter.base!r} is not a "
                                "listed model")
        if any(a.id == adapter.id for a in adapters):
            raise RegistryError(f"model registry {path}: adapter id {adapter.id!r} is listed twice")
        adapters.append(adapter)
    return adapters


@functools.lru_cache(maxsize=4)
def _cached(path: str) -> Registry:
    return load_registry(path)


def get_registry() -> Registry:
    from fresco.settings import get_settings

    return _cached(str(get_settings().models))
