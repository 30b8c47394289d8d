"""The batch signature: one printed form (stored in the jobs table, shown in logs and
Flower), read back by one parser."""
from __future__ import annotations

import pytest

from fresco.registry import get_registry
from fresco.spec import Signature, resolve, signature


@pytest.mark.parametrize("fields,printed", [
    ({"prompt": "x"}, "shapes|text-to-image|32x32|20|ddim|-|4"),
    ({"prompt": "x", "width": 64, "height": 48, "steps": 7, "scheduler": "euler_a", "beta_schedule": "cosine",
      "guidance_scale": 7.5}, "shapes|text-to-image|64x48|7|euler_a|cosine|7.5"),
    ({"prompt": "x", "model": "tiny-sd", "init_image": "upload:u", "strength": 0.35, "guidance_scale": 0},
     "tiny-sd|image-to-image|64x64|20|ddim|-|0|s0.35"),
    ({"prompt": "x", "loras": [{"id": "shapes-swap", "weight": 0.8}]}, "shapes|text-to-image|32x32|20|ddim|-|4|lshapes-swap@0.8"),
    ({"prompt": "x", "loras": [{"id": "shapes-swap", "weight": 1}, {"id": "ad_" + "a" * 32, "weight": -0.125}]},
     f"shapes|text-to-image|32x32|20|ddim|-|4|lad_{'a' * 32}@-0.125+shapes-swap@1.0"),
    ({"prompt": "x", "model": "tiny-sd", "init_image": "upload:u", "strength": 0.35, "loras": []},
     "tiny-sd|image-to-image|64x64|20|ddim|-|7.5|s0.35"),
])
def test_the_printed_form_is_the_one_stored_and_reads_back(fields, printed):
    spec = resolve(fields, get_registry())
    assert signature(spec) == str(Signature.of(spec)) == printed
    parsed = Signature.parse(printed)
    assert str(parsed) == printed and parsed == Signature.of(spec)


def test_jobs_differing_only_per_image_share_a_signature():
    registry = get_registry()
    a = resolve({"prompt": "a red circle", "seed": 1, "output_format": "png"}, registry)
    b = resolve({"prompt": "a blue square", "negative_prompt": "red", "seed": 2, "output_format": "webp"}, registry)
    assert Signature.of(a) == Signature.of(b)
    assert Signature.of(a) != Signature.of(resolve({"prompt": "x", "steps": 21}, registry))


def test_adapters_and_their_weights_split_calls_and_their_order_does_not():
    registry = get_registry()
    upload = {"id": "ad_" + "b" * 32, "weight": 0.5}

    def sig(*loras: dict) -> Signature:
        return Signature.of(resolve({"prompt": "x", "loras": list(loras)}, registry))

    swap = {"id": "shapes-swap", "weight": 1.0}
    assert sig(swap, upload) == sig(upload, swap)  # sorted: the sum of the deltas is the same
    assert sig(swap) != sig({"id": "shapes-swap", "weight": 1.0000001}) != sig()
    assert sig() == Signature.of(resolve({"prompt": "x"}, registry))  # none: the signature it always had


@pytest.mark.parametrize("text", ["", "test-1234", "m|k|32|20|ddim|-|4", "m|k|32x32|20|ddim|-|4|0.5",
                                  "m|k|32x32|twenty|ddim|-|4", "m|k|32x32|20|ddim|-|4|la", "m|k|32x32|20|ddim|-|4|l",
                                  "m|k|32x32|20|ddim|-|4|la@1|s0.5", "m|k|32x32|20|ddim|-|4|la@x"])
def test_anything_else_is_not_a_signature(text):
    with pytest.raises(ValueError):
        Signature.parse(text)
