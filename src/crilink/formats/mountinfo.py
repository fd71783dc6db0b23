"""``/proc/PID/mountinfo``: which filesystem type sits behind each device number (pure).

Line shape (proc(5)): ``id parent MAJOR:MINOR root mount_point options [optional...] -
fstype source super_options``. Only the device number and the type are read here; lines that
do not parse are skipped (a hostile or truncated file gives fewer entries, never an error).
"""

from __future__ import annotations

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
    ``\\ooo`` octal escapes."""
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        c = field[i]
        if c == "\\" and i + 3 < len(field) and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(c)
            i += 1
    return "".join(out)


def mount_points(text: str) -> list[str]:
    """Every mount point of ``text`` (unescaped host paths), in file order."""
    out = []
    for line in text.splitlines():
        fields = line.split(" ")
        if len(fields) > 4:
            out.append(unescape(fields[4]))
    return out
