"""Follow a batch to its end (``fresco submit --wait``, ``fresco wait``): the live
progress bar, each failed job as it fails, each image saved as soon as its job succeeds
(``--out``), then a summary; exit status 0 only when every job succeeded."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from fresco.client.commands.common import batch_line, print_json
from fresco.client.output_folder import OutputFolder
from fresco.client.progress import BatchProgress
from fresco.client.sdk import Client


def add_follow_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", metavar="DIR", type=Path,
                   help="save each image in DIR as soon as its job succeeds, named by custom_id or the item's "
                        "index, with DIR/manifest.jsonl (custom_id, job id, seed, spec, file); a rerun skips "
                        "the images already there")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="give up waiting after S seconds (exit 1; the batch goes on)")
    p.add_argument("--poll-interval", type=float, default=1.0, metavar="S",
                   help="seconds between looks at the batch (default 1)")


def follow(client: Client, batch_id: str, args: argparse.Namespace) -> int:
    started = time.monotonic()
    folder = OutputFolder(args.out) if args.out else None
    display = BatchProgress(batch_id)
    try:
        with display:
            for index, job in client.as_completed(batch_id, timeout=args.timeout, poll_interval=args.poll_interval,
                                                  on_progress=display.update):
                if job.status == "failed":
                    err = job.error
                    display.note(f"job {index} {job.custom_id or job.id} failed: "
                                 f"{err.type + ': ' + err.message if err else 'no reason given'}")
                elif folder is not None and job.result is not None:
                    folder.save(client, index, job)
                    if display.last is not None:
                        display.update(display.last)
    finally:
        if folder is not None:
            folder.close()
    batch = display.last
    assert batch is not None  # as_completed looks at the batch before anything else
    elapsed = time.monotonic() - started
    summary = f"{batch_line(batch)}; followed for {elapsed:.1f} s"
    if folder is not None:
        summary += f"; {folder.saved} images saved in {folder.path}"
        if folder.skipped:
            summary += f" ({folder.skipped} already there)"
    print(summary, file=sys.stderr)
    if args.json:
        print_json(batch)
    else:
        print(batch.id)
    return 0 if batch.status == "succeeded" else 1
