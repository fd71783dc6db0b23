"""``crilink fix`` / ``crilink undo`` on copies of the real busybox and Debian minbase roots.

The kernel is the oracle for in-root meaning: ``openat2(RESOLVE_IN_ROOT)`` of each link.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from crilink.pathres import openat2

pytestmark = pytest.mark.integration

RESOLVE_IN_ROOT = 0x10
ROOTFS = ["rootfs/busybox", "rootfs/debian-minbase"]


def crilink(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "crilink.cli.main", *args],
                          capture_output=True, text=True, check=False)


def manifest(root: Path) -> dict[str, tuple[object, ...]]:
    """path -> (type, link text, mode, uid, gid, sha256 of content) for every entry."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            link = p.readlink().as_posix() if stat.S_ISLNK(st.st_mode) else None
            digest = None
            if stat.S_ISREG(st.st_mode):
                digest = hashlib.sha256(Path(p).read_bytes()).hexdigest()
            out[os.path.relpath(p, root)] = (stat.S_IFMT(st.st_mode), link, st.st_mode,
                                             st.st_uid, st.st_gid, digest)
    return out


def links(root: Path, absolute: bool | None = None) -> dict[str, str]:
    """in-root path -> text of the symlinks (only absolute / relative ones when asked)."""
    found = {}
    for key, (_t, link, *_rest) in manifest(root).items():
        if link is not None and (absolute is None or link.startswith("/") == absolute):
            found["/" + key] = link
    return found


def kernel_node(root: Path, path: str) -> tuple[int, int] | None:
    """(dev, ino) that the kernel reaches opening ``path`` inside ``root``; None: it fails."""
    rfd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    try:
        fd = openat2(rfd, path, os.O_PATH, 0, RESOLVE_IN_ROOT)
    except OSError:
        return None
    finally:
        os.close(rfd)
    try:
        st = os.fstat(fd)
        return st.st_dev, st.st_ino
    finally:
        os.close(fd)


def host_broken(root: Path) -> set[str]:
    """What ``find ROOT -xtype l`` (resolution from the host) calls broken."""
    out = subprocess.run(["find", str(root), "-xtype", "l"], capture_output=True, text=True,
                         check=True).stdout.split("\n")
    return {"/" + os.path.relpath(p, root) for p in out if p}


@pytest.mark.parametrize("fixture", ROOTFS)
def test_fix_apply_then_undo_is_exact(copy_fixture: Callable[[str], Path], tmp_path: Path,
                                      fixture: str) -> None:
    root = copy_fixture(fixture)
    before = manifest(root)
    absolute = links(root, absolute=True)
    nodes = {p: kernel_node(root, p) for p in absolute}
    assert absolute and any(nodes.values())

    r = crilink("fix", str(root), "--apply", "--journal", str(tmp_path / "fix.jsonl"))
    assert r.returncode == 0, r.stdout + r.stderr
    now = links(root)
    for path, text in absolute.items():
        assert kernel_node(root, path) == nodes[path], path  # same in-root meaning
        if nodes[path] is not None:
            assert not now[path].startswith("/"), (path, now[path])
        else:
            assert now[path] == text  # dangling: left alone
    # the host (find -xtype l) now agrees with the in-root view on every rewritten link: none
    # is broken. (Links dangling in-root, e.g. /dev/fd -> /proc/self/fd, are left alone.)
    rewritten = {p for p, n in nodes.items() if n is not None}
    assert not host_broken(root) & rewritten

    u = crilink("undo", str(tmp_path / "fix.jsonl"), "--journal", str(tmp_path / "undo.jsonl"))
    assert u.returncode == 0, u.stdout + u.stderr
    assert manifest(root) == before


@pytest.mark.parametrize("fixture", ROOTFS)
def test_to_absolute_then_undo_is_exact(copy_fixture: Callable[[str], Path], tmp_path: Path,
                                        fixture: str) -> None:
    root = copy_fixture(fixture)
    before = manifest(root)
    relative = links(root, absolute=False)
    nodes = {p: kernel_node(root, p) for p in relative}
    r = crilink("fix", str(root), "--to-absolute", "--apply", "-o", "json",
                "--journal", str(tmp_path / "fix.jsonl"))
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert doc["applied"] and doc["result"]["summary"]["done"] == doc["plan"]["counts"]["rewrite"]
    for path in relative:
        assert kernel_node(root, path) == nodes[path], path
    assert crilink("undo", str(tmp_path / "fix.jsonl"),
                   "--journal", str(tmp_path / "undo.jsonl")).returncode == 0
    assert manifest(root) == before


