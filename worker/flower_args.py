"""`celery -A worker.app flower --port 5555`, the documented command (docs/design.md,
"Processes and settings"), runs Flower.

Flower hands its arguments to tornado.options, which reads only `--name=value`; it drops
every argument that is not an option name (the `5555`) first, so `--port 5555` exits
with "Option 'port' requires a value". When this process is the flower command, a
`--name value` pair is joined into `--name=value` before Flower parses it. Workers never
import Flower (the check is on the command line).
"""
from __future__ import annotations

import sys
from collections.abc import Sequence


def join_option_values(argv: Sequence[str]) -> list[str]:
    """`--name value` becomes `--name=value`; `--name=value`, a flag followed by another
    option, and a lone value are left as they are (Flower takes no positional arguments)."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        value = argv[i + 1] if i + 1 < len(argv) else None
        if arg.startswith("--") and "=" not in arg and value is not None and not value.startswith("-"):
            out.append(f"{arg}={value}")
            i += 2
        else:
            out.append(arg)
            i += 1
    return out


def accept_spaced_flower_options(argv: Sequence[str] = sys.argv) -> None:
    """Join `--name value` pairs for Flower when this process runs `celery ... flower`."""
    if "flower" not in argv[1:]:
        return
    try:
        import flower.command
    except ImportError:  # an image without Flower: nothing to adapt
        return
    parse = flower.command.apply_options
    if getattr(parse, "joins_spaced_values", False):
        return

    def apply_options(prog_name: str, tornado_argv: Sequence[str]) -> None:
        parse(prog_name, join_option_values(tornado_argv))

    apply_options.joins_spaced_values = True  # type: ignore[attr-defined]
    # flower's click command looks apply_options up in its module when it runs, after
    # celery has imported this app (`-A worker.app` loads before the subcommand runs).
    flower.command.apply_options = apply_options
