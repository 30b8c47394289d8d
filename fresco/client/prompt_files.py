"""Files of prompts as batch items, read a line at a time (a 100,000-line file is never
held whole): plain text (one prompt a line), JSONL (one item object a line) or CSV (a
header row naming spec fields, one item a row).

In text files blank lines and lines starting with ``#`` are skipped. In CSV an empty cell
leaves its field out; cells of number fields are read as numbers and ``metadata`` and
``overrides`` as JSON, every other column as text.
"""
from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fresco.client.errors import FrescoError

FILE_TYPES = ("text", "jsonl", "csv")
_BY_SUFFIX = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
INT_FIELDS = {"width", "height", "steps", "seed"}
FLOAT_FIELDS = {"guidance_scale", "strength"}
JSON_FIELDS = {"metadata", "overrides"}


class PromptFileError(FrescoError):
    """The file cannot be read as the type it is taken for; the message names the line."""


def file_type_of(path: Path) -> str:
    """By extension: .jsonl/.ndjson, .csv, anything else is text."""
    return _BY_SUFFIX.get(path.suffix.lower(), "text")


def read_items(path: Path, file_type: str | None = None) -> Iterator[dict[str, Any]]:
    kind = file_type or file_type_of(path)
    if kind not in FILE_TYPES:
        raise PromptFileError(f"{path}: unknown file type {kind!r} (one of {', '.join(FILE_TYPES)})")
    try:
        with open(path, encoding="utf-8", newline="") as f:
            yield from {"text": _text, "jsonl": _jsonl, "csv": _csv}[kind](f, path)
    except OSError as e:
        raise PromptFileError(f"{path}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise PromptFileError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def _text(f, path: Path) -> Iterator[dict[str, Any]]:
    for line in f:
        prompt = line.strip()
        if prompt and not prompt.startswith("#"):
            yield {"prompt": prompt}


def _jsonl(f, path: Path) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(f, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as e:
            raise PromptFileError(f"{path} line {number}: not JSON ({e})") from None
        if not isinstance(item, dict):
            raise PromptFileError(f"{path} line {number}: must be a JSON object (a spec), not {type(item).__name__}")
        yield item


def _csv(f, path: Path) -> Iterator[dict[str, Any]]:
    reader = csv.DictReader(f)
    if not reader.fieldnames:
        raise PromptFileError(f"{path}: empty CSV (the first row names the spec fields, e.g. prompt,seed)")
    for row in reader:
        if None in row:
            raise PromptFileError(f"{path} line {reader.line_num}: more cells than the header names")
        yield {name.strip(): _cell(name.strip(), value, path, reader.line_num)
               for name, value in row.items() if value is not None and value.strip() != ""}


def _cell(name: str, value: str, path: Path, line: int) -> Any:
    try:
        if name in INT_FIELDS:
            return int(value)
        if name in FLOAT_FIELDS:
            return float(value)
        if name in JSON_FIELDS:
            return json.loads(value)
    except ValueError:
        kind = "an integer" if name in INT_FIELDS else "a number" if name in FLOAT_FIELDS else "JSON"
        raise PromptFileError(f"{path} line {line}: column {name!r} must be {kind}, not {value!r}") from None
    return value
