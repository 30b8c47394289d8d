"""Commands on batches: ``fresco status|wait|cancel|retry|results BATCH`` and
``fresco batches`` (the tenant's batches, newest first)."""
from __future__ import annotations

import argparse
import itertools

from fresco.client.commands.common import (
    batch_line,
    client_options,
    make_client,
    print_json,
    show_batch,
)
from fresco.client.commands.follow import add_follow_options, follow

BATCH_STATES = ("queued", "running", "succeeded", "failed", "partial", "canceled")


def _status(args: argparse.Namespace) -> int:
    with make_client(args) as client:
        batch = client.batch(args.batch)
    show_batch(batch, args)
    return 0


def _wait(args: argparse.Namespace) -> int:
    with make_client(args) as client:
        return follow(client, args.batch, args)


def _cancel(args: argparse.Namespace) -> int:
    with make_client(args) as client:
        batch = client.cancel(args.batch)
    show_batch(batch, args)
    return 0


def _retry(args: argparse.Namespace) -> int:
    with make_client(args) as client:
        batch = client.retry_failed(args.batch)
        if args.wait or args.out:
            return follow(client, batch.id, args)
    show_batch(batch, args)
    return 0


def _results(args: argparse.Namespace) -> int:
    with make_client(args) as client:
        for line in client.results(args.batch):
            if args.json:
                print_json(line)
            else:
                where = line.url or (f"{line.error.type}: {line.error.message}" if line.error else "")
                print(f"{line.state}\t{line.custom_id or '-'}\t{line.id}\t{where}")
    return 0


def _batches(args: argparse.Namespace) -> int:
    with make_client(args) as client:
        for batch in itertools.islice(client.batches(state=args.state), args.limit):
            if args.json:
                print_json(batch)
            else:
                print(f"{batch_line(batch)}; created {batch.created_at:%Y-%m-%d %H:%M:%S}")
    return 0


def _one(sub: argparse._SubParsersAction, name: str, help_: str, description: str, func) -> argparse.ArgumentParser:
    p = sub.add_parser(name, parents=[client_options()], help=help_, description=description)
    p.add_argument("batch", metavar="BATCH", help="the batch id (`fresco submit` prints it; `fresco batches` lists them)")
    p.set_defaults(func=func)
    return p


def add_parser(sub: argparse._SubParsersAction) -> None:
    _one(sub, "status", "a batch's state, counts, images/s and ETA",
         "A batch's state, its jobs' counts per state, images/s and ETA (GET /v1/batches/{id}).", _status)
    p = _one(sub, "wait", "follow a batch to its end with a progress bar",
             "Follow a batch with a live progress bar (done, failed, running, images/s, ETA) until it ends; "
             "with --out, save each image as soon as it is done. Exit 0 only if every job succeeded.", _wait)
    add_follow_options(p)
    _one(sub, "cancel", "cancel a batch's unfinished jobs",
         "Cancel every job of the batch that has not finished: queued ones at once, running ones at their next "
         "sampling step. A batch with nothing left to cancel is an error (409).", _cancel)
    p = _one(sub, "retry", "requeue a batch's failed jobs",
             "Requeue the batch's failed jobs (POST /v1/batches/{id}/retry); with --wait or --out, follow it.",
             _retry)
    p.add_argument("--wait", action="store_true", help="follow the batch afterwards, as `fresco wait`")
    add_follow_options(p)
    _one(sub, "results", "one line per job: state, custom_id, job id, URL or error",
         "One line per job in submission order: state, custom_id, job id and the image's URL (self-authenticating, "
         "expiring) or the error. --json: the lines of GET /v1/batches/{id}/results.jsonl.", _results)
    p = sub.add_parser("batches", parents=[client_options()], help="list your batches, newest first",
                       description="The tenant's batches, newest first (GET /v1/batches, following its cursors).")
    p.add_argument("--state", choices=BATCH_STATES, help="only batches in this state")
    p.add_argument("--limit", type=int, default=20, metavar="N", help="show at most N batches (default 20)")
    p.set_defaults(func=_batches)
