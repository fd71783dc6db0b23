"""A private containerd for tests: its own root, state, socket and config; stopped by PID.

    with Containerd(root, gc="delayed") as ctd:
        ctd.ctr("-n", "k8s.io", "images", "ls", "-q").stdout

State, sockets and the fifo/runc dirs for ``ctr run`` live in a short temp dir (unix socket
paths are limited to 108 bytes), removed on stop after everything mounted below the root and
the state dir has been unmounted.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

__all__ = ["Containerd", "containerd_available", "umount_under"]

_GC = {"normal": ("0s", "100ms"), "delayed": ("1h", "1h")}
_DISABLED = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
             "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
             "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp",
             "io.containerd.internal.v1.tracing"]


def containerd_available() -> str | None:
    """None when containerd, ctr and runc are installed and we are root, else why not."""
    missing = [c for c in ("containerd", "ctr", "runc") if shutil.which(c) is None]
    if missing:
        return f"not installed: {', '.join(missing)}"
    return None if os.geteuid() == 0 else "needs root"


def umount_under(path: Path) -> list[str]:
    """Unmount everything at or below ``path``, deepest first; return what was unmounted."""
    prefix = str(path).rstrip("/")
    points = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as fh:
        for line in fh:
            point = line.split()[4].encode().decode("unicode_escape")
            if point == prefix or point.startswith(prefix + "/"):
                points.append(point)
    for point in sorted(points, reverse=True):
        if subprocess.run(["umount", point], check=False, capture_output=True).returncode:
            subprocess.run(["umount", "-l", point], check=False, capture_output=True)
    return points


class Containerd:
    """One containerd process on ``root``; ``gc`` is "normal" or "delayed" (1 h)."""

    def __init__(self, root: Path, gc: str = "normal") -> None:
        self.root = root
        self.gc = gc
        self.run_dir = Path(tempfile.mkdtemp(prefix="crl-ctd.", dir="/tmp"))
        self.address = str(self.run_dir / "c.sock")
        self.log = self.run_dir / "containerd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _config(self) -> Path:
        sched, startup = _GC[self.gc]
        (self.run_dir / "state").mkdir()
        (self.run_dir / "opt").mkdir()
        conf = self.run_dir / "config.toml"
        conf.write_text(f"""version = 2
root = "{self.root}"
state = "{self.run_dir / 'state'}"
disabled_plugins = {_DISABLED!r}
[grpc]
  address = "{self.address}"
[ttrpc]
  address = "{self.address}.ttrpc"
[debug]
  address = "{self.run_dir / 'debug.sock'}"
  level = "debug"
[metrics]
  address = ""
[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "{self.run_dir / 'opt'}"
  [plugins."io.containerd.gc.v1.scheduler"]
    deletion_threshold = 0
    mutation_threshold = 100
    pause_threshold = 0.02
    schedule_delay = "{sched}"
    startup_delay = "{startup}"
""".replace("'", '"'))
        return conf

    def start(self) -> Containerd:
        conf = self._config()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(["containerd", "--config", str(conf)], stdout=log,
                                         stderr=subprocess.STDOUT)
        for _ in range(200):
            if self.ctr_raw("version").returncode == 0:
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"containerd did not start: {self.log.read_text()[-2000:]}")

    def ctr_raw(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ctr", "--address", self.address, *args], capture_output=True,
                              text=True, check=False, timeout=300)

    def ctr(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = self.ctr_raw(*args)
        if done.returncode != 0:
            raise AssertionError(f"ctr {' '.join(args)} failed: {done.stderr}")
        return done

    def run_args(self) -> list[str]:
        """Options for ``ctr run`` that keep its fifos and runc state in the private dir."""
        return ["--fifo-dir", str(self.run_dir / "fifo"), "--runc-root", str(self.run_dir / "runc")]

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None
        umount_under(self.root)
        umount_under(self.run_dir)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> Containerd:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.cleanup()
