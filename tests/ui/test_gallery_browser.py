"""The gallery in headless Chromium against a running farm (API and a worker as the
README starts them): a batch page opened before any worker runs fills in live, its bar
reaches 100% and its grid shows every image; a prompt carrying markup shows as text and
runs nothing; another tenant sees none of it. Screenshots of the batch grid and a job
page go to $FRESCO_SCREENSHOTS_DIR (docs/images/ to refresh the README's), else the
test's temporary folder."""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

from support.procs import ROOT

MARKUP = "<script>window.pwned=1</script><b>x</b>"
N = 8
LOADED_IMAGES = ("() => Array.from(document.querySelectorAll('#grid img'))"
                 ".filter(i => i.complete && i.naturalWidth > 0).length")


def screenshots(tmp: Path) -> Path:
    where = os.environ.get("FRESCO_SCREENSHOTS_DIR")
    return (ROOT / where) if where else tmp


def sign_in(context, key: str):
    page = context.new_page()
    page.goto("/ui/login")
    page.fill("#key", key)
    page.click("form.login button[type=submit]")
    page.wait_for_url("**/ui/")
    return page


def test_a_batch_fills_in_live_and_only_its_tenant_sees_it(farm, chromium, new_key, tmp_path):
    farm.start_api()
    items = [{"prompt": MARKUP, "seed": 7, "custom_id": "markup"}]
    items += [{"prompt": f"a red circle on blue, number {i}", "seed": 100 + i} for i in range(N - 1)]
    batch = farm.submit(items, defaults={"steps": 4}, metadata={"owner": MARKUP})
    base = farm.env["FRESCO_API_URL"]
    shots = screenshots(tmp_path)
    shots.mkdir(parents=True, exist_ok=True)

    context = chromium.new_context(base_url=base, viewport={"width": 1000, "height": 640})
    page = sign_in(context, farm.key)
    assert page.locator(f'tr[data-batch="{batch["id"]}"]').count() == 1
    cookies = context.cookies()
    assert [c["name"] for c in cookies] == ["fresco_session"] and cookies[0]["httpOnly"]
    assert cookies[0]["sameSite"] == "Strict" and farm.key not in cookies[0]["value"]
    assert page.evaluate("document.cookie") == ""  # HttpOnly: no script can read the session

    response = page.goto(f"/ui/batches/{batch['id']}")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    # opened before any worker runs: nothing done yet, the page must fill in by itself
    assert page.locator("#batch-progress").evaluate("p => [p.value, p.max]") == [0, N]
    assert page.evaluate(LOADED_IMAGES) == 0

    farm.start_worker()
    page.wait_for_function("() => { const p = document.getElementById('batch-progress');"
                           " return p.max > 0 && p.value === p.max; }", timeout=240_000)
    assert page.text_content("#batch-percent") == "100%"
    assert page.text_content("#batch-status") == "succeeded"
    page.wait_for_function(f"() => ({LOADED_IMAGES})() === {N}", timeout=30_000)
    jobs = {j["custom_id"]: j for j in farm.jobs(batch["id"])}
    shown = page.eval_on_selector_all("#grid li", "els => els.map(e => e.dataset.job)")
    assert sorted(shown) == sorted(j["id"] for j in farm.jobs(batch["id"]))
    # the 32x32 images come as 32x32 thumbnails (never upscaled), made by the worker
    assert page.eval_on_selector_all("#grid img", "els => els.map(i => [i.naturalWidth, i.naturalHeight])") == [[32, 32]] * N
    assert "made the missing thumbnail" not in farm.procs["api"].log.read_text()
    store = Path(urlparse(farm.env["FRESCO_STORAGE_URL"]).path)
    for job in jobs.values():
        assert (store / job["result"]["key"].replace(".png", ".thumb.webp")).is_file(), job["id"]

    # markup in a prompt and in metadata is text: no element made, no script run
    markup_job = jobs["markup"]["id"]
    assert page.text_content(f'#grid li[data-job="{markup_job}"] .prompt') == MARKUP
    assert page.locator("#grid b, main script").count() == 0
    assert page.evaluate("typeof window.pwned") == "undefined"
    # an action posted by script without the form's token is refused
    status = page.evaluate(f"fetch('/ui/batches/{batch['id']}/retry', {{method: 'POST'}}).then(r => r.status)")
    assert status == 403
    assert page.locator("#cancel-form").is_hidden() and page.locator("#failures-heading").is_hidden()
    page.screenshot(path=str(shots / "gallery-batch.png"))

    response = page.goto(f"/ui/jobs/{markup_job}")
    assert response.status == 200
    page.wait_for_function("() => { const i = document.getElementById('full-image');"
                           " return i && i.complete && i.naturalWidth === 32; }", timeout=30_000)
    assert page.text_content("#prompt") == MARKUP and page.text_content("#seed") == "7"
    assert '"seed": 7' in page.text_content("#spec")
    assert page.locator("table.timings th", has_text="sampling_s").count() == 1
    assert page.evaluate("typeof window.pwned") == "undefined"
    page.screenshot(path=str(shots / "gallery-job.png"), full_page=True)

    other = chromium.new_context(base_url=base)
    stranger = sign_in(other, new_key("ui-stranger-" + os.urandom(3).hex()))
    assert batch["id"] not in stranger.content() and stranger.locator("tr.batch").count() == 0
    for path in (f"/ui/batches/{batch['id']}", f"/ui/jobs/{markup_job}"):
        r = stranger.goto(path)
        assert r.status == 404 and stranger.locator("img").count() == 0, path
    other.close()
    context.close()


def test_thumbnails_from_s3_load_under_the_content_security_policy(farm, chromium, s3_server):
    """With S3 storage the images come from the store's own origin (presigned URLs): the
    CSP names it in img-src, so the browser loads them, and nothing else is allowed."""
    farm.env.update(s3_server.env())
    farm.start(workers=1)
    batch = farm.submit([{"prompt": f"a green square {i}", "seed": i} for i in range(2)], defaults={"steps": 2})
    farm.wait_batch(batch["id"])

    context = chromium.new_context(base_url=farm.env["FRESCO_API_URL"])
    page = sign_in(context, farm.key)
    from_store = []
    page.on("response", lambda r: from_store.append(r.status) if r.url.startswith(s3_server.url + "/") else None)
    response = page.goto(f"/ui/batches/{batch['id']}")
    directives = dict(d.strip().split(" ", 1) for d in response.headers["content-security-policy"].split(";"))
    assert directives["img-src"] == f"'self' {s3_server.url} data:"
    page.wait_for_function(f"() => ({LOADED_IMAGES})() === 2", timeout=30_000)
    assert from_store == [200, 200]  # each thumbnail fetched from the store by its presigned URL
    stored = s3_server.keys()  # the bucket's keys: the session's S3 server serves other tests too
    thumbs = [k for k in stored if k.endswith(".thumb.webp") and f"/{batch['id']}/" in k]
    assert len(thumbs) == 2
    context.close()
