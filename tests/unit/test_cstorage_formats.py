"""containers-storage raw formats: layers/images/containers JSON and storage.conf."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crilink.errors import CorruptInputError, InputError
from crilink.formats.cstorage import (
    DEFAULT_GRAPH_ROOT,
    parse_containers,
    parse_images,
    parse_layers,
    parse_storage_conf,
)
from crilink.stores.cstorage import CStorageStore, graph_root_from_conf, load_storage_conf


def test_layers_images_containers() -> None:
    layers = parse_layers(json.dumps([
        {"id": "a", "diff-size": 10},
        {"id": "b", "parent": "a", "names": ["x"], "flags": {"incomplete": True}},
        {"id": "c", "parent": "", "flags": {"incomplete": "yes"}},
    ]).encode())
    assert [(x.id, x.parent, x.incomplete, x.diff_size) for x in layers] == [
        ("a", None, False, 10), ("b", "a", True, None), ("c", None, False, None)]
    (img,) = parse_images(json.dumps([{"id": "i", "layer": "b", "names": ["r:t"],
                                       "mapped-top-layers": ["m"]}]).encode())
    assert img.layers == ("b", "m") and img.names == ("r:t",)
    (ctr,) = parse_containers(b'[{"id": "k", "image": "i", "layer": "l"}]')
    assert (ctr.image, ctr.layer) == ("i", "l")
    assert parse_layers(b"") == ()


@pytest.mark.parametrize("data", [b"{", b'{"id": "x"}', b'[{"names": []}]', b"[1]"])
def test_corrupt_json_names_the_file(data: bytes) -> None:
    with pytest.raises(CorruptInputError, match=r"layers\.json"):
        parse_layers(data)


def test_storage_conf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = parse_storage_conf(b'[storage]\ndriver = "overlay"\ngraphroot = "/srv/cs"\n')
    assert (conf.graph_root, conf.run_root) == ("/srv/cs", "/run/containers/storage")
    assert parse_storage_conf(b"").graph_root == DEFAULT_GRAPH_ROOT
    with pytest.raises(CorruptInputError, match="TOML"):
        parse_storage_conf(b"[storage\n")
    assert load_storage_conf(str(tmp_path / "absent.conf")).graph_root == DEFAULT_GRAPH_ROOT
    path = tmp_path / "storage.conf"
    path.write_text('[storage]\ngraphroot = "/x/y"\nrunroot = "/r"\n')
    monkeypatch.setenv("CONTAINERS_STORAGE_CONF", str(path))
    assert graph_root_from_conf() == "/x/y" and load_storage_conf().run_root == "/r"


def test_open_rejects_non_store_and_chains(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a containers-storage graph root"):
        CStorageStore.open(tmp_path)
    (tmp_path / "overlay-layers").mkdir()
    (tmp_path / "overlay-layers/layers.json").write_text(json.dumps([
        {"id": "a"}, {"id": "b", "parent": "a"}, {"id": "c", "parent": "b"},
        {"id": "x", "parent": "y"}, {"id": "y", "parent": "x"}]))
    store = CStorageStore.open(tmp_path)
    chains = store.chains()
    assert chains["c"] == ("b", "a") and chains["a"] == ()
    assert chains["x"] == ("y",)  # a cycle is cut, never followed forever
    assert store.live_layers() == set()
    assert not store.runtime_status().running
