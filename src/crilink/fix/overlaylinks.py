"""Repair plan for the overlay drivers' link scheme (pure: a snapshot in, actions out).

What it mends, in this order, repeated on a simulated copy of the snapshot until a pass
plans nothing more (a fixed point):

1. a lost ``link`` file (absent, empty, malformed) is rewritten with, in order of preference:
   the name of a surviving ``l/`` entry that points at the layer; the name the layer's
   descendants still use for it in their ``lower`` files (by position in the parent chain,
   when that name resolves nowhere and no other layer claims it); else a freshly minted name;
2. ``l/``: a missing entry is created from its ``link`` file; an entry a layer claims but that
   points elsewhere is replaced; an entry no layer claims that points out of the scheme or at a
   layer dir that is gone is removed. ``l/`` itself is never removed or replaced;
3. a bad ``lower`` is rewritten from the parent chain the records give, once every layer of
   the chain has a usable short name.

What it cannot mend goes into ``manual`` with the reason (``l`` not a directory, an ``l/``
entry that is not a symlink, a bad ``lower`` with no known chain, more lowers than allowed).
Paths in actions are in-root paths relative to the store root (``/overlay/l/ABC``).
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace

from crilink.checks.overlaylinks import (
    LINK_DIR,
    LINK_FILE,
    LOWER_FILE,
    SHORT_NAME_LEN,
    Expectations,
    LayerDir,
    LinkDirState,
    OverlayState,
    ShortLink,
    link_target,
    lower_problems,
    lower_text,
    owners,
    parse_lower,
    target_layer,
    valid_short_name,
)
from crilink.fix import actions as A

__all__ = ["LINK_FILE_MODE", "MAX_PASSES", "RepairPlan", "mint_short_name", "plan_link_repair"]

MAX_PASSES = 8
LINK_FILE_MODE = 0o644  # what both drivers write link and lower files with
_MINT_BYTES = (SHORT_NAME_LEN * 5 + 7) // 8

Minter = Callable[[Collection[str]], str]


def mint_short_name(taken: Collection[str]) -> str:
    """A new random short name (base32, 26 characters) that is not in ``taken``."""
    while True:
        name = base64.b32encode(secrets.token_bytes(_MINT_BYTES)).decode("ascii")[:SHORT_NAME_LEN]
        if name not in taken:
            return name


@dataclass(frozen=True, slots=True)
class RepairPlan:
    """Actions in execution order, what needs a human, and the names minted (id -> name)."""

    actions: tuple[A.Action, ...] = ()
    manual: tuple[str, ...] = ()
    minted: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class _Work:
    state: OverlayState
    exp: Expectations
    mint: Minter
    actions: list[A.Action] = field(default_factory=list)
    manual: dict[str, str] = field(default_factory=dict)
    minted: dict[str, str] = field(default_factory=dict)

    seen: set[tuple[str, str, A.State]] = field(default_factory=set)
    stuck: bool = False

    def add(self, action: A.Action) -> bool:
        """Plan ``action`` unless the same change was planned before (a plan that would
        repeat itself never converges: it stops and says so)."""
        key = (str(action.kind), action.path, action.after)
        if key in self.seen:
            self.manual[action.path] = (f"{action.kind} planned twice ({action.reason}); "
                                        "stopped: mend this by hand")
            self.stuck = True
            return False
        self.seen.add(key)
        self.actions.append(action)
        return True

    def mine(self, lid: str) -> bool:
        """Whether the plan may touch dir ``lid``: a record knows it (orphans are gc's)."""
        return self.exp.known is None or lid in self.exp.known

    def ipath(self, *parts: str) -> str:
        return "/" + self.state.path(*parts)

    def set_layer(self, layer: LayerDir) -> None:
        self.state = replace(self.state, layers={**self.state.layers, layer.id: layer})

    def set_link(self, name: str, target: str | None) -> None:
        links = dict(self.state.short_links)
        if target is None:
            links.pop(name, None)
        else:
            links[name] = ShortLink(name, target)
        self.state = replace(self.state, short_links=links)


def _file_state(text: str | None) -> A.State:
    return A.ABSENT if text is None else A.State.file(text.encode("utf-8", "surrogateescape"))


def _write(w: _Work, path: str, text: str, old: str | None, old_size: int | None,
           reason: str) -> bool:
    """Plan writing ``text`` over a link or lower file that held ``old`` (cut when
    ``old_size`` is given). A file too big to journal is left to a human: the simulation
    still goes on with ``text``, so the rest of the plan is the same either way."""
    if old_size is not None and old_size > A.MAX_FILE_BYTES:
        w.manual[path] = (f"{old_size:,} bytes, too big to journal: replace its content "
                          f"with {text[:80]!r} by hand (e.g. printf), then run fix again")
        return True
    expect = None if old_size is not None else _file_state(old)  # cut text: no hash to expect
    return w.add(A.write_file(path, text.encode(), mode=LINK_FILE_MODE, expect=expect,
                              reason=reason))


def _alias_for(w: _Work, lid: str, own: dict[str, list[str]]) -> str | None:
    for link in sorted(w.state.short_links.values(), key=lambda s: s.name):
        if link.name not in own and valid_short_name(link.name) \
                and target_layer(link.target) == lid:
            return link.name
    return None


def _name_from_lowers(w: _Work, lid: str, own: dict[str, list[str]]) -> str | None:
    found: set[str] = set()
    for desc, chain in w.exp.chains.items():
        layer = w.state.layers.get(desc)
        if lid not in chain or layer is None or not layer.lower:
            continue
        names = parse_lower(layer.lower)
        if len(names) != len(chain):
            continue  # a lower of another shape (a name with ':' in it ...) says nothing
        pos = chain.index(lid)
        name = names[pos] if pos < len(names) else None
        if name and valid_short_name(name) and name not in w.state.short_links \
                and name not in own:
            found.add(name)
    return found.pop() if len(found) == 1 else None


def _fix_link_files(w: _Work) -> None:
    for lid in sorted(w.state.layers):
        layer = w.state.layers[lid]
        if lid in w.exp.skip or not layer.has_diff or valid_short_name(layer.link) \
                or not w.mine(lid):
            continue
        own = owners(w.state)
        name = _alias_for(w, lid, own) or _name_from_lowers(w, lid, own)
        why = "from a surviving l/ entry or the descendants' lower files"
        if name is None:
            name = w.mint(set(w.state.short_links) | set(own))
            w.minted[lid] = name
            why = "a new short name (no surviving l/ entry or lower file names it)"
        if not _write(w, w.ipath(lid, LINK_FILE), name, layer.link, layer.link_size,
                      f"restore link file of {lid}: {why}"):
            continue
        w.set_layer(replace(layer, link=name, link_size=None))


def _fix_entry(w: _Work, link: ShortLink, claimed_by: list[str]) -> None:
    path = w.ipath(LINK_DIR, link.name)
    if link.target is None:
        w.manual[path] = "l/ entry is not a symlink: move it away by hand"
        return
    lid = target_layer(link.target)
    if claimed_by:
        want = link_target(claimed_by[0])
        if link.target != want and w.add(A.replace_symlink(
                path, link.target, want, reason=f"short link of {claimed_by[0]}")):
            w.set_link(link.name, want)
        return
    layer = w.state.layers.get(lid) if lid else None
    if (layer is None or not layer.has_diff) and w.add(
            A.remove_symlink(path, link.target, reason="no layer behind it")):
        w.set_link(link.name, None)


def _fix_short_links(w: _Work) -> None:
    if w.state.link_dir is not LinkDirState.DIR:
        w.manual[w.ipath(LINK_DIR)] = f"l is {w.state.link_dir}: make it a directory by hand"
        return
    own = {name: w.exp.claimants(ids) for name, ids in owners(w.state).items()}
    for name in sorted(w.state.short_links):
        claimed_by = own.get(name, [])
        if len(claimed_by) <= 1:
            _fix_entry(w, w.state.short_links[name], claimed_by)
    for name, claimed_by in sorted(own.items()):
        if not claimed_by:
            continue  # only dirs no record knows name it: never point l/ at one
        layer = w.state.layers[claimed_by[0]]
        if len(claimed_by) > 1:
            w.manual[w.ipath(LINK_DIR, name)] = (f"claimed by {len(claimed_by)} layers: "
                                                 f"{', '.join(claimed_by)}")
        elif name not in w.state.short_links and layer.has_diff:
            want = link_target(layer.id)
            if w.add(A.create_symlink(w.ipath(LINK_DIR, name), want,
                                      reason=f"recreate from {layer.id}/link")):
                w.set_link(name, want)


def _chain_names(w: _Work, chain: tuple[str, ...]) -> list[str] | None:
    names = [w.state.layers[c].link if c in w.state.layers else None for c in chain]
    return [n for n in names if n] if all(valid_short_name(n) for n in names) else None


def _fix_lowers(w: _Work) -> None:
    for lid in sorted(w.state.layers):
        layer = w.state.layers[lid]
        if lid in w.exp.skip or not layer.has_diff or not w.mine(lid):
            continue
        verdict = lower_problems(w.state, layer, w.exp)
        if not verdict.reasons:
            continue
        path = w.ipath(lid, LOWER_FILE)
        chain = w.exp.chains.get(lid)
        names = _chain_names(w, chain) if chain else None
        if names is None or len(names) > w.exp.max_lowers:
            w.manual[path] = f"bad lower ({', '.join(verdict.reasons)}) and no usable chain"
            continue
        text = lower_text(names)
        if _write(w, path, text, layer.lower, layer.lower_size,
                  f"rewrite from the parent chain of {lid}"):
            w.set_layer(replace(layer, lower=text, lower_size=None))


def plan_link_repair(state: OverlayState, exp: Expectations,
                     mint: Minter = mint_short_name) -> RepairPlan:
    """The actions that bring ``state`` to a fixed point where the link checks find nothing
    they can mend. Pure: nothing is read or written."""
    w = _Work(state, exp, mint)
    for _ in range(MAX_PASSES):
        before = len(w.actions)
        for step in (_fix_link_files, _fix_short_links, _fix_lowers):
            step(w)
        if len(w.actions) == before or w.stuck:
            break
    else:
        w.manual["/" + state.driver_dir] = (f"no fixed point after {MAX_PASSES} passes: "
                                            "apply this plan, then run fix again")
    manual = tuple(f"{path}: {why}" for path, why in sorted(w.manual.items()))
    return RepairPlan(tuple(w.actions), manual, w.minted)
