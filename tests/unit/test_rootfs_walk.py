"""The directory scan on spec trees: every finding kind, odd names, mounts, the parallel walk.

Trees are built on disk with the treespec builder; the scan runs through the CLI (``-o json``)
or :func:`crilink.checks.rootfs.scan_root_fd`. The parallel walk (forked workers sharing the
frontier) is forced on small trees by lowering its thresholds, and must give exactly the
serial walk's findings and counters.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from treespec import build

from crilink.checks import rootfs

SPEC = [
    "dir usr/lib",
    "file usr/lib/crl-only.so.6",
    "symlink usr/lib/libc.so crl-only.so.6",               # clean relative: no finding
    "symlink lib usr/lib",                               # clean relative dir link
    "symlink etc/abs /usr/lib/crl-only.so.6",            # absolute, in root; not on the host
    "symlink etc/abs-dir /usr",                          # absolute; the host has another /usr
    "symlink etc/gone /nowhere/x",                       # dangling, missing
    "symlink etc/through-file ../usr/lib/crl-only.so.6/x",   # dangling, not a directory
    "symlink etc/loop-a loop-b",
    "symlink etc/loop-b loop-a",                         # a two-link cycle
    "symlink etc/escape ../../../usr/lib/crl-only.so.6",     # climbs above / (clamped)
    "symlink usr/lib/chain0 chain1",
    "symlink usr/lib/chain1 libc.so",                    # chain of 3: clean
]


def crilink(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "crilink.cli.main", *args],
                          capture_output=True, text=True, check=False)


def scan_json(root: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    proc = crilink("scan", str(root), "-o", "json", *extra)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def by_path(doc: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    findings = doc["findings"]
    assert isinstance(findings, list)
    for f in findings:
        out.setdefault(f["path"], []).append(f)
    return out


def test_every_link_kind(tmp_path: Path) -> None:
    root = build(tmp_path / "root", SPEC)
    code, doc = scan_json(root)
    assert code == 1
    assert doc["schema"] == 1 and doc["target_kind"] == "rootfs"
    found = {p: sorted(f["kind"] for f in fs) for p, fs in by_path(doc).items()}
    assert found == {
        "/etc/abs": ["absolute"],
        "/etc/abs-dir": ["absolute"],
        "/etc/gone": ["dangling"],
        "/etc/through-file": ["dangling"],
        "/etc/loop-a": ["loop"],
        "/etc/loop-b": ["loop"],
        "/etc/escape": ["escapes_root"],
    }
    f = by_path(doc)
    gone = next(x for x in f["/etc/gone"] if x["kind"] == "dangling")
    assert gone["detail"]["reason"] == "missing"
    assert (gone["resolved"], gone["remaining"], gone["link"]) == ("/", "nowhere/x", "/nowhere/x")
    through = f["/etc/through-file"][0]
    assert through["detail"]["reason"] == "not_a_directory"
    assert through["resolved"] == "/usr/lib/crl-only.so.6"
    loop = f["/etc/loop-a"][0]
    assert loop["severity"] == "error"
    assert set(loop["detail"]["cycle"]) == {"/etc/loop-a", "/etc/loop-b"}
    assert f["/etc/escape"][0]["severity"] == "warning"
    absolute = f["/etc/abs"][0]
    assert absolute["severity"] == "info"
    assert absolute["detail"]["host"] == "missing"
    assert f["/etc/abs-dir"][0]["detail"]["host"] == "different"
    summary = doc["summary"]
    assert isinstance(summary, dict)
    assert summary["stats"]["symlinks"] == 11


def test_fail_on_and_clean_exit(tmp_path: Path) -> None:
    root = build(tmp_path / "root", SPEC)
    assert scan_json(root, "--fail-on", "error")[0] == 1  # the loop is an error
    clean = build(tmp_path / "clean", ["file a", "symlink b a", "symlink c /a"])
    code, doc = scan_json(clean)
    assert code == 0
    assert [f["kind"] for f in doc["findings"]] == ["absolute"]
    assert scan_json(clean, "--fail-on", "info")[0] == 1


def test_names_not_utf8_and_with_newlines_round_trip(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    raw = os.fsencode(root) + b"/bad\xff\nname"
    os.symlink(b"/missing\xfe", raw)
    code, doc = scan_json(root)
    assert code == 1
    (f,) = doc["findings"]
    assert os.fsencode(f["path"]) == b"/bad\xff\nname"
    assert os.fsencode(f["link"]) == b"/missing\xfe"
    assert base64.b64decode(f["path_b64"]) == b"/bad\xff\nname"
    assert base64.b64decode(f["link_b64"]) == b"/missing\xfe"
    table = crilink("scan", str(root))
    assert table.returncode == 1
    rows = [line for line in table.stdout.splitlines() if "bad" in line]
    assert len(rows) == 1 and "\\n" in rows[0]  # one finding, one line


@pytest.mark.parametrize("args", [("/no/such/dir",), ("--pid", "999999999"), ()])
def test_input_errors_are_one_line(args: tuple[str, ...]) -> None:
    proc = crilink("scan", *args)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def _wide_tree(root: Path) -> Path:
    specs = []
    for i in range(40):
        d = f"d{i}/sub{i % 3}"
        specs += [f"file {d}/f", f"symlink {d}/ok f", f"symlink {d}/abs /{d}/f",
                  f"symlink {d}/gone nope", f"symlink {d}/up ../../../../d{(i + 1) % 40}",
                  f"symlink {d}/la lb", f"symlink {d}/lb la",
                  f"symlink {d}/far /d{(i + 7) % 40}/sub{(i + 7) % 3}/f/x"]
    return build(root, specs)


def _scan(root: Path, workers: int) -> tuple[list[dict[str, Any]], dict[str, int]]:
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        findings, stats = rootfs.scan_root_fd(fd, workers=workers)
    finally:
        os.close(fd)
    return [f.to_json() for f in findings], stats


def test_parallel_walk_equals_serial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _wide_tree(tmp_path / "root")
    serial = _scan(root, 1)
    monkeypatch.setattr(rootfs, "_PARALLEL_AFTER", 1)
    monkeypatch.setattr(rootfs, "_MIN_UNITS", 2)
    fanned: list[int] = []
    real_fan_out = rootfs._fan_out

    def spy(walker: object, units: list[str], *args: object) -> object:
        fanned.append(len(units))
        return real_fan_out(walker, units, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(rootfs, "_fan_out", spy)
    parallel = _scan(root, 3)
    assert fanned and fanned[0] >= 2  # the frontier really was shared out
    assert parallel == serial
    assert serial[1]["symlinks"] == 40 * 7
    kinds = sorted({str(f["kind"]) for f in serial[0]})
    assert kinds == ["absolute", "dangling", "escapes_root", "loop"]


def test_mounts_inside_are_skipped(tmp_path: Path) -> None:
    root = build(tmp_path / "root", ["dir proc", "dir mnt", "file a"])
    subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], check=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(root / "mnt")], check=True)
    try:
        os.symlink("nope", root / "mnt" / "gone")
        code, doc = scan_json(root)
        assert (code, doc["findings"], doc["summary"]["stats"]["skipped_mounts"]) == (0, [], 2)
        code, doc = scan_json(root, "--cross-file-systems")
        assert code == 1  # the tmpfs is walked now; proc never is
        assert [f["path"] for f in doc["findings"]] == ["/mnt/gone"]
        assert doc["summary"]["stats"]["skipped_mounts"] == 1
    finally:
        subprocess.run(["umount", str(root / "proc")], check=False)
        subprocess.run(["umount", str(root / "mnt")], check=False)


def test_bind_mount_loop_ends(tmp_path: Path) -> None:
    """``mount --bind a a/b/c`` on the same filesystem: find says "File system loop
    detected"; the scan walks each directory once and counts the repeat."""
    root = build(tmp_path / "root", ["dir a/b/c", "symlink a/b/gone nope"])
    subprocess.run(["mount", "--bind", str(root / "a"), str(root / "a/b/c")], check=True)
    try:
        proc = subprocess.run([sys.executable, "-m", "crilink.cli.main", "scan", str(root),
                               "-o", "json"], capture_output=True, text=True, timeout=120,
                              check=False)
        doc = json.loads(proc.stdout)
        assert proc.returncode == 1
        assert [f["path"] for f in doc["findings"]] == ["/a/b/gone"]
        assert doc["summary"]["stats"]["repeated_dirs"] == 1
    finally:
        subprocess.run(["umount", str(root / "a/b/c")], check=False)


