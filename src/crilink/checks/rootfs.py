"""Root filesystem checks: every symlink of a live tree, resolved as the container sees it.

Targets: a directory (``run``) or the root of a running process, ``/proc/PID/root`` (``run_pid``),
which is the container's mount namespace seen from the host. Reads only.

The walk goes through directory file descriptors: each directory is opened below the root
with ``openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`` (or a by-name ``O_NOFOLLOW`` descent
where the kernel lacks it), so a directory swapped for a link meanwhile is skipped, never
followed. It stays on the root's filesystem unless ``one_filesystem`` is off, and never
enters virtual filesystems (proc, sysfs, cgroup ...), whatever the option says.

Findings: the symlink kinds of :mod:`crilink.checks.links` (``absolute`` findings carry
``detail.host`` when the root is not the host's ``/``), plus ``unreadable`` (warning): a
directory that could not be listed, so the scan is incomplete there (``detail.reason``).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from crilink.checks.links import HostView, symlink_findings
from crilink.errors import InputError
from crilink.formats.mountinfo import VIRTUAL_FS, device_types
from crilink.model import Finding, ScanResult, Severity, TargetKind
from crilink.pathres.base import Node
from crilink.pathres.dirvfs import DirVFS
from crilink.pathres.fdopen import openat2, openat2_available
from crilink.pathres.resolve import Resolver

if TYPE_CHECKING:
    from crilink.scan import ScanOptions

__all__ = ["UNREADABLE", "host_check_for", "run", "run_pid", "scan_root_fd"]

UNREADABLE = "unreadable"
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_PROGRESS_EVERY = 20_000
Progress = Callable[[int, int | None], None]


def _open_root(path: str) -> int:
    """The root the operator named, opened once (links in ``path`` itself are followed)."""
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError as err:
        raise InputError(f"scan {path}: no such directory") from err
    except NotADirectoryError as err:
        raise InputError(f"scan {path}: not a directory") from err
    except PermissionError as err:
        raise InputError(f"scan {path}: permission denied (run as root?)") from err
    except OSError as err:
        raise InputError(f"scan {path}: {err.strerror}") from err


def _open_below(root_fd: int, rel: str) -> int:
    """Open directory ``rel`` (root-relative, link-free) below ``root_fd``, following no link."""
    if _HAVE_OPENAT2:
        while True:
            try:
                return openat2(root_fd, rel, _DIR_FLAGS, 0,
                               RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)
            except BlockingIOError:
                continue  # EAGAIN: a rename raced the lookup
    fd = os.dup(root_fd)
    try:
        for name in rel.split("/"):
            nfd = os.open(name, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nfd
    except BaseException:
        os.close(fd)
        raise
    return fd


_HAVE_OPENAT2 = openat2_available()


def _same_file_as_host_root(root_fd: int) -> bool:
    st, host = os.fstat(root_fd), Path("/").stat()
    return (st.st_dev, st.st_ino) == (host.st_dev, host.st_ino)


def host_check_for(root_fd: int) -> Callable[[str, Node | None], HostView] | None:
    """What the host makes of an absolute link text; ``None`` when the root is the host's /."""
    if _same_file_as_host_root(root_fd):
        return None

    def check(text: str, node: Node | None) -> HostView:
        try:
            st = Path(text).stat()  # the host's view; stat only, nothing is opened
        except (OSError, ValueError):
            return HostView.MISSING
        if node is not None and (st.st_dev, st.st_ino) == (node.dev, node.ino):
            return HostView.SAME
        return HostView.DIFFERENT

    return check


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return f.read()
    except OSError:
        return ""


