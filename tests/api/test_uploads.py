"""Input images: uploaded or inline base64, validated before anything is queued."""
from __future__ import annotations

import base64
import io

import pytest
from PIL import Image


def _png(w: int = 40, h: int = 40, mode: str = "RGB", color=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (w, h), color if mode == "RGB" else 0).save(buf, format="PNG")
    return buf.getvalue()


def _upload(client, data: bytes, ctype: str = "image/png"):
    return client.post("/v1/uploads", content=data, headers={"Content-Type": ctype})


def test_upload_and_reference_it(client):
    r = _upload(client, _png())
    assert r.status_code == 201, r.text
    up = r.json()
    assert up["ref"] == f"upload:{up['id']}" and (up["width"], up["height"]) == (40, 40)
    assert _upload(client, _png()).json()["id"] == up["id"]  # content-addressed
    job = client.post("/v1/jobs", json={"model": "tiny-sd", "prompt": "x", "init_image": up["ref"], "strength": 0.5})
    assert job.status_code == 202, job.text
    spec = job.json()["spec"]
    assert spec["kind"] == "image-to-image" and spec["strength"] == 0.5 and spec["init_image"].endswith(f"{up['id']}.png")
    inpaint = client.post("/v1/jobs", json={"model": "tiny-sd", "prompt": "x", "init_image": up["ref"],
                                            "mask_image": "data:image/png;base64," + base64.b64encode(_png(mode="L")).decode()})
    assert inpaint.status_code == 202, inpaint.text
    assert inpaint.json()["spec"]["kind"] == "inpainting" and inpaint.json()["spec"]["strength"] == 0.8


@pytest.mark.parametrize("what,data,status", [
    ("corrupt", b"\x89PNG\r\n\x1a\n" + b"garbage" * 20, 422),
    ("not an image", b"hello world", 422),
    ("empty", b"", 422),
    ("gif", (lambda: (lambda b: (Image.new("RGB", (20, 20)).save(b, format="GIF"), b.getvalue())[1])(io.BytesIO()))(), 422),
    ("too small", _png(4, 4), 422),
    ("decompression bomb", _png(8192, 8192, mode="L"), 422),
    ("over 20 MB", b"\x00" * (20 * 1024 * 1024 + 1), 413),
])
def test_bad_uploads_are_refused(client, what, data, status):
    r = _upload(client, data)
    assert r.status_code == status, r.text
    assert r.json()["error"]["message"]


def test_image_fields_are_checked_against_the_model_and_tenant(client, other_client, row_count):
    ref = _upload(client, _png()).json()["ref"]
    before = row_count()
    cases = [
        ({"prompt": "x", "mask_image": ref}, "mask_image"),
        ({"prompt": "x", "strength": 0.5}, "strength"),
        ({"prompt": "x", "init_image": ref, "strength": 1.5}, "strength"),
        ({"prompt": "x", "init_image": "upload:" + "0" * 32}, "init_image"),
        ({"prompt": "x", "init_image": "not base64!"}, "init_image"),
        ({"prompt": "x", "init_image": base64.b64encode(b"not an image").decode()}, "init_image"),
    ]
    for body, field in cases:
        r = client.post("/v1/jobs", json={"model": "tiny-sd", **body})
        assert r.status_code == 422 and field in r.json()["error"]["message"], (body, r.text)
    # another tenant's upload reference is not found
    r = other_client.post("/v1/jobs", json={"model": "tiny-sd", "prompt": "x", "init_image": ref})
    assert r.status_code == 422 and "no upload" in r.json()["error"]["message"]
    assert row_count() == before


def test_a_model_without_image_kinds_refuses_them(client, tmp_path):
    from fresco.registry import get_registry

    no_edit = [e for e in get_registry().entries.values() if "image-to-image" not in e.kinds]
    if not no_edit:
        pytest.skip("every registered model does image-to-image")
    ref = _upload(client, _png()).json()["ref"]
    r = client.post("/v1/jobs", json={"model": no_edit[0].id, "prompt": "x", "init_image": ref})
    assert r.status_code == 422 and "does not do image-to-image" in r.json()["error"]["message"]
