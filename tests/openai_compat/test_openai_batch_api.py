"""The Batch API for image generations through the official `openai` package:
files.create -> batches.create -> batches.retrieve until completed -> files.content of the
output and error files, matched to the requests by custom_id; cancelling a batch; a bad
input line refused by name with nothing created."""
from __future__ import annotations

import base64
import io
import json

import httpx
import openai
import pytest
from PIL import Image
from support.waiting import wait_until


def _jsonl(requests: list[tuple[str, dict]]) -> bytes:
    return "".join(json.dumps({"custom_id": cid, "method": "POST", "url": "/v1/images/generations", "body": body})
                   + "\n" for cid, body in requests).encode()


def _wait(client: openai.OpenAI, batch_id: str, statuses: tuple[str, ...], timeout: float = 300):
    return wait_until(lambda: (b := client.batches.retrieve(batch_id)).status in statuses and b, timeout,
                      f"batch {batch_id} to be {statuses}", interval=0.5)


def test_the_whole_batch_flow(client, openai_farm):
    requests = [("cat", {"model": "shapes", "prompt": "a red circle on a blue background", "size": "32x32",
                         "steps": 4}),
                ("dog", {"model": "shapes", "prompt": "a green square", "size": "48x16", "n": 2, "steps": 4,
                         "response_format": "b64_json"}),
                ("fox", {"model": "tiny-sd", "prompt": "a fox", "size": "32x32", "steps": 3})]
    uploaded = client.files.create(file=("requests.jsonl", _jsonl(requests)), purpose="batch")
    assert uploaded.purpose == "batch" and uploaded.id.startswith("file-") and uploaded.bytes > 0
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/images/generations",
                                  completion_window="24h", metadata={"project": "docs"})
    assert batch.status == "in_progress" and batch.request_counts.total == 3 and batch.metadata == {"project": "docs"}
    # the farm batch behind it: same id, four jobs (dog asked for two images)
    farm_batch = openai_farm.batch(batch.id.removeprefix("batch_"))
    assert farm_batch["total"] == 4

    done = _wait(client, batch.id, ("completed",))
    assert done.request_counts.completed == 3 and done.request_counts.failed == 0
    assert done.completed_at and done.output_file_id and done.error_file_id is None
    assert client.files.retrieve(done.output_file_id).purpose == "batch_output"
    lines = [json.loads(x) for x in client.files.content(done.output_file_id).text.splitlines()]
    by_id = {line["custom_id"]: line for line in lines}
    assert [line["custom_id"] for line in lines] == ["cat", "dog", "fox"]  # the input's order
    for line in lines:
        assert line["id"].startswith("batch_req_") and line["error"] is None
        assert line["response"]["status_code"] == 200 and line["response"]["request_id"]
    cat = by_id["cat"]["response"]["body"]
    image = Image.open(io.BytesIO(httpx.get(cat["data"][0]["url"], timeout=30).content))
    assert image.size == (32, 32) and cat["size"] == "32x32"
    dog = by_id["dog"]["response"]["body"]["data"]
    assert len(dog) == 2
    assert {Image.open(io.BytesIO(base64.b64decode(d["b64_json"]))).size for d in dog} == {(48, 16)}
    # the input file is still there as uploaded, and the batch is listed
    assert client.files.content(uploaded.id).content == _jsonl(requests)
    assert batch.id in [b.id for b in client.batches.list(limit=100)]


def test_cancel_a_batch(client):
    slow = [(f"r{i}", {"model": "shapes", "prompt": f"a red circle {i}", "size": "64x64", "steps": 100})
            for i in range(40)]
    uploaded = client.files.create(file=("slow.jsonl", _jsonl(slow)), purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/images/generations",
                                  completion_window="24h")
    canceled = client.batches.cancel(batch.id)
    assert canceled.status in ("cancelling", "cancelled") and canceled.cancelling_at
    done = _wait(client, batch.id, ("cancelled",), timeout=120)
    assert done.cancelled_at and done.error_file_id
    errors = [json.loads(x) for x in client.files.content(done.error_file_id).text.splitlines()]
    outputs = ([json.loads(x) for x in client.files.content(done.output_file_id).text.splitlines()]
               if done.output_file_id else [])
    assert sorted(line["custom_id"] for line in errors + outputs) == sorted(cid for cid, _ in slow)
    assert len(outputs) == done.request_counts.completed < 40
    assert {line["error"]["code"] for line in errors} == {"batch_cancelled"}
    with pytest.raises(openai.ConflictError):  # ended: nothing left to cancel (and not retried)
        client.batches.cancel(batch.id)


def test_a_bad_line_is_refused_by_name_and_creates_nothing(client, openai_farm):
    bad = [("ok", {"model": "shapes", "prompt": "a red circle", "size": "32x32"}),
           ("big", {"model": "shapes", "prompt": "a red circle", "size": "1024x1024"})]
    uploaded = client.files.create(file=("bad.jsonl", _jsonl(bad)), purpose="batch")
    listed = [b.id for b in client.batches.list(limit=100)]
    with pytest.raises(openai.BadRequestError) as e:
        client.batches.create(input_file_id=uploaded.id, endpoint="/v1/images/generations", completion_window="24h")
    assert e.value.param == "line 2.body.size" and "16..64" in e.value.message
    assert [b.id for b in client.batches.list(limit=100)] == listed
    with pytest.raises(openai.BadRequestError) as e:  # not OpenAI's request shape: refused at upload
        client.files.create(file=("x.jsonl", (b'{"custom_id": "a", "method": "GET", "url": "/v1/images/generations", '
                                             b'"body": {}}\n')), purpose="batch")
    assert e.value.param == "line 1.method"
    with pytest.raises(openai.BadRequestError) as e:
        client.files.create(file=("x.jsonl", _jsonl(bad)), purpose="fine-tune")
    assert e.value.param == "purpose"
