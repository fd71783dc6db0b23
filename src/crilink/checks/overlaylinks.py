"""The overlay drivers' link scheme, read and checked: ``l/`` short links, ``link`` and ``lower``.

Shared by containers-storage's ``overlay`` driver and Docker's ``overlay2``; both lay a driver
directory out the same way:

- ``<driver>/<id>/diff/``: the layer's content; ``<driver>/<id>/link``: its short name, 26
  characters of RFC 4648 base32 (``A-Z2-7``), no newline;
- ``<driver>/<id>/lower``: the layers below, ``l/<short>`` joined by ``:``, nearest parent
  first (absent for a base layer);
- ``<driver>/l/<short>``: a symlink whose text is ``../<id>/diff``.

:func:`read_overlay` takes a snapshot (readlink only, never follows a link; ``l`` may be a
file; names need not be UTF-8: they are ``os.fsdecode`` strings). The checks are pure
functions of that snapshot plus what the caller's records know (:class:`Expectations`), so the
Docker adapter passes its own known ids, chains and lower limit. Paths in findings are relative
to the store root (``overlay/l/ABC``).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from crilink.errors import CorruptInputError, InputError
from crilink.model import Finding, Severity
from crilink.pathres.files import open_regular, read_regular

__all__ = [
    "CSTORAGE_MAX_LOWERS",
    "DOCKER_MAX_LOWERS",
    "SHORT_NAME_ALPHABET",
    "SHORT_NAME_LEN",
    "SHORT_NAME_MAX",
    "Expectations",
    "LayerDir",
    "LinkDirState",
    "LowerVerdict",
    "OverlayState",
    "ShortLink",
    "check_layer_dirs",
    "check_links",
    "driver_dir_link",
    "link_target",
    "linked_driver_finding",
    "lower_problems",
    "lower_text",
    "owners",
    "parse_lower",
    "read_overlay",
    "resolves_to",
    "target_layer",
    "valid_short_name",
]

SHORT_NAME_LEN = 26
SHORT_NAME_MAX = 64  # what a link file may hold and still be taken as a name
LINK_READ_LIMIT = 4096  # a link file is 26 bytes; more is read only to say it is malformed
LOWER_READ_LIMIT = 1 << 20  # 500 lowers of l/<26>, or absolute paths of additional stores
SHORT_NAME_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"  # base32, as the drivers' generateID
LINK_DIR = "l"
LINK_FILE = "link"
LOWER_FILE = "lower"
DIFF_DIR = "diff"
LOWER_SEP = ":"
LOWER_PREFIX = LINK_DIR + "/"
DOCKER_MAX_LOWERS = 128  # moby daemon/graphdriver/overlay2: maxDepth
CSTORAGE_MAX_LOWERS = 500  # containers/storage drivers/overlay: maxDepth
# entries of a driver dir that are not layers
NOT_LAYERS = frozenset({LINK_DIR, "staging", "tempdirs"})
_TARGET_RE = re.compile(r"\A\.\./([^/]+)/diff/?\Z")
# lenient: the drivers mint 26 base32 (Docker) or [A-Z0-9] (containers-storage) characters;
# anything a file name, an overlay option or a lower entry cannot carry is refused
_SHORT_NAME_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.-]*\Z")


class LinkDirState(StrEnum):
    DIR = "dir"
    MISSING = "missing"
    NOT_A_DIR = "not_a_directory"


@dataclass(frozen=True, slots=True)
class LayerDir:
    """One ``<driver>/<id>/`` dir: ``link``/``lower`` text (``None``: no such file; ``""``:
    not a readable regular file). ``link_size``/``lower_size``: the file's size in bytes,
    when it was larger than what was read (its text is then cut; a cut link is never a valid
    name)."""

    id: str
    link: str | None
    lower: str | None
    has_diff: bool
    link_size: int | None = None
    lower_size: int | None = None


@dataclass(frozen=True, slots=True)
class ShortLink:
    """One ``l/`` entry: ``target`` is the link text, ``None`` when it is not a symlink."""

    name: str
    target: str | None


@dataclass(frozen=True, slots=True)
class OverlayState:
    """A snapshot of one driver dir. ``driver_dir`` is relative to the store root."""

    driver_dir: str
    layers: Mapping[str, LayerDir]
    short_links: Mapping[str, ShortLink]
    link_dir: LinkDirState = LinkDirState.DIR

    def path(self, *parts: str) -> str:
        return "/".join((self.driver_dir, *parts))


@dataclass(frozen=True, slots=True)
class Expectations:
    """What the runtime's records say. ``chains[id]``: the ids below ``id``, nearest first
    (given for every layer whose parents are known); ``skip``: ids whose links are not
    checked (incomplete layers, about to be deleted); ``max_lowers``: the driver's limit."""

    chains: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    skip: frozenset[str] = frozenset()
    max_lowers: int = CSTORAGE_MAX_LOWERS
    known: frozenset[str] | None = None  # dirs a record knows; None: every dir counts

    def claimants(self, ids: list[str]) -> list[str]:
        """Of the dirs whose ``link`` names one short name, those that may own it: the ones a
        record knows (sorted), when ``known`` is given; a dir no record knows never does."""
        if self.known is None:
            return sorted(ids)
        return sorted(i for i in ids if i in self.known)


