"""Generated bodies for every write route, in-process on the real Postgres (issue 12).

For each request: no 5xx; an error is ``{"error": {"type", "message"}}``; a 4xx leaves the
job and batch tables as they were (and a refused cancel or retry leaves its target's
state as it was); a 2xx leaves resources that every read route serves with a 200, and a
batch whose status agrees with its counts.

What is generated: job specs, batch items, defaults and headers from values a client may
send, good (within the shipped models' limits) and bad: every spec field wrong-typed
(numeric strings, booleans, null, lists, objects), zero, negative, huge (2^70, 10^400
written out), tiny (1e-400), empty and oversize strings, NUL and lone surrogates;
metadata as arbitrary JSON with the non-standard tokens NaN, Infinity, -Infinity and
1e400 written into the text, nesting from 31 to 5,000 levels, sizes around 16 KiB;
unknown fields; bodies that are not objects or not JSON; JSONL with and without a header
line; Idempotency-Key replays and conflicts; cancels and retries of jobs and batches
queued, finished by a simulated worker (a SQL update: no worker runs in tests/api),
another tenant's and unknown ids; uploads of random bytes, real images and wrong types.

Examples are derandomized (the same every run, so CI is reproducible); set
FRESCO_TEST_HYPOTHESIS_EXPLORE=1 (read below, in the test only) for fresh random ones.
"""
from __future__ import annotations

import base64
import io
import json
import os
import time
import uuid
from collections import Counter
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from sqlalchemy import text

from fresco.spec import MAX_METADATA_BYTES

EXPLORE = os.environ.get("FRESCO_TEST_HYPOTHESIS_EXPLORE") == "1"
SETTINGS = dict(deadline=None, database=None, derandomize=not EXPLORE, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much])
STATUSES: Counter = Counter()  # (route, status) over the whole module, printed at its end
POOL: dict[str, list[str]] = {"jobs": [], "batches": []}  # ids created by 2xx answers


class Raw(str):
    """A JSON token written into the body as is: NaN, 1e400, a 5,000-level nest."""


