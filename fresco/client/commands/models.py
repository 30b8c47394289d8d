"""``fresco models``: the farm's models with their defaults, limits and status."""
from __future__ import annotations

import argparse

from fresco.client.commands.common import client_options, make_client, print_json


def run(args: argparse.Namespace) -> int:
    with make_client(args) as client:
        models = client.models()
    for m in models:
        if args.json:
            print_json(m)
            continue
        extra = m.model_extra or {}
        d = extra.get("defaults") or {}
        status = (extra.get("status") or {}).get("state", "?")
        shape = f"{d.get('width')}x{d.get('height')}, {d.get('steps')} steps" if d else ""
        print(f"{m.id}\t{status}\t{shape}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", parents=[client_options()], help="list the farm's models",
                       description="The farm's models (GET /v1/models), the default first: id, status (available, "
                                   "unavailable, unknown) and default size and steps. --json: each model's whole "
                                   "entry, with its limits, one a line.")
    p.set_defaults(func=run)
