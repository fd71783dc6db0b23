"""Findings that only a crash at a precise point (or an outside edit) can make, on edited copies
of the real clean containerd store, confirmed by a real containerd started on the copy.

The edits are made by the real bbolt (tests/tools/boltedit, built here from Debian's bbolt
source), each as ONE bbolt transaction doing what one of containerd's own transactions does:

- ``backend_missing``: containerd's metadata plugin commits a snapshot (``ctr snapshots commit``,
  the unpacker) by calling the snapshotter's ``Commit`` *inside* its meta.db transaction. The
  snapshotter's transaction (``storage.CommitActive``: new committed record under the new name
  with the same id, active record deleted, parents-index value repointed) commits first, in
  metadata.db; a crash before meta.db's transaction commits leaves meta.db with the active key
  whose backend record is gone. The edit replays exactly that inner transaction.
- ``dangling_parent``: the snapshotter removes a record and its own parents-index entry in one
  transaction (``storage.Remove``), and refuses while the index shows a child; meta.db refuses
  too. No crash of containerd leaves a child without its parent record: it stands for an outside
  removal that skipped that check (bbolt surgery, a buggy tool, ``rm`` of a record by hand). The
  edit is ``storage.Remove``'s transaction on a committed middle layer, without the child check.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
from containerd_daemon import Containerd, containerd_available
from fixture_ids import chain_ids, diff_ids, fixtures_dir

from crilink.stores.containerd import ContainerdStore
from crilink.stores.containerd_model import BackendSnapshot, MetaSnapshot, SnapshotKind

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(containerd_available() is not None,
                                 reason=str(containerd_available()))]

TOOL_SRC = Path(__file__).resolve().parents[1] / "tools" / "boltedit"
GOPATH = "/usr/share/gocode"  # Debian's golang-*-dev packages (bbolt) install their source here
SNAPSHOTTER = "io.containerd.snapshotter.v1.overlayfs"
NS = "k8s.io"
KIND_COMMITTED = "hex:03"  # snapshots.KindCommitted as containerd stores it (one byte)

Row = tuple[str, str | None, str | None, str | None, str]


@pytest.fixture(scope="session")
def boltedit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The boltedit binary, built once per session, offline, from Debian's bbolt source."""
    if shutil.which("go") is None or not Path(GOPATH, "src/go.etcd.io/bbolt").is_dir():
        pytest.skip("needs golang-go and golang-github-coreos-bbolt-dev (scripts/test installs)")
    out = tmp_path_factory.mktemp("boltedit")
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": GOPATH, "GOFLAGS": "",
           "GOCACHE": str(out / "cache"), "CGO_ENABLED": "0"}
    subprocess.run(["go", "build", "-o", str(out / "boltedit"), "."], cwd=TOOL_SRC, env=env,
                   check=True, capture_output=True, timeout=600)
    return out / "boltedit"


def _uvarint(n: int) -> str:
    out = b""
    while n >= 0x80:
        out += bytes([n & 0x7F | 0x80])
        n >>= 7
    return (out + bytes([n])).hex()


def parent_key(parent_id: int, child_id: int) -> str:
    """containerd's parents-index key, ``uvarint(parent) 0x00 uvarint(child)``, as hex: arg."""
    return f"hex:{_uvarint(parent_id)}00{_uvarint(child_id)}"


def edit(tool: Path, root: Path, *ops: list[str]) -> None:
    """Apply ``ops`` to the snapshotter's metadata.db of ``root`` in one bbolt transaction."""
    args = [a for op in ops for a in ["+", *op]][1:]
    subprocess.run([str(tool), str(root / SNAPSHOTTER / "metadata.db"), *args], check=True,
                   timeout=60)


def _scan(root: Path) -> tuple[int, list[dict[str, object]]]:
    r = subprocess.run(["python", "-m", "crilink.cli.main", "scan", str(root), "-o", "json"],
                       capture_output=True, text=True, check=False, timeout=600)
    assert r.returncode in (0, 1), r.stderr
    return r.returncode, json.loads(r.stdout)["findings"]


def _row(f: dict[str, object]) -> Row:
    def s(k: str) -> str | None:
        v = f.get(k)
        return None if v is None else str(v)

    return (str(f["kind"]), s("namespace"), s("key"), s("id"), str(f["path"]))


def _bytes(f: dict[str, object]) -> int:
    n = f["bytes"]
    assert isinstance(n, int), f
    return n


def _new_findings(before: list[dict[str, object]],
                  after: list[dict[str, object]]) -> dict[Row, dict[str, object]]:
    old = {_row(f) for f in before}
    assert old <= {_row(f) for f in after}, "the edit must only add findings"
    return {_row(f): f for f in after if _row(f) not in old}


