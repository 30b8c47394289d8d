"""The Batch API's JSONL files: reading an input file (one request a line:
``{"custom_id", "method": "POST", "url": "/v1/images/generations", "body"}``) into the
farm batch's items, and writing the output and error files in OpenAI's line format
``{"id", "custom_id", "response": {"status_code", "request_id", "body"} | null,
"error": {"code", "message"} | null}`` when the batch ends."""
from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from api.json_input import decode
from api.openai_compat import specs
from api.openai_compat.schemas import OpenAIImageOptions
from db.models import Job
from fresco.constants import JobState
from fresco.errors import InvalidSpec
from fresco.registry import Registry
from fresco.storage import Storage

ENDPOINT = "/v1/images/generations"
LINE_FIELDS = {"custom_id", "method", "url", "body"}


@dataclass(frozen=True, slots=True)
class Request:
    """One line of an input file."""

    line: int
    custom_id: str
    body: dict[str, Any]


def requests(raw: bytes, field: str = "file") -> Iterator[Request]:
    """The lines of an input file, each checked for OpenAI's request shape; custom_ids are
    unique (the output lines are matched to requests by them). Bodies are not checked here."""
    seen: set[str] = set()
    for number, text in enumerate(raw.split(b"\n"), start=1):
        if not text.strip():
            continue
        where = f"line {number}"
        obj = decode(text, where)
        if not isinstance(obj, dict):
            raise InvalidSpec(f"{where}: must be a JSON object with custom_id, method, url and body", field=where)
        missing, unknown = LINE_FIELDS - set(obj), set(obj) - LINE_FIELDS
        if missing or unknown:
            name = min(missing or unknown)
            raise InvalidSpec(f"{where}.{name}: {'is required' if missing else 'unknown field'} (a line is "
                              f"{{custom_id, method, url, body}})", field=f"{where}.{name}")
        custom_id = obj["custom_id"]
        if not isinstance(custom_id, str) or not 0 < len(custom_id) <= 256 or "\x00" in custom_id:
            raise InvalidSpec(f"{where}.custom_id: must be a string of 1..256 characters", field=f"{where}.custom_id")
        if custom_id in seen:
            raise InvalidSpec(f"{where}.custom_id: {custom_id[:60]!r} is used by an earlier line; each request "
                              f"needs its own", field=f"{where}.custom_id")
        seen.add(custom_id)
        if obj["method"] != "POST":
            raise InvalidSpec(f"{where}.method: must be POST", field=f"{where}.method")
        if obj["url"] != ENDPOINT:
            raise InvalidSpec(f"{where}.url: must be {ENDPOINT} (the batch's endpoint)", field=f"{where}.url")
        if not isinstance(obj["body"], dict):
            raise InvalidSpec(f"{where}.body: must be an object (images.generate's parameters)",
                              field=f"{where}.body")
        yield Request(number, custom_id, obj["body"])
    if not seen:
        raise InvalidSpec(f"{field}: the file has no requests", field=field)


def farm_items(raw: bytes, registry: Registry, counter: list[int]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The farm batch's items (api/ingest.py streams them into COPY): each request's n
    images, all with the request's custom_id. ``counter[0]`` counts the requests."""
    for req in requests(raw, "input_file_id"):
        where = f"line {req.line}.body."
        opts = specs.options(req.body, where)
        entry = specs.model_entry(opts.model, registry, where)
        counter[0] += 1
        for fields in specs.job_fields(opts, entry, specs.parse_size(opts.size, entry, where)):
            yield f"line {req.line}.body", {**fields, "custom_id": req.custom_id}


def result_lines(raw: bytes, jobs: dict[str, list[Job]], storage: Storage) -> tuple[list[bytes], list[bytes]]:
    """(output lines, error lines), in the input's order: a request whose images all
    succeeded goes to the output file, one with a failed job to the error file with a 500
    (the job's error), one canceled before it ended to the error file as batch_cancelled."""
    output: list[bytes] = []
    errors: list[bytes] = []
    for req in requests(raw):
        opts = OpenAIImageOptions.model_validate(req.body)  # checked when the batch was created
        mine = jobs.get(req.custom_id, [])
        line: dict[str, Any] = {"id": f"batch_req_{uuid.uuid4().hex}", "custom_id": req.custom_id,
                                "response": None, "error": None}
        failed = next((j for j in mine if j.status == JobState.FAILED), None)
        if mine and all(j.status == JobState.SUCCEEDED for j in mine):
            line["response"] = {"status_code": 200, "request_id": f"req_{uuid.uuid4().hex}",
                                "body": _images_body(mine, storage, opts.response_format)}
            output.append(_json_line(line))
            continue
        if failed is not None:
            line["response"] = {"status_code": 500, "request_id": f"req_{uuid.uuid4().hex}", "body": {"error": {
                "message": f"job {failed.id} failed: {failed.error_message}", "type": "server_error", "param": None,
                "code": failed.error_type}}}
        else:
            line["error"] = {"code": "batch_cancelled", "message": "the batch was cancelled before this request ended"}
        errors.append(_json_line(line))
    return output, errors


def _images_body(jobs: list[Job], storage: Storage, response_format: str) -> dict[str, Any]:
    if response_format == "b64_json":
        data = [{"b64_json": base64.b64encode(storage.get(j.result_key)).decode()} for j in jobs]
    else:
        data = [{"url": storage.url(j.result_key)} for j in jobs]
    finished = max(j.finished_at for j in jobs)
    first = jobs[0].result or {}
    return {"created": int(finished.timestamp()), "data": data,
            "size": f"{first.get('width', jobs[0].spec['width'])}x{first.get('height', jobs[0].spec['height'])}",
            "output_format": first.get("format", jobs[0].spec["output_format"])}


def _json_line(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode()
