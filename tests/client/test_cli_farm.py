"""The ``fresco`` CLI end to end, as a user runs it (a process of its own), against the
API and a worker: text, JSONL and CSV files; ``--wait --out`` saving images while the
batch still runs, with its manifest, and a rerun that skips them; a failed job's exit
status; one batch after a dropped connection; the batch commands; errors as one line."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support.dropping_proxy import DroppingProxy
from support.images import png_size
from support.procs import ROOT
from support.registry import shipped_model, write_registry
from support.waiting import wait_until

SMALL = ["--steps", "2", "--size", "32x32"]
T = 400  # seconds: a shared CPU machine may be slow


def cli(farm, *args: str, api_url: str | None = None, key: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fresco.client.cli", *args], cwd=ROOT, env=_env(farm, api_url, key),
                          capture_output=True, text=True, timeout=T + 60, check=False)


def _env(farm, api_url: str | None = None, key: str | None = None) -> dict[str, str]:
    return {**farm.env, "FRESCO_API_KEY": key or farm.key, "FRESCO_API_URL": api_url or farm.env["FRESCO_API_URL"]}


def one_line_error(r: subprocess.CompletedProcess) -> str:
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fresco: "), r.stderr
    return lines[0]


@pytest.fixture
def models(farm, tmp_path) -> Path:
    """The API serves shapes (B=2: a batch takes several sampling calls), `missing` (its
    folder does not exist: its jobs fail) and `held` (a queue no worker consumes: its jobs
    wait until canceled). The worker's registry leaves `held` out."""
    shapes = shipped_model("shapes", max_batch={"cpu": 2, "cuda": 2})
    missing = shipped_model("shapes", id="missing", source=str(tmp_path / "no-such-folder"))
    held = shipped_model("shapes", id="held", queue="fresco.held")
    farm.use_models(shapes, missing, held)
    return write_registry(tmp_path / "worker-registry.toml", shapes, missing)


@pytest.fixture
def api_farm(farm, models):
    return farm.start_api()


@pytest.fixture
def rendering_farm(farm, models):
    farm.start_api()
    farm.start_worker("w1", FRESCO_MODELS=str(models), FRESCO_TORCH_THREADS="1")
    return farm


def test_submit_reads_text_jsonl_and_csv_with_defaults_from_flags(api_farm, tmp_path):
    farm = api_farm
    text = tmp_path / "prompts.txt"
    text.write_text("a red circle\n\n# a comment\n  a blue square  \n")
    jsonl = tmp_path / "items.jsonl"
    jsonl.write_text('{"prompt": "a cat", "custom_id": "c1", "seed": 7}\n\n{"prompt": "a dog", "steps": 3}\n')
    csv = tmp_path / "sheet.csv"
    csv.write_text('prompt,seed,custom_id,guidance_scale\n"a boat, at sea",12,b1,2.5\na car,,b2,\n')
    flags = ["--steps", "4", "--size", "48x32", "--guidance", "3", "--scheduler", "euler", "--negative", "blurry",
             "--format", "webp", "--seed", "99", "--model", "shapes"]
    specs = {}
    for path in (text, jsonl, csv):
        r = cli(farm, "submit", str(path), *flags, "--json")
        assert r.returncode == 0, r.stderr
        batch = json.loads(r.stdout)
        assert batch["status"] == "queued"
        specs[path.suffix] = [(j["custom_id"], j["spec"]) for j in farm.jobs(batch["id"])]
    assert [s["prompt"] for _, s in specs[".txt"]] == ["a red circle", "a blue square"]
    for _, spec in specs[".txt"]:
        assert (spec["steps"], spec["width"], spec["height"], spec["guidance_scale"], spec["scheduler"],
                spec["negative_prompt"], spec["output_format"], spec["seed"], spec["model"]) == \
               (4, 48, 32, 3.0, "euler", "blurry", "webp", 99, "shapes")
    (c1, cat), (_, dog) = specs[".jsonl"]
    assert (c1, cat["seed"], cat["steps"], dog["steps"], dog["seed"]) == ("c1", 7, 4, 3, 99)
    (b1, boat), (b2, car) = specs[".csv"]
    assert (b1, boat["prompt"], boat["seed"], boat["guidance_scale"]) == ("b1", "a boat, at sea", 12, 2.5)
    assert (b2, car["seed"], car["guidance_scale"]) == ("b2", 99, 3.0)
    # a bad line is named, locally, before anything is sent; nothing is created
    bad = tmp_path / "bad.csv"
    bad.write_text("prompt,seed\nok,1\nnot ok,seven\n")
    assert "line 3: column 'seed' must be an integer" in one_line_error(cli(farm, "submit", str(bad)))
    # the API's refusal, one line naming the field
    r = cli(farm, "submit", str(text), "--steps", "0")
    assert "422 invalid_request" in one_line_error(r) and "steps" in r.stderr
    assert len(farm.http.get("/v1/batches").json()["data"]) == 3