class Store:
    """The snapshotter records and meta.db snapshots of one root, looked up by name."""

    def __init__(self, root: Path) -> None:
        meta = ContainerdStore(root).read_metadata()
        self.records = {r.key: r for recs in meta.backend.values() for r in recs}
        self.snaps = {s.key: s for ns in meta.namespaces if ns.name == NS for s in ns.snapshots}

    def record(self, meta_key: str) -> BackendSnapshot:
        return self.records[self.snaps[meta_key].backend_key]

    def meta_of(self, rec: BackendSnapshot) -> MetaSnapshot:
        (snap,) = [s for s in self.snaps.values() if s.backend_key == rec.key]
        return snap


def _dir(rec: BackendSnapshot) -> str:
    return f"{SNAPSHOTTER}/snapshots/{rec.id}"


@pytest.fixture
def clean(copy_fixture: Callable[[str], Path]) -> tuple[Path, Store]:
    root = copy_fixture("containerd/clean/root")
    return root, Store(root)


def _ls_keys(ctd: Containerd) -> set[str]:
    rows = ctd.ctr("-n", NS, "snapshots", "ls").stdout.splitlines()[1:]
    return {line.split()[0] for line in rows if line.strip()}


def _fails(ctd: Containerd, *args: str) -> str:
    r = ctd.ctr_raw("-n", NS, *args)
    assert r.returncode != 0, f"ctr {' '.join(args)} should fail on the edited store: {r.stdout}"
    return r.stderr


def test_dangling_parent_from_a_parent_record_removed_under_its_child(
        clean: tuple[Path, Store], boltedit: Path, tmp_path: Path) -> None:
    root, st = clean
    v2 = chain_ids(diff_ids(fixtures_dir() / "oci/layout", "v2"))  # ids differ per build
    child = st.record(v2[3])                    # busybox:v2's top layer, committed
    parent = st.record(v2[2])                   # its middle layer: removed
    grand = st.record(v2[1])                    # busybox:v1's top: keeps its other children
    assert child.parent == parent.key and parent.parent == grand.key
    assert parent.kind == child.kind == SnapshotKind.COMMITTED
    _, before = _scan(root)

    # storage.Remove(parent) in one transaction, minus its "cannot remove snapshot with child"
    edit(boltedit, root,
         ["delete-key", "v1", "parents", parent_key(grand.id, parent.id)],
         ["delete-bucket", "v1", "snapshots", parent.key])

    rc, after = _scan(root)
    assert rc == 1
    new = _new_findings(before, after)
    parent_meta = st.meta_of(parent).key
    expected = {
        ("dangling_parent", NS, child.key, str(child.id), _dir(child)),
        # meta.db still has the parent: its record is gone
        ("backend_missing", NS, parent_meta, None, f"{SNAPSHOTTER}/metadata.db"),
        # the removed record's dir stays, unknown to the snapshotter
        ("orphan_dir", None, None, str(parent.id), _dir(parent)),
        # the parents index still has parent->child, naming the removed parent id
        ("ghost_child", NS, child.key, str(parent.id), _dir(parent)),
    }
    assert set(new) == expected
    dp = new[("dangling_parent", NS, child.key, str(child.id), _dir(child))]
    assert dp["severity"] == "error"
    assert dp["detail"] == {"snapshotter": "overlayfs", "kind": "committed",
                            "parent": parent.key, "db": "metadata.db"}
    ghost = new[("ghost_child", NS, child.key, str(parent.id), _dir(parent))]
    assert "parent's record is gone" in str(ghost["message"])
    orphan = new[("orphan_dir", None, None, str(parent.id), _dir(parent))]
    assert _bytes(orphan) > 0
    bm = new[("backend_missing", NS, parent_meta, None, f"{SNAPSHOTTER}/metadata.db")]
    assert bm["detail"] == {"snapshotter": "overlayfs", "backend_key": parent.key}

    with Containerd(root, gc="delayed") as ctd:
        # ctr drops the parent from its list, yet still names it as the child's parent
        keys = _ls_keys(ctd)
        assert parent_meta not in keys and st.meta_of(child).key in keys
        info = json.loads(ctd.ctr("-n", NS, "snapshots", "info", st.meta_of(child).key).stdout)
        assert info["Parent"] == parent_meta
        assert "not found" in _fails(ctd, "snapshots", "usage", parent_meta)
        # nothing above the dangling parent can be mounted or built upon any more
        assert "missing parent" in _fails(ctd, "snapshots", "view", "probe-view",
                                          st.meta_of(child).key)
        # control: a sibling branch on the same grandparent still mounts
        ctd.ctr("-n", NS, "snapshots", "mounts", str(tmp_path), "c-ran")


