"""The ``fresco`` command line.

The client commands (``fresco submit``) run from the base install. The admin commands
(``fresco keys create``) talk to Postgres and need the server's dependencies; from a base
install they say which extra to install instead of failing with a traceback.
"""
from __future__ import annotations

import argparse
import sys

from fresco.client import admin_tenants, submit
from fresco.client.sdk import ApiError

# The extra that carries the database layer the admin commands use (pyproject.toml).
SERVER_EXTRA = "api"


class MissingExtra(Exception):
    """A command needs a dependency that only an extra of the package installs."""


def _keys_create(args: argparse.Namespace) -> int:
    try:
        from db import tenants
        from db.session import session_scope
    except ModuleNotFoundError as e:
        raise MissingExtra(f"`fresco keys create` needs the server's dependencies (no module named {e.name!r}): "
                           f"install the {SERVER_EXTRA} extra, pip install 'fresco[{SERVER_EXTRA}]' "
                           f"(from a checkout: pip install -e '.[{SERVER_EXTRA}]')") from e

    with session_scope() as s:
        key = tenants.create_key(s, tenant=args.tenant)
    print(f"created an API key for tenant {args.tenant!r}; it is shown once, keep it:", file=sys.stderr)
    print(key)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fresco", description="Fresco render farm: admin and client commands.")
    sub = parser.add_subparsers(dest="command", required=True)
    keys = sub.add_parser("keys", help=f"API keys (needs the server install: pip install 'fresco[{SERVER_EXTRA}]')")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create an API key (prints it as the last line)")
    create.add_argument("--tenant", required=True, help="tenant name; created if new")
    create.set_defaults(func=_keys_create)
    submit.add_parser(sub)
    admin_tenants.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except MissingExtra as e:
        print(f"fresco: {e}", file=sys.stderr)
        return 2
    except ApiError as e:  # the API's own error ("401 unauthorized: ..."), not a traceback
        print(f"fresco: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
