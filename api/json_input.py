"""JSON request bodies: decode them, and hold every value to what Postgres can store and
the API can serve back, before anything is stored.

Checked everywhere a client's JSON enters (a job body, a batch body, each JSONL line, a
batch's header fields), each error a 422 naming the field:

- strings: no NUL character (text and jsonb refuse it), no lone UTF-16 surrogate (the
  ``\\ud800`` escape decodes to one; it has no UTF-8 encoding);
- numbers: finite. Python's decoder turns ``NaN``, ``Infinity`` and ``1e400`` into floats
  that Postgres refuses as JSON;
- nesting: each field's value at most ``MAX_JSON_DEPTH`` levels. Deeper values were
  stored, then could not be serialized back (pydantic-core stops near 255 levels);
- metadata (a job's and a batch's): a JSON object of at most ``MAX_METADATA_BYTES``.

The walks are iterative: the depth of a value is the client's choice, Python's stack is not.
"""
from __future__ import annotations

import json
import math
from typing import Any

import pydantic_core

from fresco.errors import InvalidSpec
from fresco.spec import MAX_JSON_DEPTH, MAX_METADATA_BYTES

_SCALARS = frozenset((int, bool, type(None)))
# Fields whose value is itself an object of fields (checked field by field, so each
# field's own depth counts from its value, wherever the object sits).
NESTED_FIELDS = ("defaults", "overrides")


def join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def decode(raw: bytes | str, where: str) -> Any:
    """Parse one JSON document; anything unparsable is a 422 naming ``where``."""
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:  # also: integers of more than 4300 digits
        raise InvalidSpec(f"{where}: not valid JSON ({str(e)[:200]})", field=where) from None
    except RecursionError:  # "[[[[…" nested deeper than the parser recurses
        raise InvalidSpec(f"{where}: JSON nested too deeply (at most {MAX_JSON_DEPTH} levels)", field=where) from None


def check_fields(obj: dict[str, Any], where: str) -> None:
    """Check every field of an item, a body or a batch header (see the module's rules)."""
    for name, value in obj.items():
        _check_string(name, f"{join(where, name)} (a field name)")
        if type(value) in _SCALARS:  # most fields: no walk (ingest does this per item)
            continue
        if type(value) is str:
            _check_string(value, join(where, name))
        elif name in NESTED_FIELDS and isinstance(value, dict):
            check_fields(value, join(where, name))
        else:
            check_value(value, join(where, name))


def check_value(value: Any, where: str, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Strings, numbers and nesting of one value; ``where`` names it in errors."""
    # (value, depth, path parts): paths are only formatted for an error.
    stack: list[tuple[Any, int, tuple]] = [(value, 1, ())]
    while stack:
        v, depth, parts = stack.pop()
        if isinstance(v, str):
            _check_string(v, _path(where, parts))
        elif isinstance(v, float):
            if not math.isfinite(v):
                path = _path(where, parts)
                raise InvalidSpec(f"{path}: {v} is not a finite number (NaN, Infinity and numbers beyond "
                                  "±1.8e308 such as 1e400 are refused)", field=path)
        elif isinstance(v, (dict, list)):
            if depth > max_depth:
                path = _path(where, parts)
                raise InvalidSpec(f"{path}: nested deeper than {max_depth} levels (a field's value may nest "
                                  f"at most {max_depth} levels)", field=path)
            if isinstance(v, dict):
                for k, x in v.items():
                    _check_string(k, _path(where, parts) + " key")
                    stack.append((x, depth + 1, parts + (f".{k}",)))
            else:
                stack.extend((x, depth + 1, parts + (f"[{i}]",)) for i, x in enumerate(v))


def check_metadata(value: Any, where: str) -> None:
    """A caller's metadata: null, or a JSON object within the size and depth bounds."""
    if value is None:
        return
    if not isinstance(value, dict):
        raise InvalidSpec(f"{where}: must be a JSON object", field=where)
    check_value(value, where)
    size = len(pydantic_core.to_json(value))  # compact UTF-8 JSON, as the API serves it
    if size > MAX_METADATA_BYTES:
        raise InvalidSpec(f"{where}: is {size} bytes as JSON; at most {MAX_METADATA_BYTES} bytes", field=where)


def _path(where: str, parts: tuple) -> str:
    path = where + "".join(parts)
    return path[:300] + "…" if len(path) > 300 else path


def _check_string(s: str, path: str) -> None:
    if "\x00" in s:
        raise InvalidSpec(f"{path}: must not contain a NUL character", field=path)
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidSpec(f"{path}: must be valid Unicode text (a lone surrogate such as \\ud800 is not)",
                          field=path) from None
