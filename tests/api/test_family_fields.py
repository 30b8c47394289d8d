"""Model families at the API: a field that means nothing to a model's family is a 422
naming the field (and creates nothing); GET /v1/models says what each model accepts."""
from __future__ import annotations

import pytest

# (model, what, body, field named in the message)
CASES = [
    ("tiny-sd3", "beta schedule on a flow-matching model", {"beta_schedule": "linear"}, "beta_schedule"),
    ("tiny-flux", "beta schedule on a flow-matching model", {"beta_schedule": "cosine"}, "beta_schedule"),
    ("tiny-flux", "negative prompt on guidance-distilled Flux", {"negative_prompt": "blurry"}, "negative_prompt"),
    ("tiny-sd3", "a noise-prediction scheduler on a flow-matching model", {"scheduler": "ddim"}, "scheduler"),
    ("tiny-flux", "a noise-prediction scheduler on a flow-matching model", {"scheduler": "euler_a"}, "scheduler"),
    ("tiny-sdxl", "a flow-matching scheduler on SDXL", {"scheduler": "flow_euler"}, "scheduler"),
    ("tiny-sd", "a flow-matching scheduler on SD 1.x", {"scheduler": "flow_euler"}, "scheduler"),
    ("tiny-sd3", "width not a multiple of 16", {"width": 40}, "width"),
    ("tiny-flux", "height not a multiple of 16", {"height": 72}, "height"),
]


def _assert_422(r, field: str) -> str:
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["type"] and f"{field}:" in err["message"], err
    return err["message"]


@pytest.mark.parametrize("model,what,body,field", CASES, ids=[f"{c[0]}: {c[1]}" for c in CASES])
def test_a_field_the_family_cannot_act_on_is_a_422_naming_it(client, row_count, model, what, body, field):
    before = row_count()
    message = _assert_422(client.post("/v1/jobs", json={"prompt": "a red circle", "model": model, **body}), field)
    if field == "beta_schedule":
        assert "flow-matching" in message
    r = client.post("/v1/batches", json={"defaults": {"model": model}, "items": [{"prompt": "a"}, {"prompt": "b", **body}]})
    assert "items[1]." + field in _assert_422(r, field)
    assert row_count() == before


def test_the_same_fields_are_fine_where_they_apply(client):
    for model, body in (("tiny-sdxl", {"beta_schedule": "linear", "negative_prompt": "blurry", "width": 40}),
                        ("tiny-sd3", {"negative_prompt": "blurry", "width": 48}),
                        ("tiny-flux", {"guidance_scale": 3.5, "negative_prompt": "", "height": 80})):
        r = client.post("/v1/jobs", json={"prompt": "a red circle", "model": model, **body})
        assert r.status_code == 202, r.text
        assert client.post(f"/v1/jobs/{r.json()['id']}/cancel").status_code == 200  # no worker here


def test_models_say_their_family_and_what_they_accept(client):
    models = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
    sd, sdxl, sd3, flux = (models[k] for k in ("tiny-sd", "tiny-sdxl", "tiny-sd3", "tiny-flux"))
    assert (sd["family"], sdxl["family"], sd3["family"], flux["family"]) == ("sd", "sdxl", "sd3", "flux")
    assert models["shapes"]["family"] == "sd"
    for m in (sd3, flux):
        assert m["schedulers"] == ["flow_euler"] and m["beta_schedules"] == []
        assert "beta_schedule" not in m["fields"] and m["limits"]["size_multiple"] == 16
    assert "negative_prompt" in sd3["fields"] and "negative_prompt" not in flux["fields"]
    assert (sd3["guidance"], flux["guidance"]) == ("classifier-free", "distilled")
    assert "beta_schedule" in sdxl["fields"] and sdxl["beta_schedules"] and "flow_euler" not in sdxl["schedulers"]
    for m in (sd, sdxl, sd3, flux):  # every family does image-to-image and inpainting
        assert {"init_image", "mask_image", "strength"} <= set(m["fields"]), m["id"]
    assert not {"init_image", "mask_image", "strength"} & set(models["shapes"]["fields"])  # text-to-image only
