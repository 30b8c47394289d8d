"""Registry entries against their family: a bad combination is a startup error naming the
entry and the field; an entry that lists no schedulers gets its family's."""
from __future__ import annotations

import textwrap

import pytest

from fresco.errors import RegistryError
from fresco.registry import load_registry

BASE = """
[[models]]
id = "m1"
source = "somewhere"
default_width = 64
default_height = 64
"""


def _load(tmp_path, extra: str):
    path = tmp_path / "registry.toml"
    if "min_size" not in extra:
        extra += "\nmin_size = 32"
    path.write_text(textwrap.dedent(BASE + extra + "\n"))
    return load_registry(path)


@pytest.mark.parametrize("extra,field,words", [
    ('family = "flux"\nschedulers = ["flow_euler", "ddim"]', "schedulers", "does not apply to family flux"),
    ('family = "sd"\nschedulers = ["flow_euler"]\ndefault_scheduler = "flow_euler"', "schedulers",
     "does not apply to family sd"),
    ('family = "sd3"\nmin_size = 24', "min_size", "multiple of 16"),
    ('family = "flux"\nmax_width = 1000', "max_width", "multiple of 16"),
    ('family = "sd4"', "family", "'sd', 'sdxl', 'sd3' or 'flux'"),
])
def test_an_entry_its_family_cannot_serve_names_the_entry_and_field(tmp_path, extra, field, words):
    with pytest.raises(RegistryError) as e:
        _load(tmp_path, extra)
    assert "'m1'" in e.value.message and f"field {field}" in e.value.message and words in e.value.message


def test_schedulers_default_to_the_familys(tmp_path):
    flux = _load(tmp_path, 'family = "flux"').get("m1")
    assert (flux.schedulers, flux.default_scheduler) == (["flow_euler"], "flow_euler")
    sdxl = _load(tmp_path, 'family = "sdxl"').get("m1")
    assert "ddim" in sdxl.schedulers and sdxl.default_scheduler == "euler"
    sd = _load(tmp_path, "").get("m1")
    assert sd.family == "sd" and sd.default_scheduler == "ddim"
