"""pathres.files and formats.jsondoc: odd files where a regular file belongs never hang."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from crilink.errors import CorruptInputError, InputError
from crilink.formats.jsondoc import parse_json
from crilink.pathres.files import read_regular


def test_regular_file_is_read(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"abc")
    assert read_regular(tmp_path / "f", "f") == b"abc"


@pytest.mark.parametrize("kind", ["fifo", "devzero", "dir", "symlink"])
def test_non_regular_refused_at_once(tmp_path: Path, kind: str) -> None:
    p = tmp_path / "x"
    if kind == "fifo":
        os.mkfifo(p)
    elif kind == "devzero":
        p.symlink_to("/dev/zero")
    elif kind == "dir":
        p.mkdir()
    else:
        (tmp_path / "real").write_bytes(b"{}")
        p.symlink_to("real")
    with pytest.raises(CorruptInputError, match="read x:"):
        read_regular(p, "x")


def test_missing_and_too_large(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read_regular(tmp_path / "nope", "nope")
    (tmp_path / "big").write_bytes(b"x" * 11)
    with pytest.raises(CorruptInputError, match="larger than 10 bytes"):
        read_regular(tmp_path / "big", "big", limit=10)


@pytest.mark.parametrize("data", [b"[" * 100_000, b"\xff\xfe", b"{", b"[1,"])
def test_bad_json_is_an_input_error(data: bytes) -> None:
    with pytest.raises(CorruptInputError, match="read doc: not valid JSON"):
        parse_json(data, "doc")