def dumps(value: object) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(json.dumps(k) + ":" + dumps(v) for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    return json.dumps(value)


# --- values ---------------------------------------------------------------------------------

NON_FINITE = st.sampled_from([Raw("NaN"), Raw("Infinity"), Raw("-Infinity"), Raw("1e400"), Raw("-1e400")])
ODD_NUMBERS = st.sampled_from([Raw("1e-400"), Raw("-0"), Raw("1" * 400), Raw("-" + "9" * 5000), 2**70, -2**70,
                               1e308, 5e-324])
DEEP = st.builds(lambda n, kind: Raw(("[" * n + "1" + "]" * n) if kind else ('{"a":' * n + "1" + "}" * n)),
                 st.sampled_from([31, 32, 33, 64, 255, 256, 300, 1000, 5000]), st.booleans())
NASTY_TEXT = st.sampled_from(["", " ", "a\x00b", "\ud800", "\udfff x", "é" * 5, "x" * 301, "x" * 1001])
WRONG = st.one_of(st.none(), st.booleans(), st.just([]), st.just({}), st.just("64"), st.just("1.5"),
                  st.just(1.0), NON_FINITE, ODD_NUMBERS, DEEP, NASTY_TEXT)
LEAF = st.one_of(st.none(), st.booleans(), st.integers(-2**53, 2**53), st.floats(allow_nan=False, allow_infinity=False),
                 st.text(max_size=12))
JSON_VALUE = st.recursive(LEAF, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
                          max_leaves=10)
NASTY_JSON = st.recursive(st.one_of(LEAF, NON_FINITE, ODD_NUMBERS, DEEP, NASTY_TEXT),
                          lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
                          max_leaves=8)
METADATA_GOOD = st.dictionaries(st.text(max_size=8), JSON_VALUE, max_size=4)
METADATA_BAD = st.one_of(
    st.dictionaries(st.text(max_size=6), NASTY_JSON, min_size=1, max_size=3),
    st.builds(lambda v: {"x": v}, st.one_of(NON_FINITE, DEEP)),
    st.builds(lambda n: {"x": "m" * n}, st.sampled_from([MAX_METADATA_BYTES - 8, MAX_METADATA_BYTES, 1 << 20])),
    WRONG)

SHAPES_SCHEDULERS = ["ddim", "ddpm", "pndm", "euler", "euler_a", "heun", "dpmpp_2m", "unipc"]
GOOD = {
    "model": st.sampled_from(["shapes", None]),
    "prompt": st.text(min_size=1, max_size=40).filter(lambda s: s.strip() and "\x00" not in s),
    "negative_prompt": st.text(max_size=20).filter(lambda s: "\x00" not in s),
    "width": st.sampled_from([16, 24, 32, 64]),
    "height": st.sampled_from([16, 32, 48, 64]),
    "steps": st.integers(1, 100),
    "guidance_scale": st.one_of(st.integers(0, 20), st.floats(0, 20)),
    "scheduler": st.sampled_from(SHAPES_SCHEDULERS),
    "beta_schedule": st.sampled_from(["linear", "scaled_linear", "cosine", None]),
    "seed": st.integers(0, 2**63 - 1),
    "output_format": st.sampled_from(["png", "webp", "jpeg"]),
    "custom_id": st.text(max_size=30).filter(lambda s: "\x00" not in s),
    "metadata": METADATA_GOOD,
}
BAD = {
    "model": st.one_of(st.sampled_from(["", "nope", "tiny-sd"]), WRONG),
    "width": st.one_of(st.sampled_from([0, 8, 65, -32, 4096, 2**70]), WRONG),
    "height": st.one_of(st.sampled_from([0, 8, 65, -32, 4096]), WRONG),
    "steps": st.one_of(st.sampled_from([0, -1, 101, 10**6]), WRONG),
    "guidance_scale": st.one_of(st.sampled_from([-1, 21, 1e300]), WRONG),
    "scheduler": st.one_of(st.sampled_from(["", "magic", "lcm", "dpmpp_sde"]), WRONG),
    "beta_schedule": st.one_of(st.sampled_from(["", "quadratic"]), WRONG),
    "seed": st.one_of(st.sampled_from([-1, 2**63, 2**64]), WRONG),
    "output_format": st.one_of(st.sampled_from(["", "gif", "PNG"]), WRONG),
    "prompt": st.one_of(NASTY_TEXT, WRONG),
    "custom_id": st.one_of(st.just("c" * 300), NASTY_TEXT, WRONG),
    "metadata": METADATA_BAD,
    "strength": st.one_of(st.sampled_from([0, 0.01, 0.5, 1, 1.5]), WRONG),
    "init_image": st.one_of(st.sampled_from(["upload:" + "0" * 32, "not base64!", "upload:../x"]), WRONG),
    "mask_image": st.one_of(st.just("upload:" + "0" * 32), WRONG),
    "unknown field": st.sampled_from([("colour", "red"), ("\x00", 1), ("Width", 32), ("items", [])]),
}


# metadata, the free-form field, and the sizes are drawn more often than the others
BAD_NAMES = sorted(BAD) + ["metadata"] * 4 + ["width", "height"]


@st.composite
def spec(draw, need_prompt: bool = True, bad_fields: tuple[int, ...] = (0, 0, 1, 1, 2)) -> dict:
    fields = {name: draw(strategy) for name, strategy in GOOD.items()
              if (name == "prompt" and need_prompt) or draw(st.integers(0, 3)) == 0}
    for _ in range(draw(st.sampled_from(bad_fields))):  # how many fields get a bad value
        name = draw(st.sampled_from(BAD_NAMES))
        value = draw(BAD[name])
        if name == "unknown field":
            name, value = value
        fields[name] = value
    return fields


@st.composite
def image_spec(draw) -> dict:
    """tiny-sd image-to-image, with strengths and steps around int(steps × strength) = 0."""
    fields = {"model": "tiny-sd", "prompt": "x", "init_image": draw(st.sampled_from([PNG_B64, "UPLOAD"])),
              "steps": draw(st.integers(1, 4)), "strength": draw(st.sampled_from([0.1, 0.25, 0.5, 0.9, 1, 1.0]))}
    if draw(st.booleans()):
        fields["mask_image"] = PNG_B64
    return fields


def _png(size: int = 40) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (20, 200, 30)).save(buf, format="PNG")
    return buf.getvalue()


