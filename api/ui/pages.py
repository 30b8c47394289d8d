"""The gallery's Jinja2 templates (api/ui/templates/), autoescaped: prompts, metadata and
error messages are end users' text and always render as text."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

_env = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True,
                   undefined=StrictUndefined)
_env.filters["pretty_json"] = lambda v: json.dumps(v, indent=2, ensure_ascii=False, sort_keys=True)


def render(name: str, **context: Any) -> str:
    return _env.get_template(name).render(**context)