def test_wait_out_saves_each_image_while_the_batch_runs(rendering_farm, tmp_path):
    """The first image is in DIR while a job of the batch is still held in its queue:
    saved as its job was done, not after the batch. The held job is then canceled: the
    batch ends partial and the exit status is 1."""
    farm = rendering_farm
    items = tmp_path / "items.jsonl"
    lines = [{"prompt": f"a red circle {i}", "custom_id": f"circle/{i}", "seed": i} for i in range(4)]
    lines.append({"prompt": "held back", "model": "held", "custom_id": "held"})
    items.write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "fresco.client.cli", "submit", str(items), *SMALL, "--wait",
                             "--out", str(out), "--poll-interval", "0.2"], cwd=ROOT, env=_env(farm),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = wait_until(lambda: sorted(out.glob("*.png")), T, "the first image in the output folder")
        batch = farm.http.get("/v1/batches").json()["data"][0]
        assert batch["status"] in ("queued", "running"), batch  # the batch has not finished
        assert png_size(first[0].read_bytes()) == (32, 32)
        wait_until(lambda: len(list(out.glob("*.png"))) == 4, T, "the four renderable images")
        held = next(j for j in farm.jobs(batch["id"]) if j["custom_id"] == "held")
        assert held["status"] == "queued"
        assert farm.http.post(f"/v1/jobs/{held['id']}/cancel").status_code == 200
        stdout, stderr = proc.communicate(timeout=T)
    finally:
        proc.kill()
    assert proc.returncode == 1, stderr  # a job did not succeed
    assert "Traceback" not in stderr and "partial" in stderr
    assert stdout.strip().splitlines()[-1] == batch["id"]
    assert sorted(p.name for p in out.iterdir()) == [f"circle_{i}.png" for i in range(4)] + ["manifest.jsonl"]
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [(m["index"], m["custom_id"], m["file"], m["seed"]) for m in manifest] == \
           [(i, f"circle/{i}", f"circle_{i}.png", i) for i in range(4)]
    jobs = {j["id"]: j for j in farm.jobs(batch["id"])}
    for m in manifest:
        assert jobs[m["id"]]["spec"] == m["spec"] and m["spec"]["prompt"] == f"a red circle {m['index']}"


def test_submit_wait_out_then_rerun_makes_one_batch_and_skips_saved_images(rendering_farm, tmp_path):
    farm = rendering_farm
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\na blue square\na green triangle\n")
    out = tmp_path / "images"
    r = cli(farm, "submit", str(prompts), *SMALL, "--wait", "--out", str(out), "--poll-interval", "0.2")
    assert r.returncode == 0, r.stderr
    batch_id = r.stdout.strip().splitlines()[-1]
    assert sorted(p.name for p in out.iterdir()) == ["000000.png", "000001.png", "000002.png", "manifest.jsonl"]
    assert "3 images saved" in r.stderr
    (out / "000001.png").unlink()  # one lost: the rerun fetches it alone
    again = cli(farm, "submit", str(prompts), *SMALL, "--wait", "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().splitlines()[-1] == batch_id  # the same batch: its Idempotency-Key
    assert "1 images saved" in again.stderr and "(2 already there)" in again.stderr
    assert len((out / "manifest.jsonl").read_text().splitlines()) == 3
    assert [b["id"] for b in farm.http.get("/v1/batches").json()["data"]] == [batch_id]
    # other flags, another body: another batch
    other = cli(farm, "submit", str(prompts), "--steps", "1", "--size", "32x32")
    assert other.returncode == 0 and other.stdout.strip() != batch_id


def test_a_failed_job_makes_the_exit_status_non_zero(rendering_farm, tmp_path):
    farm = rendering_farm
    sheet = tmp_path / "sheet.csv"
    sheet.write_text("prompt,model,custom_id\na red circle,shapes,ok\na blue square,missing,broken\n")
    r = cli(farm, "submit", str(sheet), *SMALL, "--wait", "--out", str(tmp_path / "out"), "--poll-interval", "0.2")
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert "broken failed: model_unavailable" in r.stderr, r.stderr
    assert [p.name for p in sorted((tmp_path / "out").iterdir())] == ["manifest.jsonl", "ok.png"]
    batch_id = r.stdout.strip()
    results = cli(farm, "results", batch_id, "--json")
    states = {json.loads(line)["custom_id"]: json.loads(line)["state"] for line in results.stdout.splitlines()}
    assert states == {"ok": "succeeded", "broken": "failed"}
    status = cli(farm, "status", batch_id)
    assert status.returncode == 0 and " partial: 2/2 done (succeeded 1, failed 1" in status.stdout


def test_a_submit_repeated_after_a_dropped_connection_makes_one_batch(api_farm, tmp_path):
    """The API receives the batch and answers; the answer is lost on the way (the proxy
    closes the connection). The CLI says so in one line; running it again answers with
    the batch the first run made."""
    farm = api_farm
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"prompt {i}\n" for i in range(50)))
    proxy = DroppingProxy(farm.port, drop=1)
    try:
        first = cli(farm, "submit", str(prompts), *SMALL, "--retries", "0", api_url=proxy.url)
        assert proxy.dropped == 1
        assert "no answer from" in one_line_error(first)
        made = farm.http.get("/v1/batches").json()["data"]
        assert len(made) == 1 and made[0]["total"] == 50  # the API did make it
        again = cli(farm, "submit", str(prompts), *SMALL, api_url=proxy.url)
        assert again.returncode == 0, again.stderr
        assert again.stdout.strip() == made[0]["id"]
        # and within one run: the SDK's retry after a lost answer finds the same batch too
        proxy.drop = 1
        more = tmp_path / "more.txt"
        more.write_text("one more\n")
        third = cli(farm, "submit", str(more), *SMALL, api_url=proxy.url)
        assert third.returncode == 0, third.stderr
        assert proxy.dropped == 2
    finally:
        proxy.close()
    assert len(farm.http.get("/v1/batches").json()["data"]) == 2


