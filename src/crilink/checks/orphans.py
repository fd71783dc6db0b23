"""Which orphan layer dirs may be removed directly (pure: a snapshot and facts in, verdicts out).

An *orphan* is a driver dir no layer record knows. Removing one is only safe when nothing
still uses it. Two things can:

- the ``lower`` file of another dir names it (through an ``l/`` short link): an overlay mount
  of that dir would lose a layer. A dir that a kept dir's lower uses is kept, and so is every
  orphan that a kept orphan's lower uses in turn (a fixed point, linear in lower entries);
- a record names it directly (``pinned``: an image's top layer or a container's layer that
  the layer records do not know).

And none is safe when the records look *torn* (layer records missing or empty while dirs
exist, records naming layers or parents no record knows, unreadable cache ids): an orphan is
then more likely a live layer whose record was lost. The callers (gc) refuse then.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from crilink.checks.overlaylinks import OverlayState, parse_lower, resolves_to

__all__ = ["kept_orphans", "lower_users"]


def lower_users(state: OverlayState) -> dict[str, set[str]]:
    """dir id -> the ids of the dirs whose ``lower`` names it through ``l/``."""
    users: dict[str, set[str]] = {}
    for layer in state.layers.values():
        if not layer.lower:
            continue
        for name in parse_lower(layer.lower):
            if name is None or name.startswith("/"):
                continue
            target = resolves_to(state, name)
            if target is not None and target != layer.id:
                users.setdefault(target, set()).add(layer.id)
    return users


def kept_orphans(state: OverlayState, orphans: Collection[str],
                 pinned: Mapping[str, str] | None = None) -> dict[str, str]:
    """orphan id -> why it must stay (a lower that uses it, or a record that names it);
    orphans left out may be removed together."""
    orphan_set = set(orphans)
    users = lower_users(state)
    kept: dict[str, str] = {o: why for o, why in (pinned or {}).items() if o in orphan_set}
    for orphan in sorted(orphan_set):
        live = sorted(u for u in users.get(orphan, ()) if u not in orphan_set)
        if live and orphan not in kept:
            kept[orphan] = f"the lower of {live[0]} uses it"
    # what a kept orphan stands on is kept too: walk down from every kept one
    below: dict[str, set[str]] = {}
    for target, who in users.items():
        for user in who:
            below.setdefault(user, set()).add(target)
    todo = list(kept)
    while todo:
        cur = todo.pop()
        for target in sorted(below.get(cur, ())):
            if target in orphan_set and target not in kept:
                kept[target] = f"the lower of {cur} (kept) uses it"
                todo.append(target)
    return kept
