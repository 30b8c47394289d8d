"""Registry files for tests and benchmarks: the one place that writes a model registry
(``FRESCO_MODELS``), so that each test names only the fields it cares about.

    write_registry(path, model("tiny-sd", max_batch={"cpu": 4, "cuda": 4}))
    write_registry(path, shipped_model("tiny-sd", id="model-a"), default="model-a")
"""
from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from support.procs import ROOT

MODELS = ROOT / "models"
TINY_SD = MODELS / "tiny-sd"


def model(model_id: str, *, source: str | Path = TINY_SD, **fields: Any) -> dict[str, Any]:
    """A registry entry with only the fields given; the registry's defaults fill the rest
    (fresco/registry.py). ``source`` defaults to the shipped tiny-sd folder."""
    return {"id": model_id, "source": str(source), **fields}


def shipped_model(model_id: str, **overrides: Any) -> dict[str, Any]:
    """The entry of models/registry.toml for ``model_id``, its folder made absolute (the
    new file lives elsewhere), with ``overrides`` applied (another id, batch size, ...)."""
    raw = tomllib.loads((MODELS / "registry.toml").read_text())
    entry = dict(next(m for m in raw["models"] if m["id"] == model_id))
    if not entry["source"].startswith(("hub:", "s3://")) and not Path(entry["source"]).is_absolute():
        entry["source"] = str((MODELS / entry["source"]).resolve())
    return {**entry, **overrides}


def write_registry(path: Path, *models: dict[str, Any], default: str | None = None) -> Path:
    """Write ``models`` as a registry file at ``path`` (default model: ``default``, else
    the first) and return the path."""
    lines = [f"default = {_value(default or models[0]['id'])}"]
    for entry in models:
        lines.append("\n[[models]]")
        lines.extend(f"{key} = {_value(value)}" for key, value in entry.items())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def _value(value: Any) -> str:
    """A TOML value. The standard library reads TOML but does not write it; registry
    values are strings, numbers, booleans, lists of those and flat tables, and for those
    JSON's literal syntax is valid TOML (tables become inline tables)."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return json.dumps(value)