PNG_B64 = base64.b64encode(_png()).decode()
NOT_AN_OBJECT = st.sampled_from([Raw(""), Raw("{oops"), Raw("null"), Raw("[]"), Raw("1"), Raw('"text"'),
                                 Raw("[" * 5000), Raw("NaN"), Raw("{}"), Raw('{"prompt": "a",}'), Raw("\xff")])
# A good spec whose metadata carries the non-standard tokens and nesting a JSON parser lets
# through (the free-form field is where they reach the database).
NASTY_METADATA = st.one_of(st.builds(lambda v: {"x": v}, NON_FINITE), st.builds(lambda v: {"x": v}, DEEP),
                           st.builds(lambda v: {"x": v}, ODD_NUMBERS),
                           st.dictionaries(st.text(max_size=6), NASTY_JSON, min_size=1, max_size=3))
NASTY_META_SPEC = st.builds(lambda s, m: {**s, "metadata": m}, spec(bad_fields=(0,)), NASTY_METADATA)
JOB_BODY = st.one_of(spec(), spec(), NASTY_META_SPEC, image_spec(), NOT_AN_OBJECT,
                     st.dictionaries(st.text(max_size=8), NASTY_JSON, max_size=3))
# In a batch one bad item refuses it all: items are mostly good, so that batches get through.
MOSTLY_GOOD = (0, 0, 0, 0, 0, 0, 1)
ITEM = st.one_of(spec(bad_fields=MOSTLY_GOOD), spec(bad_fields=MOSTLY_GOOD), spec(bad_fields=MOSTLY_GOOD),
                 st.builds(lambda s, o: {**s, "overrides": o}, spec(bad_fields=MOSTLY_GOOD),
                           spec(False, bad_fields=MOSTLY_GOOD)),
                 spec(), NASTY_META_SPEC, st.builds(lambda o: {"prompt": "p", "overrides": o}, WRONG), NOT_AN_OBJECT)
ITEMS = st.one_of(st.lists(ITEM, min_size=1, max_size=3), st.lists(ITEM, min_size=1, max_size=3), st.just([]))
HEADER_GOOD = {"defaults": spec(need_prompt=False, bad_fields=MOSTLY_GOOD), "priority": st.integers(-100, 100),
               "metadata": st.one_of(METADATA_GOOD, METADATA_GOOD, NASTY_METADATA),
               "webhook_url": st.sampled_from(["http://127.0.0.1:9/hook", None])}  # allow-listed (conftest)
HEADER_BAD = {"defaults": st.one_of(WRONG, st.just("{}")),
              "priority": st.one_of(st.sampled_from([101, -101, 1.5]), WRONG),
              "metadata": METADATA_BAD, "webhook_url": st.one_of(st.sampled_from(["ftp://x", "http://x\x00"]), WRONG),
              "items": WRONG, "colour": st.just(1)}


@st.composite
def header(draw) -> dict:
    fields = {name: draw(s) for name, s in HEADER_GOOD.items() if draw(st.integers(0, 2)) == 0}
    if draw(st.integers(0, 3)) == 0:
        name = draw(st.sampled_from(sorted(HEADER_BAD) + ["metadata"] * 2))
        fields[name] = draw(HEADER_BAD[name])
    return fields


# --- the checks -------------------------------------------------------------------------------

def _rows() -> tuple[int, int]:
    from db.session import session_scope

    with session_scope() as s:
        return tuple(s.execute(text("SELECT (SELECT count(*) FROM jobs), (SELECT count(*) FROM batches)")).one())


