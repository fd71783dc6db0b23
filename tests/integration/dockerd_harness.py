"""A private, real dockerd for integration tests (Debian's docker.io 20.10 + managed containerd).

Everything it writes lives in two private dirs: ``data_root`` (any length) and a short dir under
/tmp (``exec-root``, the API socket, the pidfile, the daemon config): unix socket paths must
stay under 108 bytes, and the managed containerd puts its socket in the exec-root.

Minimal flags that work on a Debian 12 host with no systemd, cgroup v1 (hybrid) and no network:
``--data-root --exec-root --host unix://... --pidfile --config-file <private> --bridge none
--iptables=false --ip6tables=false --storage-driver overlay2``; dockerd starts and manages its
own containerd (state under exec-root, root under ``data_root/containerd``). The private config
sets ``deprecated-key-path`` so that dockerd does not write ``/etc/docker/key.json``.

Processes are stopped by PID only: the dockerd we started, and the processes whose command line
names our exec-root (its containerd and shims). Mounts left under our dirs are unmounted.
Host dirs dockerd/containerd create on their own (``/run/docker/plugins``, ``/run/containerd/s``)
are removed afterwards only if they did not exist before and are empty.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["ARCHIVES", "BUILDAH", "DOCKER", "DOCKERD", "V1", "V2", "Dockerd", "dockerd_available",
           "umount_under"]

DOCKER = "/usr/bin/docker"  # Debian's client (20.10), matches the daemon's API
DOCKERD = "/usr/sbin/dockerd"
SHORT_TMP = os.environ.get("CRILINK_SHORT_TMP", "/tmp")
READY_POLLS = 600  # x 0.1 s: how long to wait for the API socket
STOP_POLLS = 300
ARCHIVES = ("busybox-v1.docker.tar", "busybox-v2.docker.tar", "buildah-l2.docker.tar")
V1 = "crilink/busybox:v1"  # the tags those archives carry
V2 = "crilink/busybox:v2"
BUILDAH = "crilink/bb-buildah:l2"
_HOST_DIRS = ("/run/docker/plugins", "/run/docker", "/run/containerd/s", "/run/containerd")


def dockerd_available() -> str | None:
    """None when a private dockerd can run here, else why not."""
    if os.geteuid() != 0:
        return "needs root"
    for exe in (DOCKER, DOCKERD, "/usr/bin/containerd", "/usr/sbin/runc"):
        if not os.access(exe, os.X_OK):
            return f"{exe} missing (apt-get install docker.io)"
    return None


def umount_under(path: Path) -> list[str]:
    """Unmount everything at or below ``path``, deepest first; return what was mounted."""
    targets = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as fh:
        for line in fh:
            target = line.split()[4].encode().decode("unicode_escape")
            if target == str(path) or target.startswith(str(path) + "/"):
                targets.append(target)
    for target in sorted(targets, reverse=True):
        if subprocess.run(["umount", target], check=False, capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", target], check=False, capture_output=True)
    return targets


def _pids_naming(text: str) -> list[int]:
    me = os.getpid()
    out = []
    for entry in (p.name for p in Path("/proc").iterdir()):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if text.encode() in cmd:
            out.append(int(entry))
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class Dockerd:
    """One private dockerd on ``data_root``; ``start()``, ``docker(...)``, ``stop()``."""

    def __init__(self, data_root: Path, log: Path) -> None:
        self.data_root = data_root
        self.log = log
        self.short = Path(tempfile.mkdtemp(prefix="dk", dir=SHORT_TMP))
        self.sock = self.short / "d.sock"
        self.proc: subprocess.Popen[bytes] | None = None
        self._host_dirs_before = {d for d in _HOST_DIRS if os.path.lexists(d)}

    @property
    def exec_root(self) -> Path:
        return self.short / "x"

    def argv(self) -> list[str]:
        config = self.short / "daemon.json"
        config.write_text(json.dumps({"deprecated-key-path": str(self.short / "key.json")}))
        return [DOCKERD, "--data-root", str(self.data_root), "--exec-root", str(self.exec_root),
                "--host", f"unix://{self.sock}", "--pidfile", str(self.short / "d.pid"),
                "--config-file", str(config), "--bridge", "none", "--iptables=false",
                "--ip6tables=false", "--storage-driver", "overlay2"]

    def start(self) -> Dockerd:
        self.data_root.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        for _ in range(READY_POLLS):
            if self.proc.poll() is not None:
                raise RuntimeError(f"dockerd exited ({self.proc.returncode}): see {self.log}")
            if self.sock.exists() and self.docker("version", check=False).returncode == 0:
                return self
            time.sleep(0.1)
        raise RuntimeError(f"dockerd did not answer on {self.sock}: see {self.log}")

    @property
    def pid(self) -> int:
        assert self.proc is not None, "dockerd not started"
        return self.proc.pid

    def docker(self, *args: str, check: bool = True,
               timeout: float = 120) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([DOCKER, "-H", f"unix://{self.sock}", *args], check=False,
                             capture_output=True, text=True, timeout=timeout)
        if check and res.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)}: exit {res.returncode}: {res.stderr}")
        return res

    def helpers(self) -> list[int]:
        """PIDs of processes that name our exec-root: the managed containerd and its shims."""
        return [p for p in _pids_naming(str(self.short)) if self.proc is None or p != self.proc.pid]

    def kill(self) -> None:
        """SIGKILL dockerd (a crash), then its helpers; leaves the data root as it is."""
        self.stop(signal.SIGKILL)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            helpers = self.helpers()
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=STOP_POLLS / 10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            for pid in helpers:
                self._kill_pid(pid, sig)
        for pid in self.helpers():
            self._kill_pid(pid, signal.SIGKILL)
        umount_under(self.data_root)
        umount_under(self.short)

    @staticmethod
    def _kill_pid(pid: int, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        for _ in range(STOP_POLLS):
            if not _alive(pid):
                return
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.short, ignore_errors=True)
        for d in _HOST_DIRS:
            if d not in self._host_dirs_before:
                with contextlib.suppress(OSError):
                    Path(d).rmdir()

    def __enter__(self) -> Dockerd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def running(data_root: Path, log: Path) -> Iterator[Dockerd]:
    """``with running(root, log) as d: d.docker("ps")``: a private dockerd for the block."""
    daemon = Dockerd(data_root, log)
    try:
        yield daemon.start()
    finally:
        daemon.close()
