"""POST/GET/DELETE /v1/adapters and `loras` in specs, through the API on the real
Postgres and file store: an upload is checked whole before anything is stored, is private
to its tenant, and a spec may name only adapters made for its model."""
from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from sqlalchemy import text

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "models" / "shapes-swap" / "pytorch_lora_weights.safetensors"
OCTET = {"Content-Type": "application/octet-stream"}


def _adapter_rows() -> int:
    from db.session import session_scope

    with session_scope() as s:
        return s.scalar(text("SELECT count(*) FROM adapters"))


def _stored_adapters() -> list[str]:
    from fresco.settings import get_settings

    root = Path(get_settings().storage_url.removeprefix("file://")) / "adapters"
    return sorted(p.name for p in root.glob("*")) if root.exists() else []


def _upload(client, data: bytes, model: str = "shapes", **params):
    return client.post("/v1/adapters", params={"model": model, **params}, content=data, headers=OCTET)


def _job(client, model: str = "shapes", **loras):
    return client.post("/v1/jobs", json={"model": model, "prompt": "a red circle", "steps": 2, **loras})


def _refused_and_nothing_stored(r, status: int, field: str | None, rows: int, objects: list[str]) -> dict:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    if field is not None:
        assert error.get("field") == field, error
    assert _adapter_rows() == rows and _stored_adapters() == objects
    return error


def test_an_upload_is_its_tenants_own(client, other_client):
    r = _upload(client, SHIPPED.read_bytes(), name="mine")
    assert r.status_code == 201, r.text
    adapter = r.json()
    assert adapter["id"].startswith("ad_") and adapter["origin"] == "upload" and adapter["base"] == "shapes"
    assert adapter["name"] == "mine" and adapter["rank"] == 8 and adapter["bytes"] == SHIPPED.stat().st_size

    mine = {a["id"]: a for a in client.get("/v1/adapters").json()["data"]}
    assert adapter["id"] in mine and mine["shapes-swap"]["origin"] == "registry"
    assert client.get(f"/v1/adapters/{adapter['id']}").json()["id"] == adapter["id"]
    models = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
    assert models["shapes"]["adapters"] == ["shapes-swap", adapter["id"]]
    assert models["tiny-sd"]["adapters"] == [] and "loras" in models["shapes"]["fields"]

    r = _job(client, loras=[{"id": adapter["id"], "weight": 0.5}, {"id": "shapes-swap", "weight": 1}])
    assert r.status_code == 202, r.text
    spec = r.json()["spec"]
    assert spec["loras"] == sorted([{"id": adapter["id"], "weight": 0.5}, {"id": "shapes-swap", "weight": 1.0}],
                                   key=lambda x: x["id"])

    # In a batch too (its items are checked while they stream into COPY).
    r = client.post("/v1/batches", json={"defaults": {"steps": 2, "loras": [{"id": adapter["id"]}]},
                                         "items": [{"prompt": "a"}, {"prompt": "b", "loras": []}]})
    assert r.status_code == 202, r.text

    # Another tenant: not listed, not found, not usable; its models list does not show it.
    assert adapter["id"] not in {a["id"] for a in other_client.get("/v1/adapters").json()["data"]}
    assert other_client.get(f"/v1/adapters/{adapter['id']}").status_code == 404
    assert other_client.delete(f"/v1/adapters/{adapter['id']}").status_code == 404
    other_models = {m["id"]: m for m in other_client.get("/v1/models").json()["data"]}
    assert other_models["shapes"]["adapters"] == ["shapes-swap"]
    r = _job(other_client, loras=[{"id": adapter["id"]}])
    assert r.status_code == 422 and r.json()["error"]["field"] == "body.loras[0].id", r.text

    # Deleted: gone from storage and from the list; naming it is a 422.
    assert client.delete("/v1/adapters/shapes-swap").status_code == 409
    assert client.delete(f"/v1/adapters/{adapter['id']}").status_code == 204
    assert f"{adapter['id']}.safetensors" not in _stored_adapters()
    assert client.get(f"/v1/adapters/{adapter['id']}").status_code == 404
    assert _job(client, loras=[{"id": adapter["id"]}]).status_code == 422