def _status_agrees(batch: dict) -> None:
    """A batch's status never contradicts its counts (docs: queued/running while any job
    is; then canceled if it was cancelled, else succeeded, failed or partial)."""
    c, total, status = batch["counts"], batch["total"], batch["status"]
    assert sum(c.values()) == total, batch
    if c["queued"] or c["running"]:
        assert status in ("queued", "running"), batch
    elif c["succeeded"] == total:
        assert status == "succeeded", batch
    elif c["failed"] == total:
        assert status == "failed", batch
    elif c["canceled"] == total:
        assert status == "canceled", batch
    else:  # a mix: partial, or canceled when a cancel ended some of it
        assert status == "partial" or (status == "canceled" and c["canceled"]), batch


def _served(client, kind: str, ident: str) -> None:
    """Every read route answers 200 (and parses) for what a 2xx left behind."""
    if kind == "jobs":
        r = client.get(f"/v1/jobs/{ident}")
        assert r.status_code == 200, r.text
        if r.json()["batch_id"] is None:
            return
        ident = r.json()["batch_id"]
    r = client.get(f"/v1/batches/{ident}")
    assert r.status_code == 200, r.text
    _status_agrees(r.json())
    page = client.get(f"/v1/batches/{ident}/jobs", params={"limit": 1000})
    assert page.status_code == 200, page.text
    for job in page.json()["data"][:4]:
        assert client.get(f"/v1/jobs/{job['id']}").status_code == 200
    lines = client.get(f"/v1/batches/{ident}/results.jsonl")
    assert lines.status_code == 200
    assert len([json.loads(x) for x in lines.text.splitlines()]) == r.json()["total"]


SPEC_FIELDS = ("model", "prompt", "negative_prompt", "width", "height", "steps", "guidance_scale", "scheduler",
               "beta_schedule", "seed", "output_format", "strength")
BATCH_FIELDS = {"defaults", "priority", "webhook_url", "metadata"}


def _same(given: object, served: object) -> bool:
    if isinstance(given, bool) or isinstance(served, bool):  # a boolean is never a number
        return given is served
    if isinstance(given, (int, float)) and isinstance(served, (int, float)):
        return float(given) == float(served)
    return given == served


def _as_asked(fields: dict, job: dict) -> None:
    """An accepted job is what was asked for: every field given is the one served (never
    replaced by a default), within the documented bounds."""
    spec = job["spec"]
    for name in SPEC_FIELDS:
        if fields.get(name) is not None:
            assert _same(fields[name], spec.get(name)), (name, fields[name], spec.get(name))
    if fields.get("custom_id") is not None:
        assert job["custom_id"] == fields["custom_id"], (fields["custom_id"], job["custom_id"])
    if fields.get("metadata") is not None:
        assert _as_decimals(job["metadata"]) == _as_decimals(fields["metadata"]), (fields["metadata"], job["metadata"])
    _metadata_bounded(job["metadata"])
    if spec["kind"] != "text-to-image":  # diffusers denoises int(steps × strength) steps
        assert int(spec["steps"] * spec["strength"]) >= 1, spec


def _as_decimals(value: object) -> object:
    """JSON numbers as the decimals they denote: Postgres' jsonb keeps the decimal, not the
    float's spelling (1.5e+73 comes back as 15 followed by 72 zeros, an integer in Python)."""
    return json.loads(json.dumps(value), parse_float=Decimal, parse_int=Decimal)


def _metadata_bounded(metadata: object) -> None:
    if metadata is not None:
        assert len(json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode()) <= MAX_METADATA_BYTES


def expect_job(sent: object):
    def check_job(client, job: dict) -> None:
        _as_asked(sent, job)
    return check_job


