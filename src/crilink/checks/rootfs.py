"""Root filesystem checks: every symlink of a live tree, resolved as the container sees it.

Targets: a directory (``run``) or the root of a running process, ``/proc/PID/root`` (``run_pid``),
which is the container's mount namespace seen from the host. Reads only.

The walk goes through directory file descriptors: each directory is opened below the root
with ``openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`` (or a by-name ``O_NOFOLLOW`` descent
where the kernel lacks it), so a directory swapped for a link meanwhile is skipped, never
followed. It stays on the root's filesystem unless ``one_filesystem`` is off, and never
enters virtual filesystems (proc, sysfs, cgroup ...), whatever the option says. Each directory
is walked once: one reached again through a bind mount is counted (``repeated_dirs``), not
re-entered, so a directory bound inside itself cannot make the walk endless.

Findings: the symlink kinds of :mod:`crilink.checks.links` (``absolute`` findings carry
``detail.host`` when the root is not the host's ``/``), plus ``unreadable`` (warning): a
directory that could not be listed, so the scan is incomplete there (``detail.reason``).
"""

from __future__ import annotations

import errno
import multiprocessing
import os
import stat
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from crilink.checks.links import HostView, findings_for
from crilink.errors import CrilinkError, InputError, denied_hint
from crilink.formats.mountinfo import VIRTUAL_FS, device_types
from crilink.model import Finding, ScanResult, Severity, TargetKind
from crilink.pathres.base import Node, NodeType
from crilink.pathres.beneath import open_dir_beneath
from crilink.pathres.dirvfs import DirVFS
from crilink.pathres.fdopen import in_root_probe
from crilink.pathres.resolve import Resolver

if TYPE_CHECKING:
    from crilink.scan import ScanOptions

__all__ = ["UNREADABLE", "host_check_for", "run", "run_pid", "scan_root_fd"]

UNREADABLE = "unreadable"
_PROGRESS_DIRS = 256  # progress is reported every so many directories
_HOST_MEMO = 1 << 14  # absolute texts whose host view is remembered
_PARALLEL_AFTER = 20_000  # entries walked in one process before a tree counts as big
_MIN_UNITS = 8  # subtrees in the frontier before they are shared out
_MAX_WORKERS = 4
_CHUNKS_PER_WORKER = 8
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
        raise InputError(f"scan {path}: permission denied{denied_hint()}") from err
    except OSError as err:
        raise InputError(f"scan {path}: {err.strerror}") from err


def _same_file_as_host_root(root_fd: int) -> bool:
    st, host = os.fstat(root_fd), Path("/").stat()
    return (st.st_dev, st.st_ino) == (host.st_dev, host.st_ino)


def host_check_for(root_fd: int) -> Callable[[str, Node | None], HostView] | None:
    """What the host makes of an absolute link text; ``None`` when the root is the host's /."""
    if _same_file_as_host_root(root_fd):
        return None
    seen: dict[str, tuple[int, int] | None] = {}

    def check(text: str, node: Node | None) -> HostView:
        if text in seen:
            ident = seen[text]
        else:
            try:
                st = os.stat(text)  # noqa: PTH116 - the host's view: one stat, hot path
                ident = (st.st_dev, st.st_ino)
            except (OSError, ValueError):
                ident = None
            if len(seen) > _HOST_MEMO:
                seen.clear()
            seen[text] = ident
        if ident is None:
            return HostView.MISSING
        if node is not None and ident == (node.dev, node.ino):
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
class _Part:
    """What one piece of the walk found (a worker sends its parts back to the parent)."""

    findings: list[Finding] = field(default_factory=list)
    entries: int = 0
    dirs: int = 0
    symlinks: int = 0
    skipped_mounts: int = 0
    repeated_dirs: int = 0
    unreadable: int = 0
    error: str = ""

    def merge(self, other: _Part) -> None:
        self.findings.extend(other.findings)
        self.entries += other.entries
        self.dirs += other.dirs
        self.symlinks += other.symlinks
        self.skipped_mounts += other.skipped_mounts
        self.repeated_dirs += other.repeated_dirs
        self.unreadable += other.unreadable
        self.error = self.error or other.error

    def stats(self) -> dict[str, int]:
        return {"entries": self.entries, "dirs": self.dirs, "symlinks": self.symlinks,
                "skipped_mounts": self.skipped_mounts, "repeated_dirs": self.repeated_dirs,
                "unreadable_dirs": self.unreadable}


