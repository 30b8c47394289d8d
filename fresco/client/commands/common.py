"""What the client commands share: the options every one takes (``--api-url``,
``--api-key``, ``--json``), the SDK client they make from them, how they print, and
the one error type a command raises to end with a one-line message."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from pydantic import BaseModel

from fresco.client.resources import Batch
from fresco.client.retry import RetryPolicy
from fresco.client.sdk import Client


class CommandError(Exception):
    """A command cannot go on: its message is printed as one line on stderr, exit 1."""


class MissingExtra(CommandError):
    """A command needs a dependency that only an extra of the package installs."""


def client_options() -> argparse.ArgumentParser:
    """A parent parser: the options of every command that talks to the API."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("connection and output")
    g.add_argument("--api-url", help="the API's base URL (default: FRESCO_API_URL, else http://127.0.0.1:8000)")
    g.add_argument("--api-key", help="an API key (default: FRESCO_API_KEY)")
    g.add_argument("--retries", type=int, default=4, metavar="N",
                   help="times a request is tried again after a connection error, 502/503/504 or 429 with "
                        "Retry-After, with backoff and jitter (default 4)")
    g.add_argument("--json", action="store_true",
                   help="print JSON for scripts: one object, or one object a line (JSON Lines) for lists")
    return p


def make_client(args: argparse.Namespace) -> Client:
    return Client(api_url=args.api_url, api_key=args.api_key, retry=RetryPolicy(attempts=max(args.retries, 0) + 1))


def print_json(obj: BaseModel | dict[str, Any]) -> None:
    data = obj.model_dump(mode="json") if isinstance(obj, BaseModel) else obj
    sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def batch_line(b: Batch) -> str:
    c, p = b.counts, b.progress
    rate = f", {p.images_per_s:.2f} images/s" if p.images_per_s else ""
    eta = f", ETA {p.eta_s:.0f} s" if p.eta_s and not b.finished else ""
    return (f"{b.id} {b.status}: {p.done}/{b.total} done (succeeded {c.succeeded}, failed {c.failed}, "
            f"canceled {c.canceled}, running {c.running}, queued {c.queued}){rate}{eta}")


def show_batch(b: Batch, args: argparse.Namespace) -> None:
    if args.json:
        print_json(b)
    else:
        print(batch_line(b))
