"""A private podman (Debian's 4.3) for tests: its own graph root, runroot and tmpdir.

podman records the static dir, graph root and runroot in its libpod database, so a store
cannot be copied to a new path and used there: tests that need podman to work on a store
make the store with podman in their own tmp dir (loading the fixtures' docker archives is
fast). The runroot must stay under 50 characters (podman 4.3 refuses longer ones), so it
lives in a short private dir under /tmp. Cleanup waits for the conmon / ``podman container
cleanup`` processes that work on this store (found by its unique path; only waited for),
unmounts whatever is left mounted under the store's dirs, and removes the runroot.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PODMAN = "podman"
RUNROOT_MAX = 50
RUN_FLAGS = ("--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit",
             "nproc=1024:1024")
TIMEOUT = 120
SETTLE_POLLS = 100


def available() -> bool:
    return shutil.which(PODMAN) is not None and os.geteuid() == 0


def _mounts_under(prefixes: list[str]) -> list[str]:
    out = []
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            target = line.split(b" ")[4].decode("unicode_escape")
            if any(target == p or target.startswith(p + "/") for p in prefixes):
                out.append(target)
    return sorted(out, key=len, reverse=True)


def _pids_using(needle: str) -> list[int]:
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{entry.name}/cmdline").read_bytes()
        except OSError:
            continue
        if needle.encode() in cmd:
            pids.append(int(entry.name))
    return pids


@dataclass
class Podman:
    """``podman --root BASE/root --runroot /tmp/crl-pm.XXXX ...`` with the flags that work in
    this sandbox (cgroupfs, file events, no network, fixed ulimits)."""

    base: Path
    runroot: str = ""
    log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        (self.base / "root").mkdir(parents=True, exist_ok=True)
        (self.base / "tmp").mkdir(exist_ok=True)
        if not self.runroot:
            self.runroot = tempfile.mkdtemp(prefix="crl-pm.", dir="/tmp")
        assert len(self.runroot) < RUNROOT_MAX, self.runroot

    @property
    def root(self) -> Path:
        return self.base / "root"

    def argv(self, *args: str) -> list[str]:
        return [PODMAN, "--root", str(self.root), "--runroot", self.runroot,
                "--storage-driver", "overlay", "--cgroup-manager", "cgroupfs",
                "--events-backend", "file", "--tmpdir", str(self.base / "tmp"), *args]

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "TMPDIR": str(self.base / "tmp")}
        proc = subprocess.run(self.argv(*args), capture_output=True, text=True, env=env,
                              timeout=TIMEOUT, check=False)
        self.log.append(f"$ podman {' '.join(args)}\n{proc.stdout}{proc.stderr}")
        if check and proc.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} failed: {proc.stderr}")
        return proc

    def load(self, archive: Path) -> None:
        self("load", "-q", "-i", str(archive))

    def run(self, image: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = self("run", "--rm", *RUN_FLAGS, image, *cmd, check=check)
        self.settle()
        return proc

    def settle(self) -> None:
        """Wait for conmon and 'podman container cleanup' working on this store to exit."""
        for _ in range(SETTLE_POLLS):
            if not _pids_using(str(self.root)):
                return
            time.sleep(0.1)

    def unmount_leftovers(self) -> None:
        for target in _mounts_under([str(self.base), self.runroot]):
            subprocess.run(["umount", "-l", target], check=False, capture_output=True)

    def close(self) -> None:
        self.settle()
        self.unmount_leftovers()
        shutil.rmtree(self.runroot, ignore_errors=True)