def link_target(layer_id: str) -> str:
    """The text of a correct ``l/`` symlink for ``layer_id``."""
    return f"../{layer_id}/{DIFF_DIR}"


def lower_text(names: list[str] | tuple[str, ...]) -> str:
    """A ``lower`` file's content for these short names, nearest parent first."""
    return LOWER_SEP.join(LOWER_PREFIX + n for n in names)


def target_layer(target: str | None) -> str | None:
    """The layer id an ``l/`` link text names in the ``../<id>/diff`` form, else ``None``."""
    if target is None:
        return None
    m = _TARGET_RE.match(target)
    return m.group(1) if m and m.group(1) not in ("..", ".") else None


def valid_short_name(name: str | None) -> bool:
    """Usable as an ``l/`` entry name and a ``lower`` entry: 1 to 64 of ``A-Za-z0-9_.-``,
    starting with a letter or digit, no ``..`` (the drivers mint 26 base32 or ``A-Z0-9``
    characters; ``:``, ``/``, whitespace and over-long names are refused)."""
    if not name or len(name) > SHORT_NAME_MAX or ".." in name:
        return False
    return _SHORT_NAME_RE.match(name) is not None


def parse_lower(text: str) -> list[str | None]:
    """The short names of a ``lower`` text; ``None`` for an entry not of the ``l/<name>`` form.
    Absolute entries (additional image stores) are returned as they are."""
    out: list[str | None] = []
    for entry in text.split(LOWER_SEP):
        if entry.startswith("/"):
            out.append(entry)
        elif entry.startswith(LOWER_PREFIX) and valid_short_name(entry[len(LOWER_PREFIX):]):
            out.append(entry[len(LOWER_PREFIX):])
        else:
            out.append(None)
    return out


# ---------------------------------------------------------------- reading

def _read_small(dir_fd: int, name: str, limit: int) -> tuple[str | None, int | None]:
    """(text of at most ``limit`` bytes, the file's size when it is larger); ``None`` text: no
    such file; ``""``: a symlink, FIFO, device or unreadable file (no usable file)."""
    try:
        data = read_regular(name, name, limit=limit, dir_fd=dir_fd)
    except CorruptInputError:
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            return "", None
        if not stat.S_ISREG(st.st_mode):
            return "", None
        with open_regular(name, name, dir_fd=dir_fd) as f:
            return os.fsdecode(f.read(limit)), st.st_size
    except InputError as err:
        if isinstance(err.__cause__, FileNotFoundError | NotADirectoryError):
            return None, None
        return "", None
    return os.fsdecode(data), None


def _read_layer(driver_fd: int, name: bytes) -> LayerDir:
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=driver_fd)
    try:
        try:
            has_diff = stat.S_ISDIR(os.stat(DIFF_DIR, dir_fd=fd, follow_symlinks=False).st_mode)
        except FileNotFoundError:
            has_diff = False
        link, link_size = _read_small(fd, LINK_FILE, LINK_READ_LIMIT)
        lower, lower_size = _read_small(fd, LOWER_FILE, LOWER_READ_LIMIT)
        return LayerDir(os.fsdecode(name), link, lower, has_diff, link_size, lower_size)
    finally:
        os.close(fd)