def test_batch_commands_json_output_and_errors(api_farm, tmp_path):
    farm = api_farm
    prompts = tmp_path / "p.txt"
    prompts.write_text("a\nb\n")
    batch_id = cli(farm, "submit", str(prompts)).stdout.strip()
    status = json.loads(cli(farm, "status", batch_id, "--json").stdout)
    assert status["id"] == batch_id and status["counts"]["queued"] == 2
    listed = [json.loads(line) for line in cli(farm, "batches", "--json").stdout.splitlines()]
    assert [b["id"] for b in listed] == [batch_id]
    assert [json.loads(line)["state"] for line in cli(farm, "results", batch_id, "--json").stdout.splitlines()] == \
           ["queued", "queued"]
    canceled = cli(farm, "cancel", batch_id)
    assert canceled.returncode == 0 and f"{batch_id} canceled" in canceled.stdout
    assert "409 conflict" in one_line_error(cli(farm, "retry", batch_id))
    assert "404 not_found" in one_line_error(cli(farm, "status", "00000000-0000-0000-0000-000000000000"))
    models = [json.loads(line) for line in cli(farm, "models", "--json").stdout.splitlines()]
    assert [m["id"] for m in models] == ["shapes", "missing", "held"] and "limits" in models[0]
    assert "no such file" in one_line_error(cli(farm, "submit", str(tmp_path / "nope.txt")))
    assert "401 unauthorized" in one_line_error(cli(farm, "batches", key="not-a-key"))
    refused = one_line_error(cli(farm, "status", batch_id, "--retries", "1", api_url="http://127.0.0.1:9"))
    assert "no answer from http://127.0.0.1:9" in refused


def test_keys_create_list_revoke(api_farm):
    farm = api_farm
    tenant = f"{farm.tenant}-keys"
    r = cli(farm, "keys", "create", "--tenant", tenant)
    assert r.returncode == 0, r.stderr
    key = r.stdout.strip().splitlines()[-1]
    assert cli(farm, "batches", key=key).returncode == 0
    listed = [json.loads(line) for line in cli(farm, "keys", "list", "--tenant", tenant, "--json").stdout.splitlines()]
    assert len(listed) == 1 and key.startswith(listed[0]["prefix"]) and listed[0]["revoked_at"] is None
    assert key not in cli(farm, "keys", "list").stdout  # never shown again
    revoked = cli(farm, "keys", "revoke", listed[0]["prefix"], "--json")
    assert revoked.returncode == 0 and json.loads(revoked.stdout)["revoked_at"]
    assert "401 unauthorized" in one_line_error(cli(farm, "batches", key=key))
    assert cli(farm, "keys", "revoke", key).returncode == 0  # by the key itself: already revoked, still fine
    assert "no API key" in one_line_error(cli(farm, "keys", "revoke", "fr_nothing"))
    # Postgres unreachable: one line too
    r = subprocess.run([sys.executable, "-m", "fresco.client.cli", "keys", "list"], cwd=ROOT, capture_output=True,
                       text=True, env={**farm.env, "FRESCO_DATABASE_URL": "postgresql://postgres@127.0.0.1:9/x"},
                       timeout=120, check=False)
    assert "the database" in one_line_error(r)


def test_every_command_has_help(farm):
    for command in ([], ["submit"], ["status"], ["wait"], ["cancel"], ["retry"], ["results"], ["batches"],
                    ["models"], ["keys"], ["keys", "create"], ["keys", "list"], ["keys", "revoke"]):
        r = cli(farm, *command, "--help")
        assert r.returncode == 0 and r.stdout.startswith("usage: fresco"), (command, r.stderr)
    assert "Idempotency-Key" in cli(farm, "submit", "--help").stdout
