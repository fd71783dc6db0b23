"""Carry out one action on a live tree: a dispatch table from action kind to an fd-relative step.

Each step gets the open root, the action, the ``before`` state observed just now, the final
``after`` state and a temporary name, and re-checks the part of ``before`` it depends on
immediately before the change. It returns the bytes it freed (purge) and the state of the
node after the change, observed through the same directory fd it changed (so a path swapped
meanwhile cannot make the re-check look at another directory). It raises
:class:`~crilink.errors.UnsafeTargetError` when the node changed (nothing was done), or
``OSError``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

from crilink.errors import UnsafeTargetError
from crilink.fix.actions import Action, ActionKind, State, StateType
from crilink.fix.ops import (
    Root,
    dir_bytes,
    mounts_below,
    observe,
    open_parent,
    purge_tree,
    rename_noreplace,
)

__all__ = ["STEPS", "run_step"]

Done = tuple[int, State]  # (bytes freed, state observed after the change)
Step = Callable[[Root, Action, State, State, str], Done]


def _expect(dir_fd: int, name: str, want: State, path: str, content: bool = False) -> None:
    now = observe(dir_fd, name, content=content)
    if not now.same_as(want):
        raise UnsafeTargetError(f"{path} changed: expected {want.describe()}, "
                                f"found {now.describe()}")


def _now(dir_fd: int, name: str, after: State) -> State:
    return observe(dir_fd, name, content=after.type == StateType.FILE)


def _text(state: State) -> str:
    assert state.text is not None  # symlink states always carry text (see actions)
    return state.text


def _new_symlink(pfd: int, tmp: str, after: State) -> None:
    """Create the symlink ``tmp`` with ``after``'s text and owner (``fchownat`` with
    ``AT_SYMLINK_NOFOLLOW``, before it takes its real name); removed on any failure."""
    os.symlink(os.fsencode(_text(after)), tmp, dir_fd=pfd)
    try:
        if after.uid is not None or after.gid is not None:
            st = os.lstat(tmp, dir_fd=pfd)
            uid = -1 if after.uid is None else after.uid
            gid = -1 if after.gid is None else after.gid
            if uid not in (-1, st.st_uid) or gid not in (-1, st.st_gid):
                os.chown(tmp, uid, gid, dir_fd=pfd, follow_symlinks=False)
    except BaseException:
        _drop(pfd, tmp)
        raise


def _single_name(dir_fd: int, name: str, path: str) -> None:
    """Refuse to replace one name of a symlink inode that has others (hard links): the
    rename would split them."""
    nlink = os.lstat(name, dir_fd=dir_fd).st_nlink
    if nlink > 1:
        raise UnsafeTargetError(f"{path} is one of {nlink} names of one symlink (hard links); "
                                "replacing it would split them")


def _replace_symlink(root: Root, action: Action, before: State, after: State, tmp: str) -> Done:
    with open_parent(root, action.path) as (pfd, name):
        _new_symlink(pfd, tmp, after)
        try:
            _expect(pfd, name, before, action.path)
            _single_name(pfd, name, action.path)
            os.rename(tmp, name, src_dir_fd=pfd, dst_dir_fd=pfd)
        except BaseException:
            _drop(pfd, tmp)
            raise
        os.fsync(pfd)
        return 0, _now(pfd, name, after)


def _create_symlink(root: Root, action: Action, before: State, after: State, tmp: str) -> Done:
    with open_parent(root, action.path) as (pfd, name):
        _new_symlink(pfd, tmp, after)
        try:
            rename_noreplace(pfd, tmp, pfd, name)
        except BaseException as err:
            _drop(pfd, tmp)
            if isinstance(err, FileExistsError):
                raise UnsafeTargetError(f"{action.path} appeared since the plan") from err
            raise
        os.fsync(pfd)
        return 0, _now(pfd, name, after)


def _remove_entry(root: Root, action: Action, before: State, after: State, tmp: str) -> Done:
    with open_parent(root, action.path) as (pfd, name):
        _expect(pfd, name, before, action.path, content=before.type == StateType.FILE)
        if before.type == StateType.DIR:
            os.rmdir(name, dir_fd=pfd)
        else:
            os.unlink(name, dir_fd=pfd)
        os.fsync(pfd)
        return 0, _now(pfd, name, after)


def _write_tmp_file(pfd: int, tmp: str, after: State) -> None:
    """Create ``tmp`` with ``after``'s content, owner and mode; on any failure it is removed."""
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600, dir_fd=pfd)
    try:
        try:
            data = after.content()
            while data:
                data = data[os.write(fd, data):]
            if after.uid is not None and after.gid is not None:
                os.fchown(fd, after.uid, after.gid)
            if after.mode is not None:
                os.fchmod(fd, after.mode)
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        _drop(pfd, tmp)
        raise


