"""LoRA adapters on warm models: applied per sampling call, never reloading the base.

A call's adapters (the first job's ``spec["loras"]``; jobs share a call only with equal
adapters and weights, fresco/spec.py ``Signature``) are loaded into the base's denoiser
through diffusers' PEFT integration (``load_lora_adapter``) once, kept there, and switched
per call with ``set_adapters`` (which adapters, which weights). A call without adapters
runs with the LoRA layers disabled (``disable_lora``): PEFT then calls each wrapped
layer's base module alone, so the base's picture comes out exactly, whatever ran before.

Loaded adapters cost memory on the device: they are kept in an LRU bounded by
FRESCO_ADAPTER_CACHE_BYTES (bytes of LoRA weights, across models); past it the least
recently used adapter not needed by the current call is deleted from its denoiser. An
adapter whose base was evicted from the model cache went with it and is loaded again
when a call needs it.
"""
from __future__ import annotations

import logging
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from fresco.adapters import ADAPTER_KEY, UPLOADED_ID, registry_file
from fresco.errors import RenderError
from fresco.families import FAMILIES
from fresco.registry import ModelEntry, Registry
from fresco.settings import Settings
from fresco.storage import Storage

log = logging.getLogger(__name__)


@dataclass
class AdapterStats:
    loads: int = 0
    hits: int = 0
    evictions: int = 0
    load_seconds: float = 0.0
    bytes_used: int = 0


@dataclass
class _Held:
    nbytes: int
    denoiser: weakref.ref  # the module it is loaded into; dead once the base was evicted
    loaded_at: float = field(default_factory=time.monotonic)


def denoiser_of(pipe: Any, entry: ModelEntry) -> Any:
    """The module adapters load into; under FRESCO_COMPILE the compiled wrapper's original
    (torch recompiles the wrapper when its layers change)."""
    module = getattr(pipe, FAMILIES[entry.family].denoiser)
    return getattr(module, "_orig_mod", module)


class AdapterCache:
    def __init__(self, registry: Registry, settings: Settings, storage: Storage, budget_bytes: int | None = None) -> None:
        self.registry = registry
        self.settings = settings
        self.storage = storage
        self.budget = budget_bytes or settings.adapter_cache_bytes
        self.stats = AdapterStats()
        self._held: OrderedDict[tuple[str, str], _Held] = OrderedDict()  # (model, adapter) -> held

    def held(self, model_id: str) -> list[str]:
        """Adapters loaded into this model's denoiser now, least recently used first."""
        self._forget_dead()
        return [a for (m, a) in self._held if m == model_id]

    def apply(self, entry: ModelEntry, pipe: Any, loras: list[dict] | None) -> None:
        """Make the next call of ``pipe`` run with exactly these adapters and weights."""
        denoiser = denoiser_of(pipe, entry)
        if not loras:
            if getattr(denoiser, "_hf_peft_config_loaded", False):
                denoiser.disable_lora()
            return
        self._forget_dead()
        names = [r["id"] for r in loras]
        for name in names:
            key = (entry.id, name)
            held = self._held.get(key)
            if held is not None and held.denoiser() is denoiser and name in getattr(denoiser, "peft_config", {}):
                self._held.move_to_end(key)
                self.stats.hits += 1
                continue
            self._load(entry, denoiser, name, keep=set(names))
        denoiser.enable_lora()
        denoiser.set_adapters(names, weights=[float(r["weight"]) for r in loras])

    def _load(self, entry: ModelEntry, denoiser: Any, name: str, keep: set[str]) -> None:
        from safetensors.torch import load as load_safetensors

        started = time.perf_counter()
        try:
            state = load_safetensors(self._read(name))
        except Exception as e:
            raise RenderError(f"adapter {name!r} could not be read: {type(e).__name__}: {e}"[:1000]) from e
        nbytes = sum(t.numel() * t.element_size() for t in state.values())
        self._make_room(nbytes, keep={(entry.id, n) for n in keep})
        if name in getattr(denoiser, "peft_config", {}):  # loaded by someone this cache does not know of
            denoiser.delete_adapters(name)
        prefix = FAMILIES[entry.family].denoiser
        has_prefix = any(k.startswith(f"{prefix}.") for k in state)
        try:
            denoiser.load_lora_adapter(state, prefix=prefix if has_prefix else None, adapter_name=name)
        except Exception as e:
            raise RenderError(f"adapter {name!r} could not be applied to model {entry.id}: "
                              f"{type(e).__name__}: {e}"[:1000]) from e
        self._held[(entry.id, name)] = _Held(nbytes, weakref.ref(denoiser))
        self.stats.bytes_used += nbytes
        self.stats.loads += 1
        seconds = time.perf_counter() - started
        self.stats.load_seconds += seconds
        log.info("adapters: loaded %s into %s in %.3f s (%.1f MB)", name, entry.id, seconds, nbytes / 1e6)

    def _read(self, name: str) -> bytes:
        if UPLOADED_ID.match(name):
            return self.storage.get(ADAPTER_KEY.format(adapter=name))
        entry = self.registry.adapters[name]
        source = registry_file(self.registry, entry)
        if source.startswith("hub:"):
            from huggingface_hub import hf_hub_download

            repo, _, revision = source[4:].partition("@")
            path = hf_hub_download(repo, entry.weight_name, revision=revision or None,
                                   cache_dir=self.settings.hf_cache_dir)
            with open(path, "rb") as f:
                return f.read()
        if source.startswith("s3://"):
            import boto3

            bucket, _, key = source[5:].partition("/")
            client = boto3.client("s3", endpoint_url=self.settings.s3_endpoint_url,
                                  region_name=self.settings.s3_region)
            return client.get_object(Bucket=bucket, Key=key)["Body"].read()
        with open(source, "rb") as f:
            return f.read()

    def _make_room(self, nbytes: int, keep: set[tuple[str, str]]) -> None:
        for key in list(self._held):
            if self.stats.bytes_used + nbytes <= self.budget:
                break
            if key in keep:
                continue
            held = self._held.pop(key)
            self.stats.bytes_used -= held.nbytes
            self.stats.evictions += 1
            denoiser = held.denoiser()
            if denoiser is not None and key[1] in getattr(denoiser, "peft_config", {}):
                denoiser.delete_adapters(key[1])
            log.info("adapters: unloaded %s from %s (%.1f MB) to fit %.1f MB", key[1], key[0], held.nbytes / 1e6,
                     nbytes / 1e6)

    def _forget_dead(self) -> None:
        """Adapters whose base model was evicted went with it."""
        for key, held in list(self._held.items()):
            if held.denoiser() is None:
                del self._held[key]
                self.stats.bytes_used -= held.nbytes