@dataclass(slots=True)
class _Walk:
    """One walk of the tree below ``root_fd``; counters and findings accumulate here."""

    root_fd: int
    one_filesystem: bool
    fs_types: dict[tuple[int, int], str]
    resolver: Resolver
    host_check: Callable[[str, Node | None], HostView] | None
    progress: Progress | None
    findings: list[Finding] = field(default_factory=list)
    entries: int = 0
    dirs: int = 0
    symlinks: int = 0
    skipped_mounts: int = 0
    unreadable: int = 0

    def run(self) -> None:
        root_dev = os.fstat(self.root_fd).st_dev
        stack: list[str] = [""]  # root-relative dir paths, "" is the root
        while stack:
            rel = stack.pop()
            fd = self.root_fd if not rel else self._open(rel)
            if fd < 0:
                continue
            try:
                self._list(fd, rel, root_dev, stack)
            finally:
                if fd != self.root_fd:
                    os.close(fd)

    def _open(self, rel: str) -> int:
        try:
            return _open_below(self.root_fd, rel)
        except FileNotFoundError:
            return -1  # removed while we walked
        except OSError as err:
            if err.errno in (errno.ELOOP, errno.ENOTDIR, errno.EXDEV):
                return -1  # swapped for a link or a file meanwhile: not followed
            self._unreadable(rel, err)
            return -1

    def _unreadable(self, rel: str, err: OSError) -> None:
        self.unreadable += 1
        reason = errno.errorcode.get(err.errno or 0, "error").lower()
        self.findings.append(Finding(
            UNREADABLE, Severity.WARNING, "/" + rel,
            message=f"cannot list this directory ({err.strerror}); the scan is incomplete here",
            detail={"reason": reason}))

    def _list(self, fd: int, rel: str, root_dev: int, stack: list[str]) -> None:
        prefix = "/" + rel + "/" if rel else "/"
        self.dirs += 1
        try:
            it = os.scandir(fd)
        except OSError as err:
            self._unreadable(rel, err)
            return
        with it:
            while True:
                try:
                    entry = next(it, None)
                except OSError as err:
                    self._unreadable(rel, err)
                    return
                if entry is None:
                    return
                self._entry(fd, entry, prefix, root_dev, stack)

    def _entry(self, fd: int, entry: os.DirEntry[str], prefix: str, root_dev: int,
               stack: list[str]) -> None:
        self.entries += 1
        if self.progress is not None and not self.entries % _PROGRESS_EVERY:
            self.progress(self.entries, None)
        name = entry.name
        if entry.is_symlink():
            self.symlinks += 1
            path = prefix + name
            try:
                text = os.readlink(name, dir_fd=fd)
            except OSError:
                return  # replaced meanwhile: nothing to judge
            self.findings.extend(symlink_findings(self.resolver, path, text,
                                                  host_check=self.host_check))
        elif entry.is_dir(follow_symlinks=False):
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                return
            if not stat.S_ISDIR(st.st_mode):
                return
            if st.st_dev != root_dev and self._skip_mount(st.st_dev):
                self.skipped_mounts += 1
                return
            stack.append(prefix[1:] + name)

    def _skip_mount(self, dev: int) -> bool:
        fstype = self.fs_types.get((os.major(dev), os.minor(dev)), "")
        return self.one_filesystem or fstype in VIRTUAL_FS


def scan_root_fd(root_fd: int, *, one_filesystem: bool = True, mountinfo: str = "",
                 host_check: Callable[[str, Node | None], HostView] | None = None,
                 progress: Progress | None = None) -> tuple[list[Finding], dict[str, int]]:
    """Every finding below the directory open at ``root_fd``, and the walk's counters."""
    walk = _Walk(root_fd, one_filesystem, device_types(mountinfo),
                 Resolver(DirVFS.from_fd(root_fd)), host_check, progress)
    walk.run()
    if progress is not None:
        progress(walk.entries, walk.entries)
    walk.findings.sort(key=lambda f: (f.path, f.kind))
    stats = {"entries": walk.entries, "dirs": walk.dirs, "symlinks": walk.symlinks,
             "skipped_mounts": walk.skipped_mounts, "unreadable_dirs": walk.unreadable}
    return walk.findings, stats


def _scan(target: str, root: str, kind: TargetKind, mountinfo: str,
          options: ScanOptions) -> ScanResult:
    root_fd = _open_root(root)
    try:
        findings, stats = scan_root_fd(root_fd, one_filesystem=options.one_filesystem,
                                       mountinfo=mountinfo, host_check=host_check_for(root_fd),
                                       progress=options.progress)
    finally:
        os.close(root_fd)
    return ScanResult.of(target, kind, findings, stats)


def run(target: str, options: ScanOptions) -> ScanResult:
    """Scan the root filesystem at directory ``target``."""
    return _scan(target, target, TargetKind.ROOTFS, _read_text("/proc/self/mountinfo"), options)


def run_pid(target: str, options: ScanOptions) -> ScanResult:
    """Scan the root filesystem of process ``target`` (a PID) as that process sees it."""
    if not target.isdigit():
        raise InputError(f"scan --pid {target}: not a process id")
    proc = f"/proc/{target}"
    if not os.path.isdir(proc):  # noqa: PTH112 - one stat of a procfs path
        raise InputError(f"scan --pid {target}: no such process")
    return _scan(f"{proc}/root", f"{proc}/root", TargetKind.CONTAINER,
                 _read_text(f"{proc}/mountinfo"), options)
