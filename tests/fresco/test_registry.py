"""The model registry: bad entries are a clear startup error naming the entry and field."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from fresco.errors import RegistryError
from fresco.registry import load_registry
from fresco.settings import REPO_ROOT

GOOD = """
[[models]]
id = "m1"
source = "tiny-sd"
min_size = 32
"""


def _write(tmp_path, text: str):
    path = tmp_path / "registry.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_shipped_registry_loads_and_its_models_exist():
    registry = load_registry(REPO_ROOT / "models" / "registry.toml")
    assert registry.ordered()[0].id == registry.default
    for entry in registry.entries.values():
        source = registry.resolve_source(entry)
        assert (REPO_ROOT / source / "model_index.json").exists() or source.startswith(("hub:", "s3://"))


@pytest.mark.parametrize("extra,entry,field", [
    ('scheduler_typo = 1', "m1", "scheduler_typo"),
    ('default_width = 65', "m1", "default_width"),
    ('schedulers = ["ddim", "warp"]', "m1", "schedulers"),
    ('default_scheduler = "heun"\nschedulers = ["ddim"]', "m1", "default_scheduler"),
    ('max_batch = { cpu = "four" }', "m1", "max_batch.cpu"),
    ('kinds = ["video"]', "m1", "kinds"),
    ('dtype = { cuda = "float8" }', "m1", "dtype.cuda"),
    ('default_steps = 0', "m1", "default_steps"),
    ('memory_format = "nhwc"', "m1", "memory_format"),
    ('family = "flux"\nmemory_format = "channels_last"\ndefault_width = 64\ndefault_height = 64',
     "m1", "memory_format"),
])
def test_bad_entry_names_the_entry_and_field(tmp_path, extra, entry, field):
    with pytest.raises(RegistryError) as e:
        load_registry(_write(tmp_path, GOOD + extra + "\n"))
    assert f"'{entry}'" in e.value.message and field in e.value.message


def test_shipped_adapters_name_a_listed_base_and_a_file_that_exists():
    from fresco.adapters import registry_file

    registry = load_registry(REPO_ROOT / "models" / "registry.toml")
    assert registry.adapters, "the registry ships an adapter"
    for adapter in registry.adapters.values():
        assert adapter.base in registry.entries
        source = registry_file(registry, adapter)
        assert source.startswith(("hub:", "s3://")) or (REPO_ROOT / source).is_file(), source


@pytest.mark.parametrize("adapter,field", [
    ('id = "a1"\nbase = "nope"\nsource = "x"', "base"),
    ('id = "a_1"\nbase = "m1"\nsource = "x"', "id"),
    ('id = "a1"\nbase = "m1"', "source"),
    ('id = "a1"\nbase = "m1"\nsource = "x"\nscale = 2', "scale"),
])
def test_bad_adapter_entry_names_the_adapter_and_field(tmp_path, adapter, field):
    with pytest.raises(RegistryError) as e:
        load_registry(_write(tmp_path, GOOD + "\n[[adapters]]\n" + adapter + "\n"))
    assert "adapter 'a" in e.value.message and f"field {field}" in e.value.message, e.value.message
    twice = "\n[[adapters]]\nid = \"a1\"\nbase = \"m1\"\nsource = \"x\"\n"
    with pytest.raises(RegistryError, match="listed twice"):
        load_registry(_write(tmp_path, GOOD + twice + twice))


def test_file_level_errors(tmp_path):
    with pytest.raises(RegistryError, match="does not exist"):
        load_registry(tmp_path / "nope.toml")
    with pytest.raises(RegistryError, match="not valid TOML"):
        load_registry(_write(tmp_path, "[[models]\n"))
    with pytest.raises(RegistryError, match="listed twice"):
        load_registry(_write(tmp_path, GOOD + GOOD))
    with pytest.raises(RegistryError, match="default 'zz'"):
        load_registry(_write(tmp_path, 'default = "zz"\n' + GOOD))
    with pytest.raises(RegistryError, match="field id"):
        load_registry(_write(tmp_path, GOOD.replace('"m1"', '"Bad Id!"')))


def test_api_refuses_to_start_with_a_bad_registry(tmp_path):
    path = _write(tmp_path, GOOD + "default_width = 65\n")
    r = subprocess.run([sys.executable, "-c", "import api.main"], cwd=REPO_ROOT, capture_output=True, text=True,
                       env={"FRESCO_MODELS": str(path), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}, timeout=120)
    assert r.returncode != 0
    assert "model 'm1', field default_width" in r.stderr
