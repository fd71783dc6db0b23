"""``crilink scan`` on real root filesystems: busybox, Debian minbase, a running container.

Oracles: the kernel's ``openat2(RESOLVE_IN_ROOT)`` for the in-root meaning of every link, and
``find ROOT -xtype l`` for what the host-side view (the one crilink replaces) gets wrong.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from containerd_daemon import Containerd, containerd_available

from crilink.pathres import openat2

pytestmark = pytest.mark.integration

RESOLVE_IN_ROOT = 0x10


def crilink(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "crilink.cli.main", *args],
                          capture_output=True, text=True, check=False, timeout=600)


def scan(*args: str) -> tuple[int, dict[str, Any]]:
    proc = crilink("scan", *args, "-o", "json")
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def kinds_by_path(doc: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {f["path"]: f for f in doc["findings"] if f["kind"] == kind}


def symlinks(root: Path) -> dict[str, str]:
    """In-root path -> link text for every symlink under ``root`` (one filesystem)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(os.fsencode(root)):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            if os.path.islink(p):
                rel = "/" + os.fsdecode(os.path.relpath(p, os.fsencode(root)))
                out[rel] = os.fsdecode(os.readlink(p))
    return out


def kernel_verdict(root: Path, path: str) -> str:
    """'ok', 'missing', 'not_a_directory' or 'loop': the kernel opening ``path`` in ``root``."""
    rfd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    try:
        for _ in range(3):
            try:
                os.close(openat2(rfd, path, os.O_PATH, 0, RESOLVE_IN_ROOT))
                return "ok"
            except BlockingIOError:
                continue
            except OSError as err:
                if err.errno == errno.ELOOP:
                    continue  # asked again: an RCU walk restart can over-count (see pathres test)
                return {errno.ENOENT: "missing", errno.ENOTDIR: "not_a_directory"}[err.errno]
        return "loop"
    finally:
        os.close(rfd)


