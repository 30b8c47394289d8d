"""The ``fresco`` command line."""
from __future__ import annotations

import argparse
import sys


def _keys_create(args: argparse.Namespace) -> int:
    from db import tenants
    from db.session import session_scope

    with session_scope() as s:
        key = tenants.create_key(s, tenant=args.tenant)
    print(f"created an API key for tenant {args.tenant!r}; it is shown once, keep it:", file=sys.stderr)
    print(key)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fresco", description="Fresco render farm: admin and client commands.")
    sub = parser.add_subparsers(dest="command", required=True)
    keys = sub.add_parser("keys", help="API keys").add_subparsers(dest="keys_command", required=True)
    create = keys.add_parser("create", help="create an API key (prints it as the last line)")
    create.add_argument("--tenant", required=True, help="tenant name; created if new")
    create.set_defaults(func=_keys_create)
    from fresco import submit

    submit.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