def test_bad_uploads_are_refused_and_nothing_is_stored(client, monkeypatch):
    rows, objects = _adapter_rows(), _stored_adapters()
    good = SHIPPED.read_bytes()

    e = _refused_and_nothing_stored(_upload(client, b"\x89PNG\r\n\x1a\n not a lora"), 422, "file", rows, objects)
    assert "not a safetensors file" in e["message"]
    torch_pickle = io.BytesIO()
    torch.save(load_safetensors(good), torch_pickle)  # a .bin / .pt checkpoint: refused, never unpickled
    _refused_and_nothing_stored(_upload(client, torch_pickle.getvalue()), 422, "file", rows, objects)

    # Made for another base: tiny-sd's UNet has other modules and widths.
    e = _refused_and_nothing_stored(_upload(client, good, model="tiny-sd"), 422, "file", rows, objects)
    assert "tiny-sd" in e["message"]
    _refused_and_nothing_stored(_upload(client, good, model="no-such-model"), 422, "model", rows, objects)

    # Keys that are not LoRA weights, or a LoRA weight that does not fit its module.
    state = load_safetensors(good)
    extra = save_safetensors({**state, "unet.conv_in.weight": torch.zeros(16, 3, 3, 3)})
    e = _refused_and_nothing_stored(_upload(client, extra), 422, "file", rows, objects)
    assert "unet.conv_in.weight" in e["message"]
    name = next(k for k in state if k.endswith("to_q.lora_A.weight"))
    wrong = save_safetensors({**state, name: torch.zeros(state[name].shape[0], state[name].shape[1] + 8)})
    e = _refused_and_nothing_stored(_upload(client, wrong), 422, "file", rows, objects)
    assert name in e["message"] and "does not fit" in e["message"]

    from fresco.settings import get_settings

    monkeypatch.setattr(get_settings(), "adapter_max_bytes", len(good) - 1)
    e = _refused_and_nothing_stored(_upload(client, good), 413, None, rows, objects)
    assert "FRESCO_ADAPTER_MAX_BYTES" in e["message"]


@pytest.mark.parametrize("loras, field, words", [
    ([{"id": "no-such-adapter"}], "loras[0].id", "unknown adapter"),
    ([{"id": "ad_" + "0" * 32}], "loras[0].id", "unknown adapter"),
    ([{"id": "shapes-swap", "weight": 2.5}], "loras[0].weight", "outside -2..2"),
    ([{"id": "shapes-swap"}, {"id": "shapes-swap"}], "loras[1].id", "named twice"),
    ([{"id": "shapes-swap", "weight": "1"}], "loras.0.weight", None),
    ([{"id": "shapes-swap", "scale": 1}], "loras.0.scale", None),
])
def test_bad_loras_in_a_spec_are_422s_naming_the_field(client, row_count, loras, field, words):
    before = row_count()
    r = _job(client, loras=loras)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert field in error.get("field", "") + error["message"], error
    if words:
        assert words in error["message"]
    assert row_count() == before


def test_an_adapter_for_another_model_is_refused_at_submission(client, row_count):
    before = row_count()
    r = _job(client, model="tiny-sd", loras=[{"id": "shapes-swap"}])
    assert r.status_code == 422 and r.json()["error"]["field"] == "body.loras[0].id", r.text
    assert "made for model 'shapes'" in r.json()["error"]["message"]
    r = client.post("/v1/batches", json={"defaults": {"model": "tiny-sd", "steps": 2},
                                         "items": [{"prompt": "a"}, {"prompt": "b", "loras": [{"id": "shapes-swap"}]}]})
    assert r.status_code == 422 and r.json()["error"]["field"] == "items[1].loras[0].id", r.text
    r = client.post("/v1/batches", json={"defaults": {"model": "tiny-sd", "loras": [{"id": "shapes-swap"}]},
                                         "items": [{"prompt": "a"}]})
    assert r.status_code == 422 and r.json()["error"]["field"] == "defaults.loras[0].id", r.text
    assert row_count() == before