def test_dry_run_changes_nothing_and_lists_dangling(copy_fixture: Callable[[str], Path]) -> None:
    root = copy_fixture("rootfs/busybox")
    before = manifest(root)
    r = crilink("fix", str(root), "-o", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert not doc["applied"] and doc["journal"] is None
    dangling = [i for i in doc["plan"]["items"] if i["verdict"] == "dangling"]
    assert [i["path"] for i in dangling] == ["/usr/bin/dangling-link"]
    assert {"path": "/bin/sh", "link": "/bin/busybox", "verdict": "rewrite",
            "new_link": "busybox"} in doc["plan"]["items"]
    assert manifest(root) == before


def test_undo_refuses_a_link_changed_since(copy_fixture: Callable[[str], Path],
                                           tmp_path: Path) -> None:
    root = copy_fixture("rootfs/busybox")
    assert crilink("fix", str(root), "--apply", "--journal",
                   str(tmp_path / "j.jsonl")).returncode == 0
    (root / "bin" / "sh").unlink()
    (root / "bin" / "sh").symlink_to("/bin/somebody-else")
    u = crilink("undo", str(tmp_path / "j.jsonl"), "--journal", str(tmp_path / "u.jsonl"),
                "-o", "json")
    assert u.returncode == 4, u.stderr
    refused = [o for o in json.loads(u.stdout)["outcomes"] if o["status"] == "refused"]
    assert [o["path"] for o in refused] == ["/bin/sh"]
    assert (root / "bin" / "sh").readlink().as_posix() == "/bin/somebody-else"
    assert (root / "bin" / "ls").readlink().as_posix() == "/bin/busybox"  # the others were restored


def test_missing_target_is_an_input_error(tmp_path: Path) -> None:
    r = crilink("fix", str(tmp_path / "nope"))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "no such" in r.stderr


def test_unreadable_journal_is_a_journal_error(tmp_path: Path) -> None:
    (tmp_path / "j.jsonl").write_text("not a journal\n")
    r = crilink("undo", str(tmp_path / "j.jsonl"), "--journal", str(tmp_path / "u.jsonl"))
    assert r.returncode == 6 and "Traceback" not in r.stderr


CRASHER = textwrap.dedent("""
    import os, signal, sys
    from crilink.fix.plan import apply_fix, plan_fix
    root, journal, at, phase = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    def hook(seq, where):
        if seq == at and where == phase:
            os.kill(os.getpid(), signal.SIGKILL)
    apply_fix(plan_fix(root), journal, hook=hook)
""")


def crash_apply(root: Path, journal: Path, at: int, phase: str) -> None:
    r = subprocess.run([sys.executable, "-c", CRASHER, str(root), str(journal), str(at), phase],
                       capture_output=True, text=True, check=False)
    assert r.returncode == -signal.SIGKILL, r.stderr


@pytest.mark.parametrize(("at", "phase"), [(1, "intent"), (57, "changed"), (200, "intent")])
def test_kill_9_mid_apply_then_undo_restores(copy_fixture: Callable[[str], Path], tmp_path: Path,
                                             at: int, phase: str) -> None:
    root = copy_fixture("rootfs/busybox")
    before = manifest(root)
    crash_apply(root, tmp_path / "j.jsonl", at, phase)
    assert manifest(root) != before or (at, phase) == (1, "intent")
    u = crilink("undo", str(tmp_path / "j.jsonl"), "--journal", str(tmp_path / "u.jsonl"))
    assert u.returncode == 0, u.stdout + u.stderr
    assert manifest(root) == before


@pytest.mark.parametrize(("at", "phase"), [(1, "changed"), (120, "intent")])
def test_kill_9_mid_apply_then_rerun_converges(copy_fixture: Callable[[str], Path],
                                               tmp_path: Path, at: int, phase: str) -> None:
    root = copy_fixture("rootfs/busybox")
    before = manifest(root)
    crash_apply(root, tmp_path / "j1.jsonl", at, phase)
    (root / "bin" / ".crilink-tmp-0123456789ab").symlink_to("busybox")  # as a torn step leaves
    r = crilink("fix", str(root), "--apply", "--journal", str(tmp_path / "j2.jsonl"))
    assert r.returncode == 0, r.stdout + r.stderr
    again = json.loads(crilink("fix", str(root), "-o", "json").stdout)
    assert again["plan"]["counts"]["rewrite"] == 0 and again["plan"]["counts"]["stale_temp"] == 0
    assert set(links(root, absolute=True)) == {"/usr/bin/dangling-link"}
    for journal in ("j2", "j1"):  # undo newest first: back to the original tree
        u = crilink("undo", str(tmp_path / f"{journal}.jsonl"),
                    "--journal", str(tmp_path / f"u-{journal}.jsonl"))
        assert u.returncode == 0, u.stdout + u.stderr
    after_undo = manifest(root)
    after_undo.pop("bin/.crilink-tmp-0123456789ab")  # the planted temp link came back with j2
    assert after_undo == before


def inode_manifest(root: Path) -> str:
    """path, type, link text, mode, owner, and the group of names sharing its inode, one line
    per entry (sorted): what fix then undo must leave byte-identical."""
    by_inode: dict[tuple[int, int], list[str]] = {}
    rows = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            st = p.lstat()
            rel = "/" + os.path.relpath(p, root)
            by_inode.setdefault((st.st_dev, st.st_ino), []).append(rel)
            link = p.readlink().as_posix() if stat.S_ISLNK(st.st_mode) else ""
            rows.append((rel, st, link))
    lines = []
    for rel, st, link in rows:
        group = ",".join(sorted(by_inode[(st.st_dev, st.st_ino)]))
        lines.append(f"{rel!r} {stat.S_IFMT(st.st_mode):o} {link!r} {st.st_mode:o} "
                     f"{st.st_uid}:{st.st_gid} [{group}]")
    return "\n".join(sorted(lines))


def test_fix_then_undo_keeps_owners_and_hardlinked_links(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "d").mkdir()
    (root / "etc" / "passwd").write_text("x\n")
    (root / "l").symlink_to("/etc/passwd")
    os.chown(root / "l", 1234, 5678, follow_symlinks=False)  # a user-namespaced tree's owner
    (root / "d" / "own").symlink_to("/etc/passwd")
    os.chown(root / "d" / "own", 42, 43, follow_symlinks=False)
    (root / "d" / "hl").symlink_to("/etc/passwd")
    os.link(root / "d" / "hl", root / "hl2", follow_symlinks=False)  # one symlink, two names
    before = inode_manifest(root)

    r = crilink("fix", str(root), "--apply", "-o", "json", "--journal", str(tmp_path / "j"))
    assert r.returncode == 0, r.stdout + r.stderr
    items = {i["path"]: i for i in json.loads(r.stdout)["plan"]["items"]}
    assert items["/d/hl"]["verdict"] == items["/hl2"]["verdict"] == "hardlinked"
    assert "hard links" in items["/hl2"]["reason"]
    assert (root / "l").readlink().as_posix() == "etc/passwd"
    assert (os.lstat(root / "l").st_uid, os.lstat(root / "l").st_gid) == (1234, 5678)
    assert (os.lstat(root / "d" / "own").st_uid, os.lstat(root / "d" / "own").st_gid) == (42, 43)
    assert os.lstat(root / "d" / "hl").st_nlink == 2

    u = crilink("undo", str(tmp_path / "j"), "--journal", str(tmp_path / "u"))
    assert u.returncode == 0, u.stdout + u.stderr
    assert inode_manifest(root) == before


@pytest.mark.skipif(os.geteuid() != 0, reason="bind mounts need root")
def test_a_link_reachable_through_a_bind_mount_is_left_alone(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "a" / "b" / "c").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "etc" / "p").write_text("p\n")
    (root / "a" / "lnk").symlink_to("/etc/p")  # also reached as /a/b/c/lnk below
    (root / "x").mkdir()
    (root / "x" / "lnk").symlink_to("/etc/p")  # reached once: rewritten as usual
    subprocess.run(["mount", "--bind", str(root / "a"), str(root / "a" / "b" / "c")],
                   check=True)
    try:
        r = crilink("fix", str(root), "--apply", "-o", "json", "--journal", str(tmp_path / "j"))
        assert r.returncode == 0, r.stdout + r.stderr
        items = {i["path"]: i for i in json.loads(r.stdout)["plan"]["items"]}
        assert items["/a/lnk"]["verdict"] == "aliased"
        assert "/a/b/c" in items["/a/lnk"]["reason"]
        assert items["/x/lnk"]["verdict"] == "rewrite"
        assert (root / "a" / "lnk").readlink().as_posix() == "/etc/p"
        node = kernel_node(root, "/etc/p")
        assert kernel_node(root, "/a/b/c/lnk") == kernel_node(root, "/a/lnk") == node
    finally:
        subprocess.run(["umount", str(root / "a" / "b" / "c")], check=True)
