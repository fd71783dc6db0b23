"""Parent chains of layers, computed on demand in linear time (pure).

Nouns: ``parents`` maps each *node* (a layer id, or a driver dir name) to its parent node,
``None`` for a base. A parent that is not itself a key is *missing*. A *chain* is the tuple of
nodes below a node, nearest parent first.

Guarantees: building a :class:`ParentChains` costs nothing; whether a chain is complete
(reaches a base without a missing parent or a cycle) is memoised, so asking it for every node
costs O(nodes) in all, whatever the depth; a chain handed out is at most ``limit`` + 1 nodes
long (longer than any driver accepts, so a check still sees "too many"), and nothing holds
every chain at once (a 20,000-deep store would need 200 million entries). Cycles terminate.

``strict``: a node whose chain is incomplete is not a key (the caller cannot know what its
``lower`` should be). Otherwise the chain is cut after the missing parent, or before the
first repeated node of a cycle.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

__all__ = ["ParentChains", "cycle_members"]


class ParentChains(Mapping[str, tuple[str, ...]]):
    """node -> the nodes below it, nearest first (see the module doc for limits)."""

    def __init__(self, parents: Mapping[str, str | None], *, limit: int,
                 strict: bool = False) -> None:
        self._parents = parents
        self._limit = limit
        self._strict = strict
        self._complete: dict[str, bool] = {}

    def complete(self, node: str) -> bool:
        """Whether ``node``'s chain reaches a base (no missing parent, no cycle). O(1)
        amortised: every node on the way is memoised."""
        path: list[str] = []
        on_path: set[str] = set()
        cur: str | None = node
        result = True
        while cur is not None:
            known = self._complete.get(cur)
            if known is not None:
                result = known
                break
            if cur not in self._parents or cur in on_path:
                result = False
                break
            path.append(cur)
            on_path.add(cur)
            cur = self._parents[cur]
        for n in path:
            self._complete[n] = result
        return result

    def __getitem__(self, node: str) -> tuple[str, ...]:
        if node not in self._parents or (self._strict and not self.complete(node)):
            raise KeyError(node)
        chain: list[str] = []
        seen = {node}
        parent = self._parents[node]
        while parent is not None and parent not in seen and len(chain) <= self._limit:
            chain.append(parent)
            seen.add(parent)
            parent = self._parents.get(parent)
        return tuple(chain)

    def __iter__(self) -> Iterator[str]:
        return (n for n in self._parents if not self._strict or self.complete(n))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __contains__(self, node: object) -> bool:
        return isinstance(node, str) and node in self._parents and (
            not self._strict or self.complete(node))


def cycle_members(parents: Mapping[str, str | None]) -> set[str]:
    """Nodes that lie on a parent cycle (each node visited once: O(nodes))."""
    state: dict[str, int] = {}  # 1: on the current walk, 2: done
    members: set[str] = set()
    for start in parents:
        walk: list[str] = []
        cur: str | None = start
        while cur is not None and cur in parents and cur not in state:
            state[cur] = 1
            walk.append(cur)
            cur = parents[cur]
        if cur is not None and state.get(cur) == 1:  # the walk closed on itself
            members.update(walk[walk.index(cur):])
        for n in walk:
            state[n] = 2
    return members
