"""images.generate and images.edit through the official `openai` package against a farm:
the images come back as URLs or base64 of the requested size; a size the model cannot
render is a BadRequestError naming the sizes it can; a field the farm does not act on is
refused by name."""
from __future__ import annotations

import base64
import io

import httpx
import openai
import pytest
from PIL import Image
from support.images import png_size

FAST = {"steps": 4}  # a farm extension, sent as the openai package sends extra fields


def test_generate_answers_urls_of_images_of_the_requested_size(client):
    r = client.images.generate(model="shapes", prompt="a red circle on a blue background", n=2, size="48x32",
                               extra_body=FAST)
    assert r.created > 0 and r.size == "48x32" and r.output_format == "png"
    assert len(r.data) == 2 and all(d.b64_json is None for d in r.data)
    images = [httpx.get(d.url, timeout=30) for d in r.data]  # presigned by S3: no API key
    assert all(i.status_code == 200 for i in images)
    assert [png_size(i.content) for i in images] == [(48, 32), (48, 32)]
    assert images[0].content != images[1].content  # each image its own seed


def test_generate_b64_json_is_the_png_itself(client):
    r = client.images.generate(model="shapes", prompt="a green square on a white background", size="32x64",
                               response_format="b64_json", extra_body={**FAST, "seed": 7})
    (image,) = r.data
    assert image.url is None
    decoded = Image.open(io.BytesIO(base64.b64decode(image.b64_json)))
    assert decoded.format == "PNG" and decoded.size == (32, 64)
    again = client.images.generate(model="shapes", prompt="a green square on a white background", size="32x64",
                                   response_format="b64_json", extra_body={**FAST, "seed": 7})
    assert again.data[0].b64_json == image.b64_json  # same seed and spec, same pixels (CPU)


def test_a_size_the_model_cannot_render_is_a_400_naming_the_sizes_it_can(client, openai_farm):
    def newest_job() -> list[str]:  # ids only: a presigned result URL changes with the clock
        return [j["id"] for j in openai_farm.http.get("/v1/jobs", params={"limit": 1}).json()["data"]]

    before = newest_job()
    with pytest.raises(openai.BadRequestError) as e:
        client.images.generate(model="shapes", prompt="a red circle", size="1024x1024")
    err = e.value
    assert err.status_code == 400 and err.param == "size" and err.type == "invalid_request_error"
    assert "cannot render '1024x1024'" in err.message
    assert "W in 16..64 and H in 16..64, each a multiple of 8" in err.message and "64x64" in err.message
    for size in ("big", "30x30", "64x72"):
        with pytest.raises(openai.BadRequestError, match="16..64"):
            client.images.generate(model="shapes", prompt="a red circle", size=size)
    assert newest_job() == before  # nothing created


def test_fields_the_farm_does_not_act_on_are_refused_by_name(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.images.generate(model="shapes", prompt="a red circle", quality="hd")
    assert e.value.param == "quality" and "does not act on" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        client.images.generate(model="dall-e-3", prompt="a red circle")
    assert e.value.param == "model" and "shapes" in e.value.message  # the farm's models are named


def _png(mode: str, size: tuple[int, int], fill) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, fill).save(buf, format="PNG")
    return buf.getvalue()


def test_edit_renders_from_the_image_and_the_mask(client):
    red = _png("RGB", (48, 48), (220, 40, 40))
    mask = Image.new("RGBA", (48, 48), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (24, 0, 48, 48))  # transparent right half: repaint it (OpenAI's convention)
    buf = io.BytesIO()
    mask.save(buf, format="PNG")
    weak = client.images.edit(model="tiny-sd", image=("red.png", red, "image/png"), prompt="a blue square",
                              response_format="b64_json", extra_body={"steps": 6, "seed": 3, "strength": 0.3})
    pixels = Image.open(io.BytesIO(base64.b64decode(weak.data[0].b64_json)))
    assert pixels.size == (48, 48) and weak.size == "48x48"  # no size: the input image's
    inpainted = client.images.edit(model="tiny-sd", image=("red.png", red, "image/png"),
                                   mask=("mask.png", buf.getvalue(), "image/png"), prompt="a blue square", n=2,
                                   size="32x32", extra_body={"steps": 6, "seed": 3})
    assert len(inpainted.data) == 2
    assert png_size(httpx.get(inpainted.data[0].url, timeout=30).content) == (32, 32)


def test_edit_is_refused_for_models_that_do_not_edit_and_for_masks_without_alpha(client):
    red = ("red.png", _png("RGB", (32, 32), (220, 40, 40)), "image/png")
    with pytest.raises(openai.BadRequestError) as e:
        client.images.edit(model="shapes", image=red, prompt="a blue square")
    assert e.value.param == "model" and "tiny-sd" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        client.images.edit(model="tiny-sd", image=red, mask=("m.png", _png("L", (32, 32), 0), "image/png"),
                           prompt="a blue square")
    assert e.value.param == "mask" and "alpha" in e.value.message