def test_tree_deeper_than_path_max(tmp_path: Path) -> None:
    """1,500 levels (paths of 3,000+ bytes): scan and fix walk it; a relative rewrite that
    would not fit in a symlink is planned as too_long, not attempted."""
    root = tmp_path / "deep"
    root.mkdir()
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(1500):
        os.mkdir("d", dir_fd=fd)
        nfd = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = nfd
    os.symlink("/d/d", "abs", dir_fd=fd)
    os.symlink("nope", "gone", dir_fd=fd)
    os.close(fd)
    try:
        _deep_checks(root, tmp_path)
    finally:  # rm copes with any depth; pytest's own clean-up recurses and would fail
        subprocess.run(["rm", "-rf", str(root)], check=False)


def _deep_checks(root: Path, tmp_path: Path) -> None:
    code, doc = scan_json(root)
    assert code == 1
    assert sorted(f["kind"] for f in doc["findings"]) == ["absolute", "dangling"]
    assert all(len(f["path"]) > 3000 for f in doc["findings"])
    proc = crilink("fix", str(root), "--apply", "-o", "json", "--journal", str(tmp_path / "j"))
    assert proc.returncode == 0, proc.stderr
    items = json.loads(proc.stdout)["plan"]["items"]
    assert [i["verdict"] for i in items if i["link"] == "/d/d"] == ["too_long"]


