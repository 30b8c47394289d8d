"""What a farm's object store holds, read from outside the farm: the keys under a prefix
and when each was last written. For the exactly-once invariant (a second render of a
job would rewrite its object after the job was recorded), so it reads the folder or the
bucket directly, never through the farm's own storage code."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlparse


def stored_objects(storage_url: str, prefix: str, *, endpoint_url: str | None = None) -> dict[str, datetime]:
    """Result keys (relative to ``storage_url``, as ``jobs.result_key`` holds them) under
    ``prefix``, each with its last-modified time. A file store's temporary ``.part-``
    files (an upload cut short) are not objects; the gallery's thumbnails beside the
    results (fresco.constants.THUMB_KEY) and sweeps' contact sheets beside a batch's
    results (CONTACT_SHEET_KEY) are not results."""
    return {k: t for k, t in _objects(storage_url, prefix, endpoint_url).items() if not k.endswith(DERIVED_SUFFIXES)}


# THUMB_KEY's and CONTACT_SHEET_KEY's endings, spelled out: this module reads the store
# without the farm's code.
DERIVED_SUFFIXES = (".thumb.webp", ".sheet.png")


def _objects(storage_url: str, prefix: str, endpoint_url: str | None) -> dict[str, datetime]:
    url = urlparse(storage_url)
    if url.scheme == "file":
        root = Path(url.path)
        base = root / prefix
        if not base.exists():
            return {}
        return {str(p.relative_to(root)): datetime.fromtimestamp(p.stat().st_mtime, timezone.utc)
                for p in base.rglob("*") if p.is_file() and not p.name.startswith(".part-")}
    if url.scheme == "s3":
        import boto3

        root = url.path.strip("/")
        full = f"{root}/{prefix}" if root else prefix
        client = boto3.client("s3", endpoint_url=endpoint_url, region_name="us-east-1")
        out: dict[str, datetime] = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=url.netloc, Prefix=full):
            for o in page.get("Contents", []):
                out[o["Key"].removeprefix(f"{root}/") if root else o["Key"]] = o["LastModified"]
        return out
    raise ValueError(f"no reader for storage URL {storage_url!r}")