class _Walker:
    """Lists directories below ``root_fd`` and judges their links (one resolver per process)."""

    def __init__(self, root_fd: int, one_filesystem: bool, fs_types: dict[tuple[int, int], str],
                 host_check: Callable[[str, Node | None], HostView] | None) -> None:
        self.root_fd = root_fd
        self.root_dev = os.fstat(root_fd).st_dev
        self.one_filesystem = one_filesystem
        self.fs_types = fs_types
        self.host_check = host_check
        self.resolver = Resolver(DirVFS.from_fd(root_fd))
        root_st = os.fstat(root_fd)
        # directories walked, by (dev, ino): a bind mount of a directory inside itself
        # (same filesystem, so one_filesystem does not stop it) would otherwise never end
        self.seen: set[tuple[int, int]] = {(root_st.st_dev, root_st.st_ino)}
        self.probe = in_root_probe()

    def list_dir(self, rel: str, part: _Part) -> list[str]:
        """List directory ``rel`` (root-relative, "" is the root), judge its links, count its
        entries; returns the subdirectories to walk next."""
        fd = self.root_fd if not rel else self._open(rel, part)
        if fd < 0:
            return []
        try:
            return self._list(fd, rel, part)
        finally:
            if fd != self.root_fd:
                os.close(fd)

    def _open(self, rel: str, part: _Part) -> int:
        try:
            return open_dir_beneath(self.root_fd, rel)
        except FileNotFoundError:
            return -1  # removed while we walked
        except OSError as err:
            if err.errno in (errno.ELOOP, errno.ENOTDIR, errno.EXDEV):
                return -1  # swapped for a link or a file meanwhile: not followed
            _unreadable(part, "/" + rel, err)
            return -1

    def _list(self, fd: int, rel: str, part: _Part) -> list[str]:
        part.dirs += 1
        links: list[str] = []
        subdirs: list[os.DirEntry[str]] = []
        count = 0
        try:
            with os.scandir(fd) as it:
                for entry in it:
                    count += 1
                    if entry.is_symlink():
                        links.append(entry.name)
                    elif entry.is_dir(follow_symlinks=False):
                        subdirs.append(entry)
        except OSError as err:  # listing failed part way: judge what was listed
            _unreadable(part, "/" + rel, err)
        part.entries += count
        prefix = "/" + rel + "/" if rel else "/"
        out = self._subdirs(subdirs, prefix, part)
        if links:
            part.symlinks += len(links)
            self._judge(fd, prefix, links, part)
        return out

    def _subdirs(self, entries: list[os.DirEntry[str]], prefix: str, part: _Part) -> list[str]:
        out = []
        note = self.resolver.note_dir
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if not stat.S_ISDIR(st.st_mode):
                continue
            if st.st_dev != self.root_dev and self._skip_mount(st.st_dev):
                part.skipped_mounts += 1
                continue
            ident = (st.st_dev, st.st_ino)
            if ident in self.seen:  # a directory reached again through a bind mount
                part.repeated_dirs += 1
                continue
            self.seen.add(ident)
            path = prefix + entry.name
            note(path, Node(NodeType.DIR, st.st_dev, st.st_ino))
            out.append(path[1:])
        return out

    def _judge(self, fd: int, prefix: str, names: list[str], part: _Part) -> None:
        """Findings for the links ``names`` of the directory open at ``fd``; a clean relative
        link costs a readlink and a lookup, no record."""
        dirpath = prefix[:-1] or "/"
        follow = self.resolver.follow_from
        out = part.findings
        probe, root_fd = self.probe, self.root_fd
        depth = prefix.count("/") - 1
        rel = os.fsencode(prefix[1:])
        for name in names:
            try:
                text = os.readlink(name, dir_fd=fd)
            except OSError:
                continue  # replaced meanwhile: nothing to judge
            if probe is not None and text[:1] != "/" and _climb_within(text, depth) \
                    and probe(root_fd, rel + os.fsencode(name)):
                continue  # the kernel reaches a target and the text cannot climb above /
            try:
                res = follow(dirpath, text)
            except CrilinkError as err:  # a lookup on the way failed (EACCES ...)
                out.append(Finding(UNREADABLE, Severity.WARNING, prefix + name, link=text,
                                   message=f"cannot resolve this link: {err}",
                                   detail={"reason": "lookup_failed"}))
                continue
            if res.error is None and not res.text_clamped and text[:1] != "/":
                continue
            out.extend(findings_for(prefix + name, text, res, host_check=self.host_check))

    def _skip_mount(self, dev: int) -> bool:
        fstype = self.fs_types.get((os.major(dev), os.minor(dev)), "")
        return self.one_filesystem or fstype in VIRTUAL_FS


def _climb_within(text: str, depth: int) -> bool:
    """True when relative ``text``, followed from a link-free dir ``depth`` levels below the
    root, cannot apply a ``..`` of its own at the root: every ``..`` comes before the first
    name (so the climb is lexical) and there are at most ``depth`` of them. Anything else
    (``a/../b``) is left to the resolver, which tracks the physical climb."""
    ups = 0
    for comp in text.split("/"):
        if comp == "..":
            ups += 1
        elif comp and comp != ".":
            return "/.." not in text[text.index(comp):] and ups <= depth
    return ups <= depth


