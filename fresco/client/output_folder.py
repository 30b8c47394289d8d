"""``--out DIR``: images saved as their jobs finish, named by ``custom_id`` (else the
item's index), and ``DIR/manifest.jsonl`` saying which file is which job.

A manifest line: ``{"index", "custom_id", "id", "seed", "spec", "file"}`` (``id`` the job's,
``file`` relative to DIR). Lines are appended as images arrive, so an interrupted run keeps
what it saved; a rerun (the same batch: ``fresco submit`` finds it again by its
Idempotency-Key, or ``fresco wait BATCH --out DIR``) skips the jobs whose file is there.
The manifest is rewritten in index order, one line per job, when the run ends.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from fresco.client.resources import Job
from fresco.client.sdk import Client

MANIFEST = "manifest.jsonl"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def file_stem(custom_id: str | None, index: int) -> str:
    """A file name from a custom_id: letters, digits, ``.``, ``_`` and ``-`` kept, any other
    run of characters one ``_``; the zero-padded index when nothing is left."""
    stem = _UNSAFE.sub("_", custom_id or "").strip("._")[:120]
    return stem or f"{index:06d}"


class OutputFolder:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.manifest = path / MANIFEST
        self.entries: dict[str, dict[str, Any]] = {}
        if self.manifest.exists():
            for line in self.manifest.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                    self.entries[entry["id"]] = entry
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut short by an interrupted run: its image is fetched again
        self.names = {e["file"] for e in self.entries.values()}
        self.saved = self.skipped = 0

    def has(self, job: Job) -> bool:
        entry = self.entries.get(job.id)
        return entry is not None and (self.path / entry["file"]).is_file()

    def save(self, client: Client, index: int, job: Job) -> Path | None:
        """Download the job's image unless it is already here; its path, or None if skipped."""
        if job.result is None:
            return None
        if self.has(job):
            self.skipped += 1
            return None
        name = self._name(index, job)
        target = client.download(job, self.path / name)
        entry = {"index": index, "custom_id": job.custom_id, "id": job.id, "seed": job.result.seed,
                 "spec": job.spec, "file": name}
        with open(self.manifest, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self.entries[job.id] = entry
        self.names.add(name)
        self.saved += 1
        return target

    def _name(self, index: int, job: Job) -> str:
        ext = job.result.key.rsplit(".", 1)[-1] if job.result and "." in job.result.key else "png"
        previous = self.entries.get(job.id)
        if previous is not None:  # listed but its file is gone: fetched again under its name
            return previous["file"]
        name = f"{file_stem(job.custom_id, index)}.{ext}"
        if name in self.names:  # two items with one custom_id: the index tells them apart
            name = f"{file_stem(job.custom_id, index)}-{index}.{ext}"
        return name

    def close(self) -> None:
        """The manifest in index order, one line per job (written whole, then renamed)."""
        if not self.entries:
            return
        part = self.manifest.with_name(f".{MANIFEST}.{os.getpid()}.part")
        with open(part, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(entry, ensure_ascii=False) + "\n" for entry in sorted(self.entries.values(), key=lambda e: e.get("index", 0)))
        os.replace(part, self.manifest)
