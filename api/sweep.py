"""Sweeps: a batch's ``sweep`` axes ({axis: [values]}) applied to every item. The server
expands the product: each item becomes one job per point (the last axis varying
fastest), each job knowing its coordinates. docs/design.md, *Sweeps and contact sheets*.

Checked before any row is written, each failure a 422 naming the axis
(``sweep.guidance_scale[2]``): known axes only, non-empty lists without repeats, each
value of its field's JSON type; values the model refuses are named the same way when
each job is resolved (:func:`expand`). An axis is the sweep's alone: setting it in
``defaults`` or an item as well is refused rather than silently overridden.
"""
from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from fresco.errors import InvalidSpec, PayloadTooLarge
from fresco.spec import SpecFields

# What a sweep may vary: the fields that change what is drawn and how it is sampled.
AXES = ("prompt", "seed", "guidance_scale", "steps", "scheduler", "beta_schedule", "model")


@dataclass(frozen=True, slots=True)
class Sweep:
    """The axes in the order given: the first is the slowest, the last the fastest."""

    axes: tuple[tuple[str, tuple[Any, ...]], ...]

    @property
    def size(self) -> int:
        return math.prod(len(values) for _, values in self.axes)

    def points(self) -> Iterator[tuple[dict[str, Any], dict[str, int]]]:
        """Every point: (coordinates {axis: value}, {axis: index of the value})."""
        names = [name for name, _ in self.axes]
        for indexes in itertools.product(*(range(len(values)) for _, values in self.axes)):
            yield ({n: self.axes[a][1][i] for a, (n, i) in enumerate(zip(names, indexes))},
                   dict(zip(names, indexes)))

    def stored(self) -> list[list[Any]]:
        """As ``batches.sweep`` keeps it: [[axis, [values]], ...] (JSONB does not keep an
        object's key order, and the order decides the contact sheet's rows and columns)."""
        return [[name, list(values)] for name, values in self.axes]

    @staticmethod
    def public(stored: list[list[Any]] | None) -> dict[str, list[Any]] | None:
        return None if stored is None else {name: values for name, values in stored}


def check_sweep(value: Any, defaults: dict[str, Any], max_jobs: int) -> Sweep | None:
    """The batch's ``sweep`` field checked, or None when absent."""
    if value is None:
        return None
    if not isinstance(value, dict) or not value:
        raise InvalidSpec(f"sweep: must be an object of axes, e.g. {{\"steps\": [10, 20]}}, not {_shown(value)}",
                          field="sweep")
    axes = []
    for name, values in value.items():
        if name not in AXES:
            raise InvalidSpec(f"sweep.{name}: not an axis a sweep can vary (axes: {', '.join(AXES)})",
                              field=f"sweep.{name}")
        if not isinstance(values, list) or not values:
            raise InvalidSpec(f"sweep.{name}: must be a non-empty list of values, not {_shown(values)}",
                              field=f"sweep.{name}")
        seen = set()
        for i, v in enumerate(values):
            where = f"sweep.{name}[{i}]"
            if v is None:
                raise InvalidSpec(f"{where}: null is not a value to sweep", field=where)
            try:
                SpecFields.model_validate({name: v})
            except ValidationError as e:
                raise InvalidSpec(f"{where}: {e.errors()[0]['msg']}, not {_shown(v)}", field=where) from None
            key = json.dumps(v)
            if key in seen:
                raise InvalidSpec(f"{where}: {_shown(v)} is already on this axis", field=where)
            seen.add(key)
        if defaults.get(name) is not None:
            raise InvalidSpec(f"defaults.{name}: the batch sweeps {name}; leave it out of the defaults",
                              field=f"defaults.{name}")
        axes.append((name, tuple(values)))
    sweep = Sweep(tuple(axes))
    if sweep.size > max_jobs:
        raise PayloadTooLarge(f"sweep: {' × '.join(str(len(v)) for _, v in sweep.axes)} = {sweep.size} jobs per "
                              f"item, more than {max_jobs} (FRESCO_MAX_BATCH_ITEMS) in one batch")
    return sweep


def expand(sweep: Sweep, item: Any, where: str) -> Iterator[tuple[dict[str, Any], dict[str, Any], dict[str, int]]]:
    """One item as the items of its points: (item with the point's values, coordinates,
    value indexes). The item must leave the swept fields to the sweep."""
    if isinstance(item, dict):
        overrides = item.get("overrides") if isinstance(item.get("overrides"), dict) else {}
        for name, _ in sweep.axes:
            for given, field in ((item, f"{where}.{name}"), (overrides, f"{where}.overrides.{name}")):
                if given.get(name) is not None:
                    raise InvalidSpec(f"{field}: the batch sweeps {name}; leave it out of the items", field=field)
    for coords, indexes in sweep.points():
        yield ({**item, **coords} if isinstance(item, dict) else item), coords, indexes


def name_axis(e: InvalidSpec, where: str, indexes: dict[str, int]) -> InvalidSpec:
    """An error about a swept field names the axis and the value (``sweep.steps[1]``)."""
    field = str(e.extra.get("field", ""))
    prefix = f"{where}." if where else ""
    name = field.removeprefix(prefix)
    if not field.startswith(prefix) or name not in indexes:
        return e
    axis = f"sweep.{name}[{indexes[name]}]"
    reason = e.message.split(": ", 1)[1] if ": " in e.message else e.message
    return InvalidSpec(f"{axis} (applied to {where}): {reason}", field=axis)


def _shown(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:40] + "…"
