"""``fresco submit FILE``: a file of prompts as one batch, optionally followed to its end
with a progress bar and the images saved as they are done."""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from fresco.client.bodies import BatchBody
from fresco.client.commands.common import (
    CommandError,
    client_options,
    make_client,
    print_json,
)
from fresco.client.commands.follow import add_follow_options, follow
from fresco.client.prompt_files import FILE_TYPES
from fresco.client.sdk import batch_header

DESCRIPTION = """\
Submit a file of prompts as one batch. FILE is plain text (one prompt a line; blank lines
and lines starting with # are skipped), JSONL (.jsonl/.ndjson: one item object a line, any
spec fields, custom_id, metadata) or CSV (.csv: a header row naming spec fields, e.g.
prompt,seed,custom_id). The flags set the defaults every item starts from; an item's own
fields win. The file is streamed to the API (POST /v1/batches as JSONL), never held whole.

Submitting again is safe: the Idempotency-Key defaults to "cli-" and the SHA-256 of the
request body, which is made from the file's content and the flags. Run the same command
again (after a network failure, or to resume saving images) and the API answers with the
batch it made the first time: nothing is rendered twice. To render the same file again as
a new batch, pass another --idempotency-key.

Prints the batch id (the last line on stdout). With --wait: a live progress bar, then the
exit status is 0 only if every job succeeded."""

EPILOG = """\
examples:
  fresco submit prompts.txt --steps 20 --size 512x512 --wait --out images/
  fresco submit items.jsonl --model tiny-sd --json
  fresco submit sheet.csv --wait"""


def _size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT (e.g. 512x512)")
    return int(m.group(1)), int(m.group(2))


def defaults_from(args: argparse.Namespace) -> dict[str, Any]:
    width, height = args.size or (None, None)
    given = {"model": args.model, "steps": args.steps, "guidance_scale": args.guidance,
             "width": args.width if args.width is not None else width,
             "height": args.height if args.height is not None else height,
             "scheduler": args.scheduler, "seed": args.seed, "negative_prompt": args.negative,
             "output_format": args.format}
    return {k: v for k, v in given.items() if v is not None}


def run(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise CommandError(f"{path}: no such file")
    body = BatchBody.from_file(path, batch_header(defaults_from(args), args.priority, None, None, None),
                               args.file_type)
    key = args.idempotency_key or f"cli-{body.digest()}"  # one pass over the file; checks every line
    with make_client(args) as client:
        batch = client.submit_body(body, key)
        print(f"batch {batch.id}: {batch.total} jobs ({batch.status}); Idempotency-Key {key}", file=sys.stderr)
        if args.wait or args.out:
            return follow(client, batch.id, args)
    if args.json:
        print_json(batch)
    else:
        print(batch.id)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("submit", parents=[client_options()], help="submit a file of prompts as one batch",
                       description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", metavar="FILE", help="prompts: text, .jsonl or .csv (see above)")
    p.add_argument("--file-type", choices=FILE_TYPES, help="read FILE as this type whatever its extension")
    spec = p.add_argument_group("defaults for every item (GET /v1/models: each model's defaults and limits)")
    spec.add_argument("--model", help="model id (default: the registry's default model)")
    spec.add_argument("--steps", type=int, help="sampling steps")
    spec.add_argument("--guidance", type=float, metavar="SCALE", help="guidance_scale")
    spec.add_argument("--size", type=_size, metavar="WxH", help="width x height in pixels, e.g. 512x512")
    spec.add_argument("--width", type=int, help="width in pixels (wins over --size)")
    spec.add_argument("--height", type=int, help="height in pixels (wins over --size)")
    spec.add_argument("--scheduler", help="sampler, one of the model's (ddim, euler, euler_a, dpmpp_2m, ...)")
    spec.add_argument("--seed", type=int, help="seed of every item without its own (default: one chosen per job)")
    spec.add_argument("--negative", metavar="TEXT", help="negative_prompt")
    spec.add_argument("--format", choices=["png", "webp", "jpeg"], help="output_format (default png)")
    batch = p.add_argument_group("the batch")
    batch.add_argument("--priority", type=int, help="-100..100, higher runs first (default 0)")
    batch.add_argument("--idempotency-key", metavar="KEY",
                       help="default: cli-<SHA-256 of the body>, so the same file and flags make one batch")
    batch.add_argument("--wait", action="store_true",
                       help="follow the batch with a live progress bar (done, failed, running, images/s, ETA); "
                            "exit 1 if any job failed or was canceled")
    add_follow_options(batch)
    p.set_defaults(func=run)
