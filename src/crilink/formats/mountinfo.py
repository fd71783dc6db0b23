"""``/proc/PID/mountinfo``: which filesystem type sits behind each device number (pure).

Line shape (proc(5)): ``id parent MAJOR:MINOR root mount_point options [optional...] -
fstype source super_options``. Only the device number and the type are read here; lines that
do not parse are skipped (a hostile or truncated file gives fewer entries, never an error).
"""

from __future__ import annotations

import os

__all__ = ["VIRTUAL_FS", "device_types", "mount_points", "unescape"]

# filesystems that hold no files of the root being examined: never descended into
VIRTUAL_FS = frozenset({
    "proc", "sysfs", "cgroup", "cgroup2", "devtmpfs", "devpts", "debugfs", "tracefs",
    "securityfs", "pstore", "bpf", "configfs", "fusectl", "mqueue", "hugetlbfs", "autofs",
    "binfmt_misc", "efivarfs", "selinuxfs", "rpc_pipefs", "nsfs",
})


def device_types(text: str) -> dict[tuple[int, int], str]:
    """``{(major, minor): fstype}`` for every mount line of ``text``."""
    out: dict[tuple[int, int], str] = {}
    for line in text.splitlines():
        fields = line.split(" ")
        try:
            sep = fields.index("-", 6)
            major, minor = fields[2].split(":")
            out[(int(major), int(minor))] = fields[sep + 1]
        except (ValueError, IndexError):
            continue
    return out


def unescape(field: str) -> str:
    """A mountinfo path field: the kernel writes space, tab, newline and backslash as
    ``\\ooo`` octal escapes (decoded byte-wise: names that are not UTF-8 round-trip)."""
    raw = os.fsencode(field)
    out = bytearray()
    i = 0
    while i < len(raw):
        if raw[i] == 0x5C and i + 4 <= len(raw) and raw[i + 1:i + 4].isdigit():
            out.append(int(raw[i + 1:i + 4], 8) & 0xFF)
            i += 4
        else:
            out.append(raw[i])
            i += 1
    return os.fsdecode(bytes(out))


def mount_points(text: str) -> list[str]:
    """Every mount point of ``text`` (unescaped host paths), in file order."""
    out = []
    for line in text.splitlines():
        fields = line.split(" ")
        if len(fields) > 4:
            out.append(unescape(fields[4]))
    return out