def _read_links(driver_fd: int) -> tuple[LinkDirState, dict[str, ShortLink]]:
    try:
        fd = os.open(LINK_DIR, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=driver_fd)
    except FileNotFoundError:
        return LinkDirState.MISSING, {}
    except (NotADirectoryError, OSError):
        return LinkDirState.NOT_A_DIR, {}
    links: dict[str, ShortLink] = {}
    try:
        with os.scandir(fd) as it:
            for entry in it:
                raw = os.fsencode(entry.name)
                target = (os.fsdecode(os.readlink(raw, dir_fd=fd))
                          if entry.is_symlink() else None)
                links[entry.name] = ShortLink(entry.name, target)
    finally:
        os.close(fd)
    return LinkDirState.DIR, links


def driver_dir_link(store_root: str | os.PathLike[str], driver_dir: str) -> str | None:
    """The link text when ``store_root/driver_dir`` is a symlink (else ``None``)."""
    path = Path(store_root) / driver_dir
    return str(path.readlink()) if path.is_symlink() else None


def linked_driver_finding(store_root: str | os.PathLike[str], driver_dir: str) -> list[Finding]:
    """An ``info`` finding ``relocated_driver_dir`` when the driver dir is a symlink."""
    text = driver_dir_link(store_root, driver_dir)
    if text is None:
        return []
    return [Finding("relocated_driver_dir", Severity.INFO, driver_dir, link=text,
                    message="a symlink: read through it (the operator's layout); "
                    "fix and gc refuse to write through it")]