def expect_batch(head: dict, items: list):
    """An accepted batch is its header (priority, metadata) and one job per item, each the
    item over the defaults (an object), with its overrides."""
    def check_batch(client, batch: dict) -> None:
        if "priority" in head:
            assert _same(head["priority"], batch["priority"]), (head["priority"], batch["priority"])
        if head.get("metadata") is not None:
            assert _as_decimals(batch["metadata"]) == _as_decimals(head["metadata"]), (head, batch["metadata"])
        _metadata_bounded(batch["metadata"])
        defaults = head.get("defaults", {})
        assert isinstance(defaults, dict), defaults
        jobs = client.get(f"/v1/batches/{batch['id']}/jobs", params={"limit": 1000}).json()["data"]
        assert len(jobs) == len(items) == batch["total"]
        for item, job in zip(items, jobs):
            overrides = item.get("overrides") or {}
            merged = {**defaults, **{k: v for k, v in item.items() if k != "overrides"}, **overrides}
            _as_asked(merged, job)
    return check_batch


def _jsonl_parts(text_: str) -> tuple[dict, list]:
    parsed = [json.loads(line) for line in text_.split("\n") if line.strip()]
    if parsed and isinstance(parsed[0], dict) and parsed[0] and set(parsed[0]) <= BATCH_FIELDS:
        return parsed[0], parsed[1:]
    return {}, parsed


def _target_state(client, kind: str, ident: str) -> object:
    r = client.get(f"/v1/{kind}/{ident}")
    if r.status_code != 200:
        return r.status_code
    body = r.json()
    return (body["status"], body.get("counts"), body.get("attempts"))


def check(client, route: str, r, before: tuple[int, int], target: tuple[str, str, object] | None = None,
          expect=None) -> None:
    STATUSES[(route, r.status_code)] += 1
    assert r.status_code < 500, (route, r.status_code, r.text[:2000])
    if r.status_code >= 400:
        err = r.json()["error"]
        assert isinstance(err["type"], str) and err["type"] and isinstance(err["message"], str) and err["message"]
        assert _rows() == before, (route, r.text[:500])
        if target is not None:
            kind, ident, state = target
            assert _target_state(client, kind, ident) == state, (route, r.text[:500])
        return
    body = r.json()
    if route.startswith("POST /v1/jobs") or route.startswith("POST /v1/batches"):
        kind = "jobs" if route.startswith("POST /v1/jobs") else "batches"
        if route.endswith("cancel") or route.endswith("retry"):
            kind = target[0] if target else kind
        if "id" in body and kind in POOL:
            if body["id"] not in POOL[kind]:
                POOL[kind].append(body["id"])
            _served(client, kind, body["id"])
    if expect and r.headers.get("Idempotent-Replayed") != "true":
        expect(client, body)


@pytest.fixture(scope="module", autouse=True)
def _report():
    t0 = time.monotonic()
    yield
    total = sum(STATUSES.values())
    by_route: dict[str, Counter] = {}
    for (route, status), n in STATUSES.items():
        by_route.setdefault(route, Counter())[status] += n
    print(f"\nproperty test: {total} requests in {time.monotonic() - t0:.1f} s")
    for route, counts in sorted(by_route.items()):
        print(f"  {route}: {dict(sorted(counts.items()))}")


@pytest.fixture(scope="module")
def upload_ref(client) -> str:
    return client.post("/v1/uploads", content=_png(48), headers={"Content-Type": "image/png"}).json()["ref"]


def _with_upload(body: object, ref: str) -> object:
    if isinstance(body, dict) and body.get("init_image") == "UPLOAD":
        return {**body, "init_image": ref}
    return body


# --- the properties ---------------------------------------------------------------------------

@settings(max_examples=150, **SETTINGS)
@given(body=JOB_BODY)
def test_post_job(client, upload_ref, body):
    before = _rows()
    raw = dumps(_with_upload(body, upload_ref))
    r = client.post("/v1/jobs", content=raw.encode("utf-8", "surrogatepass"),
                    headers={"Content-Type": "application/json"})
    check(client, "POST /v1/jobs", r, before, expect=r.status_code < 300 and expect_job(json.loads(raw)))


