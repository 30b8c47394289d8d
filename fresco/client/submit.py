"""``fresco submit``: send a file of prompts as one batch, show progress, save images."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from fresco.client.sdk import Client


def read_items(path: Path) -> list[dict]:
    """A .jsonl file (one item object a line) or a text file (one prompt a line)."""
    items = []
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        items.append(json.loads(line) if path.suffix == ".jsonl" else {"prompt": line.strip()})
    return items


def _bar(b: dict) -> str:
    c, total = b["counts"], b["total"]
    done = c["succeeded"] + c["failed"] + c["canceled"]
    width = 30
    filled = int(width * done / total) if total else width
    eta = b["progress"].get("eta_s")
    return (f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {b['status']:<9} "
            f"running {c['running']} failed {c['failed']}" + (f" eta {eta:.0f}s " if eta else "   "))


def run(args: argparse.Namespace) -> int:
    client = Client(api_url=args.api_url, api_key=args.api_key)
    items = read_items(Path(args.file))
    defaults = {k: v for k, v in {"model": args.model, "steps": args.steps, "width": args.width, "height": args.height,
                                  "guidance_scale": args.guidance, "scheduler": args.scheduler,
                                  "output_format": args.format}.items() if v is not None}
    started = time.monotonic()
    batch = client.submit_batch(items, defaults=defaults)
    print(f"batch {batch['id']}: {batch['total']} jobs accepted in {time.monotonic() - started:.2f} s", file=sys.stderr)
    if not args.wait:
        print(batch["id"])
        return 0
    tty = sys.stderr.isatty()
    last = [0.0]

    def show(b: dict) -> None:
        if tty:
            print(_bar(b), end="", file=sys.stderr, flush=True)
        elif time.monotonic() - last[0] > 5:
            last[0] = time.monotonic()
            print(_bar(b).strip(), file=sys.stderr, flush=True)
    batch = client.wait(batch["id"], timeout_s=args.timeout, on_progress=show)
    print(_bar(batch) + "\n" if tty else _bar(batch).strip(), file=sys.stderr)
    elapsed = time.monotonic() - started
    print(f"batch {batch['id']} {batch['status']} in {elapsed:.1f} s "
          f"({batch['counts']['succeeded'] / elapsed:.2f} images/s)", file=sys.stderr)
    saved = 0
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for line in client.results(batch["id"]):
            if line["url"]:
                name = f"{saved:05d}-{line['custom_id'] or line['id']}.{line['key'].rsplit('.', 1)[-1]}"
                (out / name).write_bytes(client.download(line["url"]))
                saved += 1
        print(f"{saved} images saved in {out.resolve()}", file=sys.stderr)
    print(batch["id"])
    return 0 if batch["status"] == "succeeded" else 1


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("submit", help="submit a file of prompts as one batch",
                       description="Submit a file of prompts (one per line, or .jsonl items) as one batch.")
    p.add_argument("file", help="prompts file: text (one prompt a line) or .jsonl (one item object a line)")
    p.add_argument("--model", help="model id (default: the registry's default)")
    p.add_argument("--steps", type=int)
    p.add_argument("--width", type=int)
    p.add_argument("--height", type=int)
    p.add_argument("--guidance", type=float, help="guidance_scale")
    p.add_argument("--scheduler")
    p.add_argument("--format", choices=["png", "webp", "jpeg"])
    p.add_argument("--wait", action="store_true", help="wait for the batch, showing progress")
    p.add_argument("--out", help="with --wait: save every image into this folder")
    p.add_argument("--timeout", type=float, default=3600, help="seconds to wait at most (default 3600)")
    p.add_argument("--api-url", help="default: FRESCO_API_URL")
    p.add_argument("--api-key", help="default: FRESCO_API_KEY")
    p.set_defaults(func=run)
