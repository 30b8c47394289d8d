"""The ``fresco`` command line, built on the SDK (fresco/client/sdk.py).

Each command group is a module of fresco/client/commands/ with ``add_parser(sub)``,
registered in :func:`build_parser`. The client commands run from the base install; the
admin commands (``fresco keys ...``) talk to Postgres and need the server's dependencies,
and say which extra to install when they are missing. Every error ends the command with
one line on stderr and a non-zero exit status, never a traceback.

Exit status: 0 done; 1 an error, or a followed batch with a failed or canceled job;
2 a usage error; 130 interrupted.
"""
from __future__ import annotations

import argparse
import sys

from fresco.client.commands import batches, keys, models, submit, tenants
from fresco.client.commands.common import CommandError, MissingExtra
from fresco.client.errors import FrescoError

__all__ = ["MissingExtra", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fresco", description="Fresco render farm: submit and follow batches, list models, manage API keys.",
        epilog="`fresco COMMAND --help` for each command. The API and the key come from --api-url and --api-key, "
               "else FRESCO_API_URL and FRESCO_API_KEY.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    submit.add_parser(sub)
    batches.add_parser(sub)
    models.add_parser(sub)
    keys.add_parser(sub)
    tenants.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FrescoError, CommandError, TimeoutError) as e:  # the API's own error ("401 unauthorized: ...")
        print(f"fresco: {e}", file=sys.stderr)
    except KeyboardInterrupt:
        print("fresco: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `fresco results B | head`: the reader left; nothing to say
        sys.stderr.close()
    except OSError as e:  # a file or folder the command reads or writes
        print(f"fresco: {e.filename or ''}{': ' if e.filename else ''}{e.strerror or e}", file=sys.stderr)
    except Exception as e:  # noqa: BLE001 -- a bug: still one line, naming it (never a traceback)
        print(f"fresco: unexpected {type(e).__name__}: {e}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