@settings(max_examples=120, **SETTINGS)
@given(head=header(), items=ITEMS, key=st.sampled_from([None, None, None, "k1", "k2"]))
def test_post_batch_json(client, head, items, key):
    before = _rows()
    body = {**head, "items": items} if "items" not in head else head
    headers = {"Content-Type": "application/json", **({"Idempotency-Key": key} if key else {})}
    raw = dumps(body)
    r = client.post("/v1/batches", content=raw.encode("utf-8", "surrogatepass"), headers=headers)
    if r.status_code < 300:
        sent = json.loads(raw)
        items = sent.pop("items")
    check(client, "POST /v1/batches (JSON)", r, before, expect=r.status_code < 300 and expect_batch(sent, items))


@settings(max_examples=80, **SETTINGS)
@given(head=st.one_of(st.none(), header()), items=ITEMS)
def test_post_batch_jsonl(client, head, items):
    before = _rows()
    raw = "\n".join(([dumps(head)] if head else []) + [dumps(item) for item in items])
    r = client.post("/v1/batches", content=raw.encode("utf-8", "surrogatepass"), headers={"Content-Type": "application/jsonl"})
    check(client, "POST /v1/batches (JSONL)", r, before, expect=r.status_code < 300 and expect_batch(*_jsonl_parts(raw)))


def _finish(kind: str, ident: str, outcome: str) -> None:
    """What a worker records (no worker runs in tests/api)."""
    from db.session import session_scope

    where = "id = :i" if kind == "jobs" else "batch_id = :i"
    with session_scope() as s:
        if outcome == "mixed":
            s.execute(text(f"UPDATE jobs SET status = CASE WHEN seq % 2 = 0 THEN 'failed' ELSE 'succeeded' END, "
                           f"error_type = CASE WHEN seq % 2 = 0 THEN 'render_error' END, finished_at = now() "
                           f"WHERE {where} AND status IN ('queued', 'running')"), {"i": ident})
        else:
            s.execute(text(f"UPDATE jobs SET status = CAST(:o AS varchar), finished_at = now(), "
                           f"error_type = CASE WHEN CAST(:o AS varchar) = 'failed' THEN 'render_error' END "
                           f"WHERE {where} AND status IN ('queued', 'running')"), {"i": ident, "o": outcome})


@settings(max_examples=100, **SETTINGS)
@given(data=st.data())
def test_cancel_and_retry(client, other_client, data):
    if not POOL["jobs"] or not POOL["batches"]:  # seed the pool when this test runs alone
        POOL["jobs"].append(client.post("/v1/jobs", json={"prompt": "p", "steps": 1}).json()["id"])
        POOL["batches"].append(client.post("/v1/batches", json={"items": [{"prompt": "p"}] * 2}).json()["id"])
    if data.draw(st.integers(0, 2), label="fresh batch") == 0:
        n = data.draw(st.integers(1, 3))
        POOL["batches"].append(client.post("/v1/batches", json={"items": [{"prompt": "p"}] * n}).json()["id"])
    kind = data.draw(st.sampled_from(["jobs", "batches"]), label="kind")
    # an index, not the pool itself: what is drawn must not depend on earlier examples
    pick = data.draw(st.one_of(st.integers(0, 1000), st.sampled_from(["unknown", "not-a-uuid", "0", "%00"])), label="id")
    ident = POOL[kind][pick % len(POOL[kind])] if isinstance(pick, int) else (
        str(uuid.uuid4()) if pick == "unknown" else pick)
    outcome = data.draw(st.sampled_from([None, None, "succeeded", "failed", "canceled", "mixed", "running"]),
                        label="worker outcome first")
    if outcome and ident in POOL[kind]:
        _finish(kind, ident, outcome)
    action = data.draw(st.sampled_from(["cancel", "retry"] if kind == "batches" else ["cancel"]),
                       label="action")
    as_other = data.draw(st.integers(0, 5), label="other tenant") == 0
    before = _rows()
    state = _target_state(client, kind, ident)
    r = (other_client if as_other else client).post(f"/v1/{kind}/{ident}/{action}")
    check(client, f"POST /v1/{kind}/{{id}}/{action}", r, before, (kind, ident, state))
    if r.status_code < 300:
        assert not as_other
        if action == "cancel" and kind == "batches":
            _status_agrees(r.json())
            assert r.json()["counts"]["queued"] == 0


