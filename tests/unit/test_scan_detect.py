"""Target detection: what ``crilink scan`` decides a target is, and what it says when it
cannot tell (hand-made trees in a tmp dir)."""

from __future__ import annotations

from pathlib import Path

import pytest

from crilink.errors import InputError
from crilink.model import TargetKind
from crilink.scan import detect_target


def test_empty_target_is_said_to_be_empty() -> None:
    with pytest.raises(InputError, match="empty name") as err:
        detect_target("")
    assert "permission" not in err.value.message


@pytest.mark.parametrize("index", ["file", "symlink", "dangling", "dir"])
def test_layout_with_any_index_json_is_a_layout(tmp_path: Path, index: str) -> None:
    (tmp_path / "oci-layout").write_text("{}")
    target = tmp_path / "index.json"
    if index == "file":
        target.write_text("{}")
    elif index == "symlink":
        target.symlink_to("/dev/zero")
    elif index == "dangling":
        target.symlink_to("nowhere")
    else:
        target.mkdir()
    assert detect_target(str(tmp_path)) is TargetKind.OCI_LAYOUT


def test_dir_without_layout_files_is_a_rootfs(tmp_path: Path) -> None:
    (tmp_path / "index.json").write_text("{}")
    assert detect_target(str(tmp_path)) is TargetKind.ROOTFS
