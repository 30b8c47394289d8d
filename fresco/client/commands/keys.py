"""``fresco keys create|list|revoke``: API keys, an admin's commands. They talk to
Postgres (FRESCO_DATABASE_URL), not to the API, so they need the server's dependencies;
from the base install they say which extra to install."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fresco.client.commands.common import CommandError, MissingExtra, print_json

# The extra that carries the database layer these commands use (pyproject.toml).
SERVER_EXTRA = "api"


@contextmanager
def admin_session(command: str) -> Iterator[Any]:
    """A committed database session, or a one-line CommandError: a missing extra, or
    Postgres unreachable."""
    try:
        import sqlalchemy.exc

        from db.session import session_scope
    except ModuleNotFoundError as e:
        raise MissingExtra(f"`fresco {command}` needs the server's dependencies (no module named {e.name!r}): "
                           f"install the {SERVER_EXTRA} extra, pip install 'fresco[{SERVER_EXTRA}]' "
                           f"(from a checkout: pip install -e '.[{SERVER_EXTRA}]')") from e
    try:
        with session_scope() as s:
            yield s
    except sqlalchemy.exc.SQLAlchemyError as e:
        reason = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
        raise CommandError(f"the database (FRESCO_DATABASE_URL): {reason}") from None


def _show(info: Any, args: argparse.Namespace) -> None:
    if args.json:
        print_json({"id": str(info.id), "prefix": info.prefix, "tenant": info.tenant,
                    "created_at": info.created_at.isoformat(),
                    "revoked_at": info.revoked_at.isoformat() if info.revoked_at else None})
    else:
        state = f"revoked {info.revoked_at:%Y-%m-%d %H:%M:%S}" if info.revoked_at else "active"
        print(f"{info.prefix}\t{info.tenant}\t{info.id}\tcreated {info.created_at:%Y-%m-%d %H:%M:%S}\t{state}")


def _create(args: argparse.Namespace) -> int:
    with admin_session("keys create") as s:
        from db import tenants

        key = tenants.create_key(s, tenant=args.tenant)
    print(f"created an API key for tenant {args.tenant!r}; it is shown once, keep it:", file=sys.stderr)
    print(key)
    return 0


def _list(args: argparse.Namespace) -> int:
    with admin_session("keys list") as s:
        from db import tenants

        keys = tenants.list_keys(s, tenant=args.tenant)
    for info in keys:
        _show(info, args)
    return 0


def _revoke(args: argparse.Namespace) -> int:
    with admin_session("keys revoke") as s:
        from db import tenants

        try:
            info = tenants.revoke_key(s, ref=args.key)
        except tenants.KeyNotFound as e:
            raise CommandError(str(e)) from None
    _show(info, args)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    keys = sub.add_parser("keys", help=f"API keys, an admin's commands (need pip install 'fresco[{SERVER_EXTRA}]')",
                          description="Create, list and revoke API keys, in the database the API reads "
                                      "(FRESCO_DATABASE_URL). Keys are stored as digests: only `create` shows one.")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="{create,list,revoke}")
    create = keys_sub.add_parser("create", help="create an API key (printed as the last line)",
                                 description="Create an API key for a tenant (the tenant too, if new). The key "
                                             "is printed as the last line on stdout, once: keep it.")
    create.add_argument("--tenant", required=True, help="tenant name; created if new")
    create.set_defaults(func=_create)
    json_flag = {"action": "store_true", "help": "one JSON object a line"}
    ls = keys_sub.add_parser("list", help="list keys: prefix, tenant, id, created, active or revoked",
                             description="Every API key (or one tenant's), oldest first: its prefix (the key's "
                                         "first characters), tenant, id, when it was created and whether it is "
                                         "revoked. The keys themselves are not stored and cannot be shown.")
    ls.add_argument("--tenant", help="only this tenant's keys")
    ls.add_argument("--json", **json_flag)
    ls.set_defaults(func=_list)
    revoke = keys_sub.add_parser("revoke", help="revoke a key: its requests answer 401 from now on",
                                 description="Revoke one API key, named by its id or prefix (from `fresco keys "
                                             "list`) or by the key itself. Its requests answer 401 from then on; "
                                             "the tenant and its jobs stay.")
    revoke.add_argument("key", metavar="KEY", help="the key's id, its prefix, or the key")
    revoke.add_argument("--json", **json_flag)
    revoke.set_defaults(func=_revoke)