@settings(max_examples=40, **SETTINGS)
@given(data=st.one_of(st.binary(max_size=300), st.sampled_from([b"", _png(4), _png(40), _png(64)]),
                      st.builds(lambda n: _png(40)[:n], st.integers(0, 200))),
       ctype=st.sampled_from(["image/png", "image/jpeg", "application/octet-stream", "text/plain", ""]))
def test_upload(client, data, ctype):
    before = _rows()
    r = client.post("/v1/uploads", content=data, headers={"Content-Type": ctype} if ctype else {})
    check(client, "POST /v1/uploads", r, before)
    if r.status_code < 300:
        ref = r.json()["ref"]
        job = client.post("/v1/jobs", json={"model": "tiny-sd", "prompt": "x", "init_image": ref, "steps": 2})
        assert job.status_code == 202, job.text


@settings(max_examples=30, **SETTINGS)
@given(route=st.sampled_from([("/v1/jobs", "application/json"), ("/v1/batches", "application/json"),
                              ("/v1/batches", "application/jsonl"), ("/v1/uploads", "image/png")]),
       chunked=st.booleans(), over=st.sampled_from([-1, 0, 1, 4096, 65536]))
def test_body_limit(client, small_body_limit, route, chunked, over):
    """Past the body limit it is a 413, on every route, chunked or not; up to it, never."""
    path, ctype = route
    size = small_body_limit + over
    chunks = (b" " * min(8192, size - i) for i in range(0, size, 8192))
    before = _rows()
    r = client.post(path, content=chunks if chunked else b" " * size, headers={"Content-Type": ctype})
    check(client, f"POST {path} (bodies around the limit)", r, before)
    assert (r.status_code == 413) == (over > 0), (path, chunked, over, r.status_code, r.text[:200])


SEGMENT = st.one_of(st.sampled_from(["jobs", "uploads", "", ".", "..", "x.png", "a\x00b", "\t", "%", "é", "\udcff"]),
                    st.text(max_size=10), st.uuids().map(str))


@settings(max_examples=60, **SETTINGS)
@given(data=st.data())
def test_file_urls(client, data):
    """Whatever key a URL names, signed with the API's own key (the worst case: a leaked
    key), the file route answers 200 only for a stored result, 404 for anything else
    (folders, uploads, odd bytes), never a 5xx."""
    from urllib.parse import quote

    from api import url_secret
    from api.deps import get_storage
    from fresco.storage import sign

    tenant, batch, job = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    result = f"{tenant}/{batch}/{job}.png"
    get_storage().put(result, b"\x89PNG", "image/png")
    get_storage().put(f"{tenant}/uploads/{'0' * 32}.png", b"\x89PNG upload", "image/png")
    key = data.draw(st.one_of(
        st.just(result), st.just(f"{tenant}"), st.just(f"{tenant}/{batch}"), st.just(f"{tenant}/uploads/{'0' * 32}.png"),
        st.just(f"{tenant}/jobs/{uuid.uuid4()}.png"),
        st.builds(lambda parts: f"{tenant}/" + "/".join(parts), st.lists(SEGMENT, min_size=0, max_size=3)),
        st.builds(lambda a, b: a + result + b, st.sampled_from(["", "/", "./", "x"]), st.sampled_from(["", "\x00", "/", "x"]))),
        label="key")
    expires = int(time.time()) + 60
    sig = sign(url_secret.current(), key, expires) if "\udcff" not in key else "0" * 64
    path = quote(key.encode("utf-8", "surrogateescape"), safe="/")
    r = client.__class__(client.app).get(f"/v1/files/{path}?expires={expires}&sig={sig}")
    STATUSES[("GET /v1/files/{key}", r.status_code)] += 1
    assert r.status_code < 500, (key, r.status_code, r.text[:300])
    if key == result:
        assert r.status_code == 200 and r.content == b"\x89PNG"
    else:  # not a result: 404 (or 401 where the client rewrote the path before sending it)
        assert r.status_code in (401, 404, 422), (key, r.status_code, r.text[:300])
