"""Fixture trees from one-line specs, built on disk or in a MemoryVFS.

Each line is ``KIND PATH [ARG]``::

    dir usr/lib
    file usr/lib/x.so
    symlink etc/localtime /usr/share/zoneinfo/UTC   (ARG: link text, may hold spaces)
    hardlink b a                                    (b becomes another name of a)

Paths are root-relative (a leading ``/`` is ignored); missing parents are created as
directories. Names are ``os.fsdecode`` strs, so ``"\\udcff"`` makes a non-UTF-8 byte.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from crilink.pathres import MemoryVFS, NodeType

__all__ = ["build", "parse", "to_memory"]

KINDS = ("dir", "file", "symlink", "hardlink")


def parse(specs: Iterable[str]) -> list[tuple[str, str, str | None]]:
    """(kind, path, arg) per spec line; blank lines and ``#`` comments are skipped."""
    out: list[tuple[str, str, str | None]] = []
    for line in specs:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split(" ", 2)
        kind, path = parts[0], parts[1].strip("/")
        if kind not in KINDS:
            raise ValueError(f"unknown spec kind {kind!r} in {line!r}")
        arg = parts[2] if len(parts) > 2 else None
        if kind in ("symlink", "hardlink") and arg is None:
            raise ValueError(f"{kind} needs a target: {line!r}")
        out.append((kind, path, arg))
    return out


def build(root: str | Path, specs: Iterable[str]) -> Path:
    """Materialise ``specs`` under ``root`` (created if missing); returns ``root``."""
    base = os.fsencode(str(root))
    os.makedirs(base, exist_ok=True)
    for kind, path, arg in parse(specs):
        full = os.path.join(base, os.fsencode(path))
        if kind == "dir":
            os.makedirs(full, exist_ok=True)
            continue
        os.makedirs(os.path.dirname(full), exist_ok=True)
        if kind == "file":
            with open(full, "wb") as f:
                f.write(os.fsencode(path) + b"\n")
        elif kind == "symlink":
            assert arg is not None
            os.symlink(os.fsencode(arg), full)
        else:
            assert arg is not None
            os.link(os.path.join(base, os.fsencode(arg.strip("/"))), full)
    return Path(root)


def to_memory(specs: Iterable[str], vfs: MemoryVFS | None = None) -> MemoryVFS:
    """The same tree as :func:`build`, in a :class:`MemoryVFS`."""
    vfs = vfs or MemoryVFS()
    for kind, path, arg in parse(specs):
        if kind == "dir":
            vfs.add(path, NodeType.DIR)
        elif kind == "file":
            vfs.add(path, NodeType.FILE)
        elif kind == "symlink":
            vfs.add(path, NodeType.SYMLINK, arg)
        else:
            assert arg is not None
            vfs.add_hardlink(path, arg)
    return vfs
