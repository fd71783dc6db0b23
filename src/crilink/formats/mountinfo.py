"""``/proc/PID/mountinfo``: which filesystem type sits behind each device number (pure).

Line shape (proc(5)): ``id parent MAJOR:MINOR root mount_point options [optional...] -
fstype source super_options``. Only the device number and the type are read here; lines that
do not parse are skipped (a hostile or truncated file gives fewer entries, never an error).
"""

from __future__ import annotations

__all__ = ["VIRTUAL_FS", "device_types"]

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