def test_backend_missing_from_a_crash_inside_commit(
        clean: tuple[Path, Store], boltedit: Path, tmp_path: Path) -> None:
    root, st = clean
    active = st.record("c-ran")                 # active, parent id 2, used by container c-ran
    base = st.records[active.parent]
    assert active.kind == SnapshotKind.ACTIVE
    # the name meta.db would have given it: "<ns>/<next sequence>/<name>"
    seq = 1 + max(int(k.split("/")[1]) for k in st.records if k.startswith(f"{NS}/"))
    name = f"{NS}/{seq}/c-ran-committed"
    _, before = _scan(root)

    # storage.CommitActive(active.key -> name) committed; meta.db's transaction never did
    snaps = ["v1", "snapshots"]
    edit(boltedit, root,
         ["copy-bucket", *snaps, active.key, name],
         ["put", *snaps, name, "kind", KIND_COMMITTED],
         ["delete-bucket", *snaps, active.key],
         ["put", "v1", "parents", parent_key(base.id, active.id), name])

    rc, after = _scan(root)
    assert rc == 1
    new = _new_findings(before, after)
    missing = ("backend_missing", NS, "c-ran", None, f"{SNAPSHOTTER}/metadata.db")
    unref = ("backend_unreferenced", NS, name, str(active.id), _dir(active))
    assert set(new) == {missing, unref}  # same id, so its dir is not an orphan
    assert new[missing]["severity"] == "error"
    assert new[missing]["detail"] == {"snapshotter": "overlayfs", "backend_key": active.key}
    assert new[unref]["detail"] == {"snapshotter": "overlayfs", "kind": "committed"}
    assert _bytes(new[unref]) > 0

    with Containerd(root, gc="delayed") as ctd:
        assert "c-ran" not in _ls_keys(ctd)   # meta.db has it; ctr cannot list it
        assert "not found" in _fails(ctd, "snapshots", "usage", "c-ran")
        assert "not found" in _fails(ctd, "snapshots", "mounts", str(tmp_path), "c-ran")
        assert "not found" in _fails(ctd, "snapshots", "commit", "c-ran-committed", "c-ran")
        ctd.ctr("-n", NS, "snapshots", "mounts", str(tmp_path), "c-created")  # control
        # what an operator does next: removing the meta.db entry works (GC takes the record)
        ctd.ctr("-n", NS, "snapshots", "rm", "c-ran")
    _, fixed = _scan(root)
    assert missing not in {_row(f) for f in fixed}


def test_parent_cycle_from_an_outside_edit(clean: tuple[Path, Store], boltedit: Path) -> None:
    """No containerd transaction makes a snapshot its own ancestor; a bbolt edit (or bit rot
    in a parent value) can. Every member of the cycle is reported in both databases, the
    scan ends, and ``crilink snapshots`` still shows every snapshot once."""
    root, st = clean
    v2 = chain_ids(diff_ids(fixtures_dir() / "oci/layout", "v2"))
    bottom, top = st.record(v2[0]), st.record(v2[3])
    assert not bottom.parent
    meta_db = root / "io.containerd.metadata.v1.bolt/meta.db"
    subprocess.run([str(boltedit), str(meta_db), "put", "v1", NS, "snapshots", "overlayfs",
                    v2[0], "parent", v2[3]], check=True, timeout=60)
    edit(boltedit, root, ["put", "v1", "snapshots", bottom.key, "parent", top.key])

    rc, after = _scan(root)
    assert rc == 1
    cycles = [f for f in after if f["kind"] == "parent_cycle"]
    meta_side = {f["key"] for f in cycles if f["detail"]["db"] == "meta.db"}  # type: ignore[index]
    back_side = {f["key"] for f in cycles if f["detail"]["db"] == "metadata.db"}  # type: ignore[index]
    assert meta_side == set(v2)
    assert back_side == {st.record(k).key for k in v2}
    assert all(f["severity"] == "error" and len(f["detail"]["cycle"]) == 4  # type: ignore[index,arg-type]
               for f in cycles)

    r = subprocess.run(["python", "-m", "crilink.cli.main", "snapshots", str(root)],
                       capture_output=True, text=True, check=False, timeout=600)
    assert r.returncode == 0, r.stderr
    shown = [ln.strip().lstrip("\\_ ").split()[0] for ln in r.stdout.splitlines()
             if "held by:" in ln]
    assert sorted(shown) == sorted(st.snaps)  # every snapshot once, the cycle's included
