"""``fresco tenants``: per-tenant fair-share weight and quotas (admin commands: they talk
to Postgres and need the server's dependencies).

    fresco tenants set NAME [--weight W] [--max-queued N] [--submits-per-min N] [--max-running-share F]
    fresco tenants show [NAME]

A value given overrides the setting's default (FRESCO_TENANT_WEIGHT, FRESCO_TENANT_MAX_QUEUED,
FRESCO_TENANT_SUBMITS_PER_MIN, FRESCO_TENANT_MAX_RUNNING_SHARE) for that tenant; the word
``default`` removes the override. Changes apply to the next submission and the next claim.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from fresco.client.commands.common import MissingExtra

# The extra that carries the database layer (as fresco keys: fresco/client/commands/keys.py).
SERVER_EXTRA = "api"
DEFAULT = "default"  # a value that clears an override
HELP_TAIL = f"`{DEFAULT}` removes the override"


def _or_default(parse: Callable[[str], Any], check: Callable[[Any], bool], what: str) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        if text == DEFAULT:
            return None
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: must be {what}, or {DEFAULT!r}") from None
        if not check(value):
            raise argparse.ArgumentTypeError(f"{text!r}: must be {what}, or {DEFAULT!r}")
        return value
    return convert


_OPTIONS = {
    "weight": ("--weight", _or_default(float, lambda v: v > 0, "a number above 0"),
               "share of claims relative to other tenants' weights (default FRESCO_TENANT_WEIGHT)"),
    "max_queued": ("--max-queued", _or_default(int, lambda v: v >= 0, "an integer >= 0 (0: no limit)"),
                   "most queued jobs; 0: no limit (default FRESCO_TENANT_MAX_QUEUED)"),
    "submits_per_min": ("--submits-per-min", _or_default(int, lambda v: v >= 0, "an integer >= 0 (0: no limit)"),
                        "submissions (requests) per clock minute; 0: no limit (default "
                        "FRESCO_TENANT_SUBMITS_PER_MIN)"),
    "max_running_share": ("--max-running-share", _or_default(float, lambda v: 0 < v <= 1, "a number in (0, 1]"),
                          "largest fraction of running jobs while others wait; 1: no cap (default "
                          "FRESCO_TENANT_MAX_RUNNING_SHARE)"),
}


def _db() -> tuple[Any, Any, Any]:
    try:
        from db import quotas
        from db.session import session_scope
        from fresco.settings import get_settings
    except ModuleNotFoundError as e:
        raise MissingExtra(f"`fresco tenants` needs the server's dependencies (no module named {e.name!r}): "
                           f"install the {SERVER_EXTRA} extra, pip install 'fresco[{SERVER_EXTRA}]'") from e
    return quotas, session_scope, get_settings


def _defaults(settings: Any) -> dict[str, Any]:
    return {"weight": settings.tenant_weight, "max_queued": settings.tenant_max_queued,
            "submits_per_min": settings.tenant_submits_per_min,
            "max_running_share": settings.tenant_max_running_share}


def _set(args: argparse.Namespace) -> int:
    quotas, session_scope, get_settings = _db()
    changes = {field: getattr(args, field) for field in _OPTIONS if getattr(args, field) is not _UNSET}
    if not changes:
        print(f"fresco tenants set: give at least one of {', '.join(o[0] for o in _OPTIONS.values())}",
              file=sys.stderr)
        return 2
    with session_scope() as s:
        tenant_id = quotas.tenant_id_of(s, name=args.name)
        if tenant_id is None:
            print(f"fresco tenants set: no tenant {args.name!r} (tenants are made by "
                  f"`fresco keys create --tenant {args.name}`)", file=sys.stderr)
            return 1
        quotas.set_overrides(s, tenant_id=tenant_id, changes=changes)
    return _show(argparse.Namespace(name=args.name))


def _show(args: argparse.Namespace) -> int:
    quotas, session_scope, get_settings = _db()
    defaults = _defaults(get_settings())
    with session_scope() as s:
        views = quotas.tenant_views(s, name=args.name)
    if args.name is not None and not views:
        print(f"fresco tenants show: no tenant {args.name!r}", file=sys.stderr)
        return 1
    header = ["tenant", *(o[0].removeprefix("--") for o in _OPTIONS.values()), "queued", "running", "vtime"]
    rows = []
    for v in views:
        limits = [f"{v.overrides[f]:g}" if f in v.overrides else f"{defaults[f]:g} (default)" for f in _OPTIONS]
        rows.append([v.name, *limits, str(v.queued), str(v.running), "-" if v.vtime is None else f"{v.vtime:.1f}"])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


_UNSET = object()


def add_parser(sub: Any) -> None:
    """``fresco tenants set|show`` on the CLI's subcommands (fresco/client/cli.py)."""
    tenants = sub.add_parser("tenants", help="per-tenant fair-share weight and quotas (needs the server install: "
                                             f"pip install 'fresco[{SERVER_EXTRA}]')",
                             description="Per-tenant overrides of the fair-share weight and the quotas; a tenant "
                                         "without one uses the FRESCO_TENANT_* settings.")
    tenants_sub = tenants.add_subparsers(dest="tenants_command", required=True)
    set_ = tenants_sub.add_parser("set", help="override a tenant's weight and limits",
                                  description=f"Override a tenant's weight and limits; {HELP_TAIL}. "
                                              "Prints the tenant as `show` does.")
    set_.add_argument("name", help="tenant name (as given to `fresco keys create --tenant`)")
    for field, (flag, convert, help_text) in _OPTIONS.items():
        set_.add_argument(flag, dest=field, type=convert, default=_UNSET, metavar="VALUE",
                          help=f"{help_text}; {HELP_TAIL}")
    set_.set_defaults(func=_run(_set))
    show = tenants_sub.add_parser("show", help="a tenant's (or every tenant's) weight, limits, queued and running "
                                               "jobs and fair-share vtime")
    show.add_argument("name", nargs="?", help="one tenant (default: all)")
    show.set_defaults(func=_run(_show))


def _run(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except MissingExtra as e:
            print(f"fresco: {e}", file=sys.stderr)
            return 2
    return run