def _unreadable(part: _Part, path: str, err: OSError) -> None:
    part.unreadable += 1
    reason = errno.errorcode.get(err.errno or 0, "error").lower()
    part.findings.append(Finding(
        UNREADABLE, Severity.WARNING, path,
        message=f"cannot list this directory ({err.strerror}); the scan is incomplete here",
        detail={"reason": reason}))


_WALKER: _Walker | None = None  # what a forked worker inherits from the parent


def _walk_subtree(rel: str) -> _Part:
    """A worker's job: the whole subtree at ``rel``, depth first."""
    assert _WALKER is not None  # set by the parent before it forks
    part = _Part()
    stack = [rel]
    try:
        while stack:
            stack.extend(_WALKER.list_dir(stack.pop(), part))
    except CrilinkError as err:
        part.error = str(err)
    return part


def _walk_subtrees(rels: list[str]) -> _Part:
    part = _Part()
    for rel in rels:
        part.merge(_walk_subtree(rel))
    return part


def _workers() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(cores, _MAX_WORKERS))


def _walk(walker: _Walker, progress: Progress | None, workers: int) -> _Part:
    """Breadth first in this process; once the tree proves big, the frontier's subtrees are
    shared out to ``workers`` forked processes (each with its own resolver)."""
    total = _Part()
    queue: deque[str] = deque([""])
    while queue:
        if workers > 1 and total.entries >= _PARALLEL_AFTER and len(queue) >= _MIN_UNITS:
            return _fan_out(walker, list(queue), total, progress, workers)
        queue.extend(walker.list_dir(queue.popleft(), total))
        if progress is not None and total.dirs % _PROGRESS_DIRS == 0:
            progress(total.entries, None)
    return total


def _fan_out(walker: _Walker, units: list[str], total: _Part, progress: Progress | None,
             workers: int) -> _Part:
    global _WALKER  # noqa: PLW0603 - the one way to hand an fd-holding walker to forked workers
    per = max(1, len(units) // (workers * _CHUNKS_PER_WORKER))
    batches = [units[i:i + per] for i in range(0, len(units), per)]
    _WALKER = walker
    try:
        pool = multiprocessing.get_context("fork").Pool(workers)
        try:
            for part in pool.imap_unordered(_walk_subtrees, batches):
                total.merge(part)
                if progress is not None:
                    progress(total.entries, None)
        finally:
            pool.close()
            pool.join()
    finally:
        _WALKER = None
    if total.error:
        raise InputError(total.error)
    return total


def scan_root_fd(root_fd: int, *, one_filesystem: bool = True, mountinfo: str = "",
                 host_check: Callable[[str, Node | None], HostView] | None = None,
                 progress: Progress | None = None,
                 workers: int | None = None) -> tuple[list[Finding], dict[str, int]]:
    """Every finding below the directory open at ``root_fd``, and the walk's counters.

    ``workers`` (default: the usable cores, at most 4) processes share a big tree.
    """
    walker = _Walker(root_fd, one_filesystem, device_types(mountinfo), host_check)
    total = _walk(walker, progress, workers or _workers())
    if progress is not None:
        progress(total.entries, total.entries)
    total.findings.sort(key=_order)
    return total.findings, total.stats()


def _order(f: Finding) -> tuple[str, str]:
    return (f.path, f.kind)


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


def _kernel_thread(proc: str) -> bool:
    """A kernel thread has an empty command line and PF_KTHREAD (0x00200000) in its flags."""
    try:
        with open(f"{proc}/stat", encoding="ascii", errors="replace") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return bool(int(fields[6]) & 0x00200000)  # field 9 of stat(5): flags
    except (OSError, IndexError, ValueError):
        return False


def run_pid(target: str, options: ScanOptions) -> ScanResult:
    """Scan the root filesystem of process ``target`` (a PID) as that process sees it."""
    if not target.isdigit():
        raise InputError(f"scan --pid {target}: not a process id")
    proc = f"/proc/{target}"
    if not os.path.isdir(proc):  # noqa: PTH112 - one stat of a procfs path
        raise InputError(f"scan --pid {target}: no such process")
    if _kernel_thread(proc):
        raise InputError(f"scan --pid {target}: a kernel thread, not a container process "
                         "(it has no root filesystem of its own); give the PID of a "
                         "process inside the container (crictl inspect: .info.pid)")
    return _scan(f"{proc}/root", f"{proc}/root", TargetKind.CONTAINER,
                 _read_text(f"{proc}/mountinfo"), options)
