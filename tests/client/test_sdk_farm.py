"""The SDK end to end, sync and async, against the API and a worker started as the README
starts them: submit from a list, a generator and a file; follow a batch job by job;
wait with a progress callback; results, downloads, lists that follow cursors, cancel,
retry, and the API's errors as typed exceptions."""
from __future__ import annotations

import asyncio
import json

import pytest
from support.images import png_size

import fresco
from fresco.client import Batch, Conflict, InvalidRequest, Job, NotFound, Unauthorized

SMALL = {"steps": 2, "width": 32, "height": 32}
T = 400  # seconds: a shared CPU machine may be slow


@pytest.fixture
def running_farm(farm):
    return farm.start(workers=1, FRESCO_TORCH_THREADS="1")


def test_sync_client_end_to_end(running_farm, tmp_path):
    farm = running_farm
    with fresco.Client(farm.env["FRESCO_API_URL"], farm.key) as client:
        # a list of prompts and items: typed results
        batch = client.submit_batch(["a red circle", {"prompt": "a blue square", "custom_id": "sq", "seed": 11},
                                     {"prompt": "a green star", "overrides": {"steps": 1}}], defaults=SMALL)
        assert isinstance(batch, Batch) and batch.total == 3 and batch.status == "queued"

        # each job as soon as it ends, with its index; progress callbacks on the way
        seen: list[Batch] = []
        finished = dict(client.as_completed(batch.id, poll_interval=0.2, timeout=T, on_progress=seen.append))
        assert sorted(finished) == [0, 1, 2] and all(isinstance(j, Job) for j in finished.values())
        assert finished[1].custom_id == "sq" and finished[1].result.seed == 11
        assert finished[2].spec["steps"] == 1 and finished[0].spec["prompt"] == "a red circle"
        assert seen and seen[-1].status == "succeeded" and seen[-1].counts.succeeded == 3

        # download: bytes, or a file written whole
        data = client.download(finished[1])
        assert png_size(data) == (32, 32)
        path = client.download(finished[0].result, tmp_path / "zero.png")
        assert png_size(path.read_bytes()) == (32, 32)

        # wait (already ended), results, a job by id
        done = client.wait(batch.id, on_progress=seen.append)
        assert done.finished and done.progress.done == 3
        lines = list(client.results(batch.id))
        assert [line.custom_id for line in lines] == [None, "sq", None] and {ln.state for ln in lines} == {"succeeded"}
        assert client.job(finished[1].id).result.url == lines[1].url

        # from a generator and from a file
        gen = client.submit_batch((f"shape {i}" for i in range(3)), defaults=SMALL)
        prompts = tmp_path / "prompts.csv"
        prompts.write_text("prompt,seed,custom_id\na cat,5,c1\na dog,,c2\n")
        from_file = client.submit_file(prompts, defaults=SMALL)
        assert gen.total == 3 and from_file.total == 2
        jobs = {j.custom_id: j for j in client.batch_jobs(from_file.id)}
        assert jobs["c1"].spec["seed"] == 5 and jobs["c1"].spec["prompt"] == "a cat"

        # lists follow their cursors across pages
        assert [b.id for b in client.batches(page_size=1)][:3] == [from_file.id, gen.id, batch.id]
        assert len(list(client.jobs(page_size=2))) == 8
        assert len(list(client.jobs(batch_id=gen.id, page_size=2))) == 3
        assert client.wait(gen.id, timeout=T).status == "succeeded"
        assert client.wait(from_file.id, timeout=T).status == "succeeded"

        # one job
        job = client.submit_job(prompt="a single boat", **SMALL)
        assert client.wait_job(job.id, timeout=T).status == "succeeded"

        # the API's errors, typed, with its type and message
        with pytest.raises(NotFound) as e:
            client.batch("00000000-0000-0000-0000-000000000000")
        assert e.value.type == "not_found"
        with pytest.raises(InvalidRequest) as e:
            client.submit_batch(["ok", {"prompt": "bad", "steps": 0}])
        assert e.value.field and "steps" in e.value.field
        with pytest.raises(Conflict):  # nothing left to cancel
            client.cancel(batch.id)
    with fresco.Client(farm.env["FRESCO_API_URL"], "not-a-key") as anonymous, pytest.raises(Unauthorized):
        anonymous.models()


def test_a_resubmitted_batch_with_its_key_is_the_same_batch(running_farm):
    farm = running_farm
    with fresco.Client(farm.env["FRESCO_API_URL"], farm.key) as client:
        first = client.submit_batch(["x", "y"], defaults=SMALL, idempotency_key="run-1")
        again = client.submit_batch(["x", "y"], defaults=SMALL, idempotency_key="run-1")
        assert again.id == first.id
        with pytest.raises(Conflict):  # the same key with another body
            client.submit_batch(["x", "z"], defaults=SMALL, idempotency_key="run-1")
        client.wait(first.id, timeout=T)
    assert len(farm.http.get("/v1/batches").json()["data"]) == 1


def test_async_client_end_to_end(running_farm, tmp_path):
    farm = running_farm
    prompts = tmp_path / "items.jsonl"
    prompts.write_text("\n".join(json.dumps({"prompt": f"a shape {i}", "custom_id": f"s{i}"}) for i in range(4)))

    async def main() -> None:
        async with fresco.AsyncClient(farm.env["FRESCO_API_URL"], farm.key) as client:
            models = await client.models()
            assert models and models[0].id
            batch = await client.submit_file(prompts, defaults=SMALL)
            one = await client.submit_batch(["a lonely circle"], defaults=SMALL)
            found = [pair async for pair in client.as_completed(batch.id, poll_interval=0.2, timeout=T)]
            assert sorted(i for i, _ in found) == [0, 1, 2, 3]
            assert {j.custom_id for _, j in found} == {"s0", "s1", "s2", "s3"}
            data = await asyncio.gather(*(client.download(j) for _, j in found))
            assert {png_size(d) for d in data} == {(32, 32)}
            progress: list[Batch] = []
            done = await client.wait(one.id, timeout=T, poll_interval=0.2, on_progress=progress.append)
            assert done.status == "succeeded" and progress[-1] == done
            assert [line.custom_id async for line in client.results(batch.id)] == ["s0", "s1", "s2", "s3"]
            assert [b.id async for b in client.batches(page_size=1)] == [one.id, batch.id]
            assert len([j async for j in client.jobs(page_size=3)]) == 5
            retried = await client.retry_failed(batch.id)  # nothing failed: nothing requeued
            assert retried.counts.succeeded == 4
            with pytest.raises(NotFound):
                await client.job("00000000-0000-0000-0000-000000000000")

    asyncio.run(main())