def test_links_deeper_than_path_max_get_their_true_verdict(tmp_path: Path) -> None:
    """25 levels of 200-byte names: the links' paths are longer than PATH_MAX, so they are
    looked up from an open directory, and judged like any other (not ``unreadable``)."""
    root = tmp_path / "deep"
    root.mkdir()
    (root / "top").write_text("t")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(25):
        os.mkdir("d" * 200, dir_fd=fd)
        nfd = os.open("d" * 200, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = nfd
    os.close(os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    for name, text in [("gone", "missing-target"), ("ok", "f"), ("abs", "/top"),
                       ("loop", "loop"), ("via", "../" + "d" * 200 + "/nope")]:
        os.symlink(text, name, dir_fd=fd)
    os.close(fd)
    try:
        code, doc = scan_json(root)
        assert code == 1
        got = {f["path"].rsplit("/", 1)[1]: (f["kind"], f.get("detail", {}).get("reason"))
               for f in doc["findings"]}
        assert got == {"gone": ("dangling", "missing"), "abs": ("absolute", None),
                       "loop": ("loop", "cycle"), "via": ("dangling", "missing")}
        assert all(len(f["path"]) > 5000 for f in doc["findings"])
    finally:
        subprocess.run(["rm", "-rf", str(root)], check=False)


def test_links_into_what_the_runtime_provides_are_info(tmp_path: Path) -> None:
    """/proc, /sys and the standard /dev nodes are mounted or created by runc at start: a link
    there is dangling in a stopped root, but only worth knowing (the Debian /dev/fd case)."""
    root = build(tmp_path / "root", [
        "dir proc", "dir dev",
        "symlink dev/fd /proc/self/fd",
        "symlink etc/masked.service /dev/null",
        "symlink etc/sysfs ../sys/class/net",
        "symlink etc/bad /dev/sdz9",               # not something a runtime creates
        "symlink etc/bad2 /procfoo/x",
    ])
    code, doc = scan_json(root)
    assert code == 1
    got = {f["path"]: (f["severity"], f["detail"].get("runtime")) for f in doc["findings"]
           if f["kind"] == "dangling"}
    assert got == {"/dev/fd": ("info", "proc"), "/etc/masked.service": ("info", "dev"),
                   "/etc/sysfs": ("info", "sys"), "/etc/bad": ("warning", None),
                   "/etc/bad2": ("warning", None)}
    assert scan_json(build(tmp_path / "r2", ["symlink dev/fd /proc/self/fd"]))[0] == 0
