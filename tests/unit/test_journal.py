"""The journal machinery: apply, re-check, undo, refusal, torn lines, crashes (in-process)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from crilink.errors import JournalError
from crilink.fix import actions as A
from crilink.fix.apply import apply_plan
from crilink.fix.journal import read_journal
from crilink.fix.result import Status
from crilink.fix.undo import undo_journal


def manifest(root: Path) -> str:
    """type, link text, mode, owner and content hash of every entry under ``root``."""
    out = subprocess.run(
        "find . -printf '%p %y %l %m %U %G %s\\n' | sort; "
        "find . -type f -print0 | sort -z | xargs -0r sha256sum",
        shell=True, cwd=root, capture_output=True, text=True, check=True)
    return out.stdout


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "l").symlink_to("/a/b")
    (root / "a" / "rm").symlink_to("gone")
    (root / "a" / "f").write_text("old")
    (root / "a" / "f").chmod(0o640)
    (root / "snap" / "1" / "fs").mkdir(parents=True)
    (root / "snap" / "1" / "fs" / "x").write_bytes(b"x" * 10000)
    return root


def full_plan() -> list[A.Action]:
    return [A.replace_symlink("/a/l", "/a/b", "b"), A.create_symlink("/a/new", "x"),
            A.remove_symlink("/a/rm", "gone"), A.write_file("/a/f", b"new"),
            A.write_file("/a/g", b"gg", mode=0o600), A.remove_file("/a/f2"),
            *A.quarantine("/snap/1", "S1"), A.make_dir("/a/d")]


def test_apply_then_undo_restores_exactly(tree: Path, tmp_path: Path) -> None:
    (tree / "a" / "f2").write_text("to be removed")
    before = manifest(tree)
    res = apply_plan(str(tree), full_plan(), tmp_path / "j.jsonl", "test")
    assert [o.status for o in res.outcomes] == [Status.DONE] * len(res.outcomes), res.outcomes
    assert (tree / "a" / "l").readlink().as_posix() == "b"
    assert (tree / "a" / "f").read_text() == "new"
    assert (tree / "a" / "f").stat().st_mode & 0o777 == 0o640  # mode kept from the old file
    assert (tree / ".crilink-quarantine" / "S1" / "snap%2F1" / "fs" / "x").is_file()
    assert manifest(tree) != before
    undo = undo_journal(tmp_path / "j.jsonl", tmp_path / "u.jsonl")
    assert undo.ok, undo.outcomes
    assert manifest(tree) == before
    again = undo_journal(tmp_path / "j.jsonl", tmp_path / "u2.jsonl")
    assert {o.status for o in again.outcomes} == {Status.ALREADY}
    assert manifest(tree) == before


def test_undo_of_undo_redoes(tree: Path, tmp_path: Path) -> None:
    apply_plan(str(tree), full_plan()[:4], tmp_path / "j.jsonl", "test")
    after = manifest(tree)
    undo_journal(tmp_path / "j.jsonl", tmp_path / "u.jsonl")
    redo = undo_journal(tmp_path / "u.jsonl", tmp_path / "r.jsonl")
    assert redo.ok
    assert manifest(tree) == after


def test_stale_plan_is_skipped(tree: Path, tmp_path: Path) -> None:
    res = apply_plan(str(tree), [A.replace_symlink("/a/l", "/elsewhere", "b")],
                     tmp_path / "j.jsonl", "test")
    assert res.outcomes[0].status == Status.SKIPPED
    assert "changed since the plan" in res.outcomes[0].reason
    assert (tree / "a" / "l").readlink().as_posix() == "/a/b"


def test_rerun_converges(tree: Path, tmp_path: Path) -> None:
    apply_plan(str(tree), full_plan(), tmp_path / "j1.jsonl", "test")
    again = apply_plan(str(tree), full_plan()[:5], tmp_path / "j2.jsonl", "test")
    assert {o.status for o in again.outcomes} == {Status.ALREADY}


def test_undo_refuses_changed_node(tree: Path, tmp_path: Path) -> None:
    apply_plan(str(tree), full_plan()[:1], tmp_path / "j.jsonl", "test")
    (tree / "a" / "l").unlink()
    (tree / "a" / "l").symlink_to("somebody-else")
    undo = undo_journal(tmp_path / "j.jsonl", tmp_path / "u.jsonl")
    assert [o.status for o in undo.outcomes] == [Status.REFUSED]
    assert "somebody-else" in undo.outcomes[0].reason
    assert (tree / "a" / "l").readlink().as_posix() == "somebody-else"


def test_purge_frees_bytes_and_is_irreversible(tree: Path, tmp_path: Path) -> None:
    q = A.quarantine_path("/snap/1", "S1")
    plan = [*A.quarantine("/snap/1", "S1"), A.purge_dir(q)]
    res = apply_plan(str(tree), plan, tmp_path / "j.jsonl", "gc")
    assert res.ok and res.bytes_freed >= 10000
    assert not (tree / q.lstrip("/")).exists()
    undo = undo_journal(tmp_path / "j.jsonl", tmp_path / "u.jsonl")
    statuses = [o.status for o in undo.outcomes]
    assert statuses[0] == Status.IRREVERSIBLE
    assert Status.REFUSED in statuses  # the move cannot come back: its dir was purged
    assert not (tree / "snap" / "1").exists()


def test_purge_only_below_quarantine() -> None:
    with pytest.raises(ValueError, match="quarantine"):
        A.purge_dir("/snap/1")


def test_torn_last_line_is_tolerated(tree: Path, tmp_path: Path) -> None:
    j = tmp_path / "j.jsonl"
    apply_plan(str(tree), full_plan()[:3], j, "test")
    data = j.read_bytes()
    j.write_bytes(data[:-20])  # the end record of the last action, torn mid-write
    log = read_journal(j)
    assert log.torn
    assert log.entries[-1].status == Status.PENDING
    undo = undo_journal(j, tmp_path / "u.jsonl")
    assert undo.ok, undo.outcomes
    assert (tree / "a" / "l").readlink().as_posix() == "/a/b"
    assert (tree / "a" / "rm").readlink().as_posix() == "gone"


def test_damaged_middle_line_is_an_error(tree: Path, tmp_path: Path) -> None:
    j = tmp_path / "j.jsonl"
    apply_plan(str(tree), full_plan()[:3], j, "test")
    lines = j.read_bytes().split(b"\n")
    lines[2] = b"{garbage"
    j.write_bytes(b"\n".join(lines))
    with pytest.raises(JournalError, match="line 3"):
        read_journal(j)


def test_journal_never_overwritten(tree: Path, tmp_path: Path) -> None:
    j = tmp_path / "j.jsonl"
    j.write_text("precious")
    with pytest.raises(JournalError, match="never overwritten"):
        apply_plan(str(tree), full_plan()[:1], j, "test")
    assert j.read_text() == "precious"


def test_undo_checks_root_identity(tree: Path, tmp_path: Path) -> None:
    apply_plan(str(tree), full_plan()[:1], tmp_path / "j.jsonl", "test")
    tree.rename(tmp_path / "moved")
    (tmp_path / "root").mkdir()
    with pytest.raises(JournalError, match="not the directory the journal"):
        undo_journal(tmp_path / "j.jsonl", tmp_path / "u.jsonl")


class Crash(BaseException):
    """Stands in for a kill at a precise point (the real kill -9 is an integration test)."""


@pytest.mark.parametrize("phase", ["intent", "changed"])
@pytest.mark.parametrize("at", [1, 4])
def test_crash_then_undo_converges(tree: Path, tmp_path: Path, phase: str, at: int) -> None:
    before = manifest(tree)

    def hook(seq: int, where: str) -> None:
        if seq == at and where == phase:
            raise Crash

    with pytest.raises(Crash):
        apply_plan(str(tree), full_plan(), tmp_path / "j.jsonl", "test", hook=hook)
    log = read_journal(tmp_path / "j.jsonl")
    assert log.entries[-1].status == Status.PENDING
    undo = undo_journal(tmp_path / "j.jsonl", tmp_path / "u.jsonl")
    assert undo.ok, undo.outcomes
    assert manifest(tree) == before


def test_records_are_json_lines_with_root_identity(tree: Path, tmp_path: Path) -> None:
    j = tmp_path / "j.jsonl"
    apply_plan(str(tree), full_plan()[:1], j, "test")
    recs = [json.loads(line) for line in j.read_text().splitlines()]
    assert [r["rec"] for r in recs] == ["header", "intent", "end"]
    st = tree.stat()
    assert recs[1]["root"] == {"path": str(tree), "dev": st.st_dev, "ino": st.st_ino}
    assert recs[1]["before"] == {"type": "symlink", "text": "/a/b", "uid": 0, "gid": 0}
    assert recs[1]["after"] == {"type": "symlink", "text": "b", "uid": 0, "gid": 0}


def test_swapped_parent_is_never_followed(tree: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "l").symlink_to("/a/b")
    (tree / "a").rename(tree / "a.real")
    (tree / "a").symlink_to(outside)
    res = apply_plan(str(tree), [A.replace_symlink("/a/l", "/a/b", "b"),
                                 A.create_symlink("/a/new", "x")], tmp_path / "j.jsonl", "test")
    assert {o.status for o in res.outcomes} == {Status.SKIPPED}
    assert [p.name for p in outside.iterdir()] == ["l"]
    assert (outside / "l").readlink().as_posix() == "/a/b"


def test_crash_leaving_a_temp_name_is_cleaned_by_undo(tree: Path, tmp_path: Path) -> None:
    before = manifest(tree)

    def hook(seq: int, where: str) -> None:
        if where == "intent":  # what a kill between symlink(tmp) and rename leaves behind
            tmp = read_journal(tmp_path / "j.jsonl").entries[-1].tmp
            (tree / "a" / tmp).symlink_to("b")
            raise Crash

    with pytest.raises(Crash):
        apply_plan(str(tree), full_plan()[:1], tmp_path / "j.jsonl", "test", hook=hook)
    assert any(n.startswith(A.TMP_PREFIX) for n in (p.name for p in (tree / "a").iterdir()))
    assert undo_journal(tmp_path / "j.jsonl", tmp_path / "u.jsonl").ok
    assert manifest(tree) == before


def _undo_json_lines(path: Path, recs: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    path.chmod(0o600)
    return path


# (what is wrong, how a valid applied journal is edited): every one is exit 6 with a message
_MALFORMED = {
    "dotdot path": lambda r: r["action"].update(path="/../../outside/l"),
    "unnormalised path": lambda r: r["action"].update(path="//a/l"),
    "int path": lambda r: r["action"].update(path=5),
    "action a list": lambda r: r.update(action=[]),
    "seq infinity": lambda r: r.update(seq=float("inf")),
    "seq a bool": lambda r: r.update(seq=True),
    "bad base64": lambda r: r["before"].update(content_b64="!!!notb64"),
    "content not matching sha": lambda r: r["before"].update(content_b64="eHl6"),
    "negative uid": lambda r: r["before"].update(uid=-5),
    "uid -1 as 2**32-1": lambda r: r["before"].update(gid=2**32 - 1),
    "unknown state type": lambda r: r["after"].update(type="fifo"),
    "state of the wrong type": lambda r: r.update(after={"type": "symlink", "text": "x"}),
    "unknown state key": lambda r: r["before"].update(colour="red"),
    "tmp with a slash": lambda r: r.update(tmp=".crilink-tmp-ab/../../x"),
    "relative root": lambda r: r["root"].update(path="root"),
    "root dev a string": lambda r: r["root"].update(dev="1"),
}


@pytest.mark.parametrize("edit", _MALFORMED.values(), ids=_MALFORMED.keys())
def test_malformed_journal_is_a_journal_error_and_nothing_is_written(
        tree: Path, tmp_path: Path, edit: object) -> None:
    j = tmp_path / "j.jsonl"
    apply_plan(str(tree), [A.write_file("/a/f", b"new", uid=0, gid=0)], j, "test")
    recs = [json.loads(line) for line in j.read_text().splitlines()]
    assert callable(edit)
    edit(recs[1])  # the intent record
    bad = _undo_json_lines(tmp_path / "bad.jsonl", recs)
    before = manifest(tree)
    with pytest.raises(JournalError, match=r"line 2: .*damaged or was edited"):
        undo_journal(bad, tmp_path / "u.jsonl")
    assert not (tmp_path / "u.jsonl").exists()
    assert manifest(tree) == before


def test_end_record_without_intent_or_status_is_a_journal_error(tmp_path: Path) -> None:
    head = {"rec": "header", "version": 1, "command": "t"}
    for end in ({"rec": "end", "seq": 1, "status": "done"},
                {"rec": "end", "seq": 1, "status": "pending"},
                {"rec": "end", "seq": 1, "status": []}):
        with pytest.raises(JournalError, match=r"line 2|without an intent"):
            read_journal(_undo_json_lines(tmp_path / "j.jsonl", [head, end]))


def test_failed_step_removes_its_temp_file(tree: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "fchown", refuse)  # e.g. an id the filesystem cannot map
    res = apply_plan(str(tree), [A.write_file("/a/f", b"new", uid=1234, gid=1234)],
                     tmp_path / "j.jsonl", "test")
    assert [o.status for o in res.outcomes] == [Status.FAILED]
    assert (tree / "a" / "f").read_text() == "old"
    assert not [p for p in (tree / "a").iterdir() if p.name.startswith(A.TMP_PREFIX)]


@pytest.mark.parametrize("how", ["group-writable", "world-writable", "other owner"])
def test_undo_refuses_an_untrusted_journal_file(tree: Path, tmp_path: Path, how: str) -> None:
    j = tmp_path / "j.jsonl"
    apply_plan(str(tree), [A.replace_symlink("/a/l", "/a/b", "b")], j, "test")
    if how == "other owner":
        if os.geteuid() != 0:
            pytest.skip("chown needs root")
        os.chown(j, 1234, 1234)
    else:
        j.chmod(0o620 if how == "group-writable" else 0o602)
    with pytest.raises(JournalError, match="refusing it"):
        undo_journal(j, tmp_path / "u.jsonl")
    assert not (tmp_path / "u.jsonl").exists()
    assert (tree / "a" / "l").readlink().as_posix() == "b"


def test_rewrite_keeps_the_link_owner_and_undo_restores_it(tree: Path, tmp_path: Path) -> None:
    os.chown(tree / "a" / "l", 1234, 5678, follow_symlinks=False)  # e.g. a userns-owned tree
    before = manifest(tree)
    j = tmp_path / "j.jsonl"
    res = apply_plan(str(tree), [A.replace_symlink("/a/l", "/a/b", "b")], j, "test")
    assert res.ok, res.outcomes
    st = os.lstat(tree / "a" / "l")
    assert (st.st_uid, st.st_gid) == (1234, 5678)
    assert (tree / "a" / "l").readlink().as_posix() == "b"
    intent = json.loads(j.read_text().splitlines()[1])
    assert intent["after"] == {"type": "symlink", "text": "b", "uid": 1234, "gid": 5678}
    assert undo_journal(j, tmp_path / "u.jsonl").ok
    assert manifest(tree) == before


def test_undo_restores_the_owner_of_a_removed_link(tree: Path, tmp_path: Path) -> None:
    os.chown(tree / "a" / "rm", 1234, 5678, follow_symlinks=False)
    before = manifest(tree)
    j = tmp_path / "j.jsonl"
    assert apply_plan(str(tree), [A.remove_symlink("/a/rm", "gone")], j, "test").ok
    assert undo_journal(j, tmp_path / "u.jsonl").ok
    assert manifest(tree) == before


def test_one_name_of_a_hardlinked_symlink_is_not_replaced(tree: Path, tmp_path: Path) -> None:
    os.link(tree / "a" / "l", tree / "l2", follow_symlinks=False)  # one symlink, two names
    res = apply_plan(str(tree), [A.replace_symlink("/a/l", "/a/b", "b")], tmp_path / "j.jsonl",
                     "test")
    assert [o.status for o in res.outcomes] == [Status.SKIPPED]
    assert "hard links" in res.outcomes[0].reason
    assert os.lstat(tree / "a" / "l").st_ino == os.lstat(tree / "l2").st_ino
    assert (tree / "a" / "l").readlink().as_posix() == "/a/b"
    assert not [p for p in (tree / "a").iterdir() if p.name.startswith(A.TMP_PREFIX)]