def read_overlay(store_root: str, driver_dir: str,
                 progress: Callable[[int], None] | None = None) -> OverlayState:
    """Snapshot ``store_root/driver_dir`` (layer dirs, link/lower files, ``l/``)."""
    # a driver dir that is a symlink (an operator relocated it) is followed for reading:
    # it is the operator's own layout; repairs refuse it (driver_dir_link)
    driver_fd = os.open(Path(store_root) / driver_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        state, links = _read_links(driver_fd)
        layers: dict[str, LayerDir] = {}
        with os.scandir(driver_fd) as it:
            for entry in it:
                if entry.name in NOT_LAYERS or not entry.is_dir(follow_symlinks=False):
                    continue
                layers[entry.name] = _read_layer(driver_fd, os.fsencode(entry.name))
                if progress is not None and len(layers) % 256 == 0:
                    progress(len(layers))
    finally:
        os.close(driver_fd)
    return OverlayState(driver_dir, layers, links, state)


# ---------------------------------------------------------------- checks

def owners(state: OverlayState) -> dict[str, list[str]]:
    """short name -> ids of the layers whose ``link`` file names it."""
    out: dict[str, list[str]] = {}
    for layer in state.layers.values():
        if valid_short_name(layer.link):
            assert layer.link is not None  # for mypy: valid_short_name(None) is False
            out.setdefault(layer.link, []).append(layer.id)
    return out


def resolves_to(state: OverlayState, name: str) -> str | None:
    """The layer id ``l/<name>`` leads to, when it is a correct link to a layer with diff/."""
    link = state.short_links.get(name)
    if link is None or state.link_dir is not LinkDirState.DIR:
        return None
    lid = target_layer(link.target)
    layer = state.layers.get(lid) if lid else None
    return lid if layer is not None and layer.has_diff else None


def _short_link_finding(state: OverlayState, link: ShortLink,
                        own: Mapping[str, list[str]], exp: Expectations) -> Finding | None:
    path = state.path(LINK_DIR, link.name)
    named_by = exp.claimants(own.get(link.name, []))
    lid = target_layer(link.target)
    if link.target is None or lid is None:
        why = "not_a_symlink" if link.target is None else "not_a_layer_diff"
        return Finding("wrong_short_link", Severity.ERROR, path, link=link.target,
                       id=named_by[0] if named_by else None,
                       message="l/ entry is not a ../<id>/diff symlink",
                       detail={"reason": why})
    if named_by and lid not in named_by:
        return Finding("wrong_short_link", Severity.ERROR, path, link=link.target,
                       id=named_by[0], message=f"expected {link_target(named_by[0])}",
                       detail={"reason": "other_layer", "points_at": lid})
    layer = state.layers.get(lid)
    if layer is None or not layer.has_diff:
        return Finding("dangling_short_link", Severity.WARNING, path, link=link.target, id=lid,
                       message="its layer dir is gone" if layer is None else "no diff/",
                       detail={"reason": "missing_layer_dir" if layer is None else "missing_diff"})
    return None


def _layer_link_finding(state: OverlayState, layer: LayerDir) -> Finding | None:
    if not valid_short_name(layer.link):
        reason = "absent" if layer.link is None else ("empty" if not layer.link else "malformed")
        return Finding("missing_link_file", Severity.ERROR, state.path(layer.id, LINK_FILE),
                       id=layer.id, message=f"link file {reason}", detail={"reason": reason})
    assert layer.link is not None  # for mypy: checked by valid_short_name
    if layer.link in state.short_links and state.link_dir is LinkDirState.DIR:
        return None
    return Finding("missing_short_link", Severity.ERROR, state.path(LINK_DIR, layer.link),
                   id=layer.id, link=link_target(layer.id),
                   message="l/ is not a directory" if state.link_dir is LinkDirState.NOT_A_DIR
                   else "short link gone", detail={"link_dir": str(state.link_dir)})


@dataclass(frozen=True, slots=True)
class LowerVerdict:
    """Why a ``lower`` file is bad; empty ``reasons`` means it is fine."""

    reasons: tuple[str, ...] = ()
    unresolved: tuple[str, ...] = ()
    lowers: int = 0

    def detail(self) -> dict[str, object]:
        return {"reason": list(self.reasons), "unresolved": list(self.unresolved),
                "lowers": self.lowers}


def lower_problems(state: OverlayState, layer: LayerDir, exp: Expectations) -> LowerVerdict:
    """Judge ``layer``'s ``lower`` against ``l/`` and, where known, its parent chain."""
    chain = exp.chains.get(layer.id)
    if layer.lower is None:
        return LowerVerdict(("missing",), (), 0) if chain else LowerVerdict()
    names = parse_lower(layer.lower) if layer.lower else []
    reasons: list[str] = []
    if not layer.lower:
        reasons.append("empty")
    if any(n is None for n in names):
        bare = any(e in (LINK_DIR, LOWER_PREFIX) for e in layer.lower.split(LOWER_SEP))
        reasons.append("bare_l" if bare else "malformed_entry")
    if len(names) > exp.max_lowers:
        reasons.append("too_many")
    rel = [n for n in names if n is not None and not n.startswith("/")]
    unresolved = tuple(n for n in rel if resolves_to(state, n) is None)
    if unresolved:
        reasons.append("unresolved")
    elif chain is not None and not reasons and [resolves_to(state, n) for n in rel] != list(chain):
        reasons.append("not_the_parent_chain")
    return LowerVerdict(tuple(reasons), unresolved, len(names))


def check_links(state: OverlayState, exp: Expectations) -> Iterator[Finding]:
    """Findings about ``l/`` entries, ``link`` files and ``lower`` files."""
    own = owners(state)
    for link in sorted(state.short_links.values(), key=lambda s: s.name):
        finding = _short_link_finding(state, link, own, exp)
        if finding is not None:
            yield finding
    for layer in sorted(state.layers.values(), key=lambda x: x.id):
        if layer.id in exp.skip or not layer.has_diff:
            continue
        finding = _layer_link_finding(state, layer)
        if finding is not None:
            yield finding
        verdict = lower_problems(state, layer, exp)
        if verdict.reasons:
            yield Finding("bad_lower", Severity.ERROR, state.path(layer.id, LOWER_FILE),
                          id=layer.id, message=", ".join(verdict.reasons),
                          detail=verdict.detail())


def check_layer_dirs(state: OverlayState, known: frozenset[str],
                     size_of: Callable[[str], int | None] | None = None) -> Iterator[Finding]:
    """``orphan_layer_dir`` (a dir no record knows) and ``missing_layer_dir`` (a record
    without a dir, or without ``diff/``). ``size_of(store-relative path)`` gives bytes."""
    for lid in sorted(set(state.layers) - known):
        path = state.path(lid)
        yield Finding("orphan_layer_dir", Severity.WARNING, path, id=lid,
                      bytes=size_of(path) if size_of else None,
                      message="no layer record knows this dir")
    for lid in sorted(known):
        layer = state.layers.get(lid)
        if layer is None or not layer.has_diff:
            yield Finding("missing_layer_dir", Severity.ERROR, state.path(lid), id=lid,
                          message="layer dir gone" if layer is None else "diff/ gone",
                          detail={"reason": "missing_dir" if layer is None else "missing_diff"})