def _drop(pfd: int, tmp: str) -> None:
    """Remove the temporary name ``tmp`` of a step that did not complete."""
    with contextlib.suppress(OSError):
        os.unlink(tmp, dir_fd=pfd)


def _write_file(root: Root, action: Action, before: State, after: State, tmp: str) -> Done:
    with open_parent(root, action.path) as (pfd, name):
        _write_tmp_file(pfd, tmp, after)
        try:
            _expect(pfd, name, before, action.path, content=before.type == StateType.FILE)
            os.rename(tmp, name, src_dir_fd=pfd, dst_dir_fd=pfd)
        except BaseException:
            _drop(pfd, tmp)
            raise
        os.fsync(pfd)
        return 0, _now(pfd, name, after)


def _make_dir(root: Root, action: Action, before: State, after: State, tmp: str) -> Done:
    with open_parent(root, action.path) as (pfd, name):
        os.mkdir(name, 0o700, dir_fd=pfd)
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                     dir_fd=pfd)
        try:
            if after.uid is not None and after.gid is not None:
                os.fchown(fd, after.uid, after.gid)
            os.fchmod(fd, after.mode if after.mode is not None else 0o700)
        finally:
            os.close(fd)
        os.fsync(pfd)
        return 0, _now(pfd, name, after)


def _move_dir(root: Root, action: Action, before: State, after: State, tmp: str) -> Done:
    assert action.dest is not None  # move_dir always has a dest (see actions.move_dir)
    with open_parent(root, action.path) as (sfd, sname), \
            open_parent(root, action.dest) as (dfd, dname):
        _expect(sfd, sname, before, action.path)
        points = mounts_below(sfd, sname) if before.type == StateType.DIR else []
        if points:  # moved into quarantine, it would be purged across the mount
            raise UnsafeTargetError(f"{action.path}: a mount lies under it ({points[0]}); "
                                    "umount it first: not moved")
        try:
            rename_noreplace(sfd, sname, dfd, dname)
        except FileExistsError as err:
            raise UnsafeTargetError(f"{action.dest} exists; not moving {action.path}") from err
        os.fsync(dfd)
        os.fsync(sfd)
        return 0, _now(dfd, dname, after)


def _purge_dir(root: Root, action: Action, before: State, after: State, tmp: str) -> Done:
    with open_parent(root, action.path) as (pfd, name):
        _expect(pfd, name, before, action.path)
        freed = dir_bytes(pfd, name)
        purge_tree(pfd, name)
        os.fsync(pfd)
        return freed, _now(pfd, name, after)


STEPS: dict[ActionKind, Step] = {
    ActionKind.REPLACE_SYMLINK: _replace_symlink,
    ActionKind.CREATE_SYMLINK: _create_symlink,
    ActionKind.REMOVE_SYMLINK: _remove_entry,
    ActionKind.WRITE_FILE: _write_file,
    ActionKind.REMOVE_FILE: _remove_entry,
    ActionKind.MAKE_DIR: _make_dir,
    ActionKind.REMOVE_DIR: _remove_entry,
    ActionKind.MOVE_DIR: _move_dir,
    ActionKind.PURGE_DIR: _purge_dir,
}


def run_step(root: Root, action: Action, before: State, after: State, tmp: str) -> Done:
    """Carry out ``action``; returns (bytes freed by purge_dir or 0, state observed after)."""
    return STEPS[action.kind](root, action, before, after, tmp)