def host_broken(root: Path) -> set[str]:
    out = subprocess.run(["find", str(root), "-xtype", "l"], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    return {"/" + os.path.relpath(p, root) for p in out if p}


def test_busybox_absolute_links_are_not_dangling(real_fixtures: Path) -> None:
    root = real_fixtures / "rootfs/busybox"
    code, doc = scan(str(root))
    links = symlinks(root)
    absolute = {p for p, t in links.items() if t.startswith("/")}
    assert len(absolute) > 100  # one per busybox applet
    dangling = kinds_by_path(doc, "dangling")
    # the one link the fixture made dangling on purpose, and nothing else
    assert set(dangling) == {"/usr/bin/dangling-link"}
    assert dangling["/usr/bin/dangling-link"]["detail"]["reason"] == "missing"
    assert code == 1
    found_abs = kinds_by_path(doc, "absolute")
    assert set(found_abs) == absolute - {"/usr/bin/dangling-link"}
    # the host view disagrees: find -xtype l calls in-root links broken that are not, and the
    # applets reach the host's busybox (or nothing), never the root's own
    broken_from_host = host_broken(root)
    assert "/usr/bin/abs-link" in broken_from_host
    assert "/usr/bin/abs-link" not in dangling
    assert found_abs["/usr/bin/abs-link"]["detail"]["host"] == "missing"
    assert {found_abs[p]["detail"]["host"] for p in absolute if links[p] == "/bin/busybox"} \
        <= {"different", "missing"}
    assert doc["summary"]["stats"]["symlinks"] == len(links)


def test_debian_minbase_agrees_with_the_kernel(real_fixtures: Path) -> None:
    root = real_fixtures / "rootfs/debian-minbase"
    if not root.is_dir():
        pytest.skip("no debootstrap root in the fixtures")
    _, doc = scan(str(root))
    links = symlinks(root)
    assert len(links) > 500
    ours: dict[str, str] = {}
    for f in doc["findings"]:
        if f["kind"] == "dangling":
            ours[f["path"]] = f["detail"]["reason"]
        elif f["kind"] == "loop":
            ours[f["path"]] = "loop"
    kernel = {p: v for p in links if (v := kernel_verdict(root, p)) != "ok"}
    assert ours == kernel
    for p in kinds_by_path(doc, "absolute"):
        assert links[p].startswith("/") and kernel_verdict(root, p) == "ok"
    assert doc["summary"]["stats"]["symlinks"] == len(links)


@pytest.fixture
def running_container(real_fixtures: Path, tmp_path: Path) -> Iterator[int]:
    """A busybox container run by a private containerd (ctr run -d); yields its task PID."""
    if containerd_available() is not None:
        pytest.skip(str(containerd_available()))
    root = tmp_path / "ctd-root"
    root.mkdir()
    archive = real_fixtures / "oci/busybox-v1.docker.tar"
    ns = ("-n", "crl-pid")
    with Containerd(root) as ctd:
        ctd.ctr(*ns, "images", "import", "--snapshotter", "overlayfs", str(archive))
        script = ("ln -s /etc/hostname /tmp/abs-in-ctr; ln -s /only/in/ctr /tmp/gone-in-ctr; "
                  "ln -s ../../../../etc /tmp/up-etc; touch /tmp/ready; exec sleep 600")
        ctd.ctr(*ns, "run", "-d", *ctd.run_args(), "--snapshotter", "overlayfs",
                "docker.io/crilink/busybox:v1", "scan-me", "/bin/sh", "-c", script)
        try:
            pid = 0
            for _ in range(200):
                rows = ctd.ctr(*ns, "tasks", "ls").stdout.split("\n")[1:]
                row = next((r.split() for r in rows if r.startswith("scan-me")), [])
                if len(row) >= 3 and row[2] == "RUNNING" and \
                        Path(f"/proc/{row[1]}/root/tmp/ready").exists():
                    pid = int(row[1])
                    break
                time.sleep(0.05)
            assert pid, "the container did not start"
            yield pid
        finally:
            ctd.ctr_raw(*ns, "tasks", "kill", "-s", "SIGKILL", "scan-me")
            for _ in range(100):
                if ctd.ctr_raw(*ns, "tasks", "delete", "scan-me").returncode == 0:
                    break
                time.sleep(0.1)
            ctd.ctr_raw(*ns, "containers", "rm", "scan-me")


def test_pid_scan_sees_the_containers_own_root(running_container: int) -> None:
    code, doc = scan("--pid", str(running_container))
    assert doc["target_kind"] == "container"
    assert doc["target"] == f"/proc/{running_container}/root"
    absolute = kinds_by_path(doc, "absolute")
    dangling = kinds_by_path(doc, "dangling")
    assert "/tmp/abs-in-ctr" in absolute  # made inside the container: its overlay is scanned
    assert absolute["/tmp/abs-in-ctr"]["detail"]["host"] in ("different", "same", "missing")
    assert set(dangling) == {"/tmp/gone-in-ctr", "/usr/bin/dangling-link"}
    assert "/tmp/up-etc" in kinds_by_path(doc, "escapes_root")
    assert code == 1
    # the container's /proc and /sys are never walked
    assert doc["summary"]["stats"]["skipped_mounts"] >= 2
    assert not [f for f in doc["findings"] if f["path"].startswith(("/proc/", "/sys/"))]


def test_closed_or_full_stdout_is_not_an_internal_error(real_fixtures: Path) -> None:
    root = str(real_fixtures / "rootfs/busybox")
    closed = subprocess.run(f"{sys.executable} -m crilink.cli.main scan {root} -o json >&-",
                            shell=True, capture_output=True, text=True, check=False, timeout=120)
    assert closed.returncode == 1, closed.stderr  # the findings still set the exit code
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "crilink.cli.main", "scan", root, "-o",
                               "json"], stdout=full, stderr=subprocess.PIPE, text=True,
                              check=False, timeout=120)
    assert proc.returncode == 2 and "cannot write the output" in proc.stderr


def test_pid_of_a_kernel_thread_is_refused() -> None:
    """kthreadd (PID 2) shares the host's root: scanning it as a 'container' would mislead."""
    proc = subprocess.run([sys.executable, "-m", "crilink.cli.main", "scan", "--pid", "2"],
                          capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 2 and "kernel thread" in proc.stderr
