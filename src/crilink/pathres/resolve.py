"""In-root resolution with the semantics of the kernel's ``openat2(RESOLVE_IN_ROOT)``.

Rules (the kernel's ``fs/namei.c`` path walk, restricted to a root):

- Absolute link text, and an absolute looked-up path, restart at the root.
- ``..`` goes to the parent of the directory actually reached (physical, not lexical);
  at the root it stays at the root (``clamped``).
- Every component but the last must be a directory (after following links), else
  NOT_A_DIRECTORY; a missing component is MISSING.
- The last component is followed when it is a link and ``follow_last`` is true. A trailing
  slash (``"x/"``) makes the last component an intermediate one: it is followed and must be
  a directory, whatever ``follow_last`` says (the kernel sets LOOKUP_FOLLOW|LOOKUP_DIRECTORY).
- At most ``max_links`` links (40, MAXSYMLINKS) are followed in one lookup; the next is LOOP.
- Empty link text (impossible on Linux, possible in an image) resolves as MISSING.

:class:`Resolver` adds memos of directory prefixes and of followed links, for scans that
resolve millions of links against one tree that does not change meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass

from crilink.pathres.base import MAX_LINKS, VFS, Node, NodeType, Resolution, ResolveError

__all__ = ["Resolver", "parent_of", "resolve_in_root", "split_path"]

_DIR = NodeType.DIR
_SYMLINK = NodeType.SYMLINK
_MISSING = ResolveError.MISSING
_NOTDIR = ResolveError.NOT_A_DIRECTORY
_LOOP = ResolveError.LOOP
_CACHE_LIMIT = 1 << 17  # entries per memo before it is dropped (bounds memory on huge trees)
_SKIP_CHECKS = frozenset({3, 5, 8, 12, 16, 24, 32})  # trace lengths at which a cycle is looked for


def split_path(text: str) -> list[str]:
    """Components of ``text``; a trailing slash becomes a final ``"."`` (same kernel meaning)."""
    comps = [c for c in text.split("/") if c]
    if comps and text.endswith("/"):
        comps.append(".")
    return comps


def parent_of(path: str) -> str:
    """The parent of a normalised in-root path (``"/"`` for ``"/x"`` and ``"/"``)."""
    return path[: path.rindex("/")] or "/"


def _join(cur: str, name: str) -> str:
    return "/" + name if cur == "/" else cur + "/" + name


@dataclass(frozen=True, slots=True)
class _DirHit:
    """A memoised directory prefix: where it led and what it cost."""

    path: str
    hops: int
    clamped: bool
    text_clamped: bool


def _find_cycle(trace: list[tuple[str, int, int]]) -> tuple[str, ...]:
    """The links of the first true cycle in ``trace`` (link path, depth, low-water mark).

    Link ``p`` followed at stack depth ``d`` and again later without the walk having consumed
    anything below ``d`` in between is a cycle: the lookup can never finish.
    """
    for j in range(1, len(trace)):
        low = trace[j][2]
        for i in range(j - 1, -1, -1):
            if trace[i][0] == trace[j][0] and low >= trace[i][1]:
                return tuple(t[0] for t in trace[i:j])
            low = min(low, trace[i][2])
    return ()


class Resolver:
    """Resolves paths and link text inside the root of ``vfs``, with memos.

    The memos (lstat of directories and links, link text, directory prefixes, followed
    links) assume the tree does not change while the resolver is used; make a new resolver
    for a new look. Results are exactly those of :func:`resolve_in_root`.
    """

    def __init__(self, vfs: VFS, *, max_links: int = MAX_LINKS) -> None:
        self.vfs = vfs
        self.max_links = max_links
        self._nodes: dict[str, Node] = {}
        self._texts: dict[str, str] = {}
        self._dirs: dict[str, _DirHit | Resolution] = {}
        self._links: dict[str, Resolution] = {}

    def lstat(self, path: str) -> Node | None:
        """``vfs.lstat`` with a memo of directories and links (files are not kept)."""
        node = self._nodes.get(path)
        if node is None:
            node = self.vfs.lstat(path)
            if node is not None and node.type in (_DIR, _SYMLINK):
                if len(self._nodes) > _CACHE_LIMIT:
                    self._nodes.clear()
                self._nodes[path] = node
        return node

    def readlink(self, path: str) -> str:
        text = self._texts.get(path)
        if text is None:
            text = self.vfs.readlink(path)
            if len(self._texts) > _CACHE_LIMIT:
                self._texts.clear()
            self._texts[path] = text
        return text

    def note_dir(self, path: str, node: Node) -> None:
        """Record that ``path`` is a real directory (seen by a walk): saves its ``lstat``."""
        if len(self._nodes) > _CACHE_LIMIT:
            self._nodes.clear()
        self._nodes[path] = node

    def follow(self, link_path: str, link_text: str) -> Resolution:
        """What following the link at ``link_path`` (whose text is ``link_text``) reaches.

        Counts the link itself as one hop, as opening ``link_path`` would; ``text_clamped``
        refers to ``link_text``. ``link_path``'s parent must be a resolved directory.
        """
        return self.follow_from(parent_of(link_path), link_text)

    def follow_from(self, parent: str, text: str) -> Resolution:
        """:meth:`follow` for a link in directory ``parent`` (a resolved in-root dir path).

        Fast path: a text whose every component but the last is ``.``, ``..`` or a known real
        directory, and whose last is a name that is not a link, is resolved lexically from
        ``parent`` (``..`` of a link-free path is its lexical parent); anything else takes the
        exact walk. Results are exactly those of :meth:`resolve`.
        """
        if not text or text[-1] == "/":
            return self.resolve(text, start=parent, hops=1)
        cur = "/" if text[0] == "/" else parent
        comps = text.split("/")
        last = comps.pop()
        if last in (".", ".."):
            return self.resolve(text, start=parent, hops=1)
        clamped = False
        nodes = self._nodes
        for name in comps:
            if not name or name == ".":
                continue
            if name == "..":
                if cur == "/":
                    clamped = True
                else:
                    cur = cur[: cur.rindex("/")] or "/"
                continue
            path = "/" + name if cur == "/" else cur + "/" + name
            node = nodes.get(path)
            if node is None or node.type is not _DIR:
                node = self.lstat(path)
                if node is None or node.type is not _DIR:
                    return self.resolve(text, start=parent, hops=1)
            cur = path
        path = "/" + last if cur == "/" else cur + "/" + last
        node = self.lstat(path)
        if node is None:
            return Resolution(cur, last, _MISSING, None, 1, clamped, (), clamped)
        if node.type is _SYMLINK:
            return self.resolve(text, start=parent, hops=1)
        return Resolution(path, "", None, node, 1, clamped, (), clamped)

    def resolve(self, unsafe_path: str, *, follow_last: bool = True, start: str = "/",
                hops: int = 0) -> Resolution:
        """Resolve ``unsafe_path`` from directory ``start`` (a resolved in-root dir path).

        ``hops`` links are taken as already followed (the budget is ``max_links``).
        """
        if not unsafe_path:
            return Resolution(start, "", _MISSING, hops=hops)
        base = "/" if unsafe_path[0] == "/" else start
        head, _, last = unsafe_path.rpartition("/")
        if last in ("", ".", ".."):
            return self.walk(base, split_path(unsafe_path), follow_last=follow_last, hops=hops)
        hit = self._dir_prefix(base, head) if head.strip("/") else _DirHit(base, 0, False, False)
        if not isinstance(hit, _DirHit):
            if hit.error is _LOOP or hops + hit.hops > self.max_links:
                return self.walk(base, split_path(unsafe_path), follow_last=follow_last,
                                 hops=hops)
            return Resolution(hit.resolved, _cat(hit.remaining, last), hit.error, hit.node,
                              hops=hops + hit.hops, clamped=hit.clamped,
                              text_clamped=hit.text_clamped)
        res = self._last(hit, last, follow_last, hops)
        if res is None:  # over budget or a loop: the exact walk tells how far it got
            return self.walk(base, split_path(unsafe_path), follow_last=follow_last, hops=hops)
        return res

    def _last(self, hit: _DirHit, last: str, follow_last: bool, hops: int) -> Resolution | None:
        """Step from a memoised directory into the last component (None: walk instead)."""
        total = hops + hit.hops
        if total > self.max_links:
            return None
        path = _join(hit.path, last)
        node = self.lstat(path)
        if node is None:
            return Resolution(hit.path, last, _MISSING, hops=total, clamped=hit.clamped,
                              text_clamped=hit.text_clamped)
        if node.type is not _SYMLINK or not follow_last:
            return Resolution(path, "", None, node, total, hit.clamped, (), hit.text_clamped)
        sub = self._followed(path)
        if total + sub.hops > self.max_links or sub.error is _LOOP:
            return None
        return Resolution(sub.resolved, sub.remaining, sub.error, sub.node, total + sub.hops,
                          hit.clamped or sub.clamped, (), hit.text_clamped)

    def _followed(self, link_path: str) -> Resolution:
        """Following the link at ``link_path`` alone (1 hop for itself), memoised."""
        res = self._links.get(link_path)
        if res is None:
            text = self.readlink(link_path)
            start = "/" if text.startswith("/") else parent_of(link_path)
            res = self.walk(start, split_path(text), follow_last=True, hops=1, empty=not text)
            if len(self._links) > _CACHE_LIMIT:
                self._links.clear()
            self._links[link_path] = res
        return res

    def _dir_prefix(self, base: str, head: str) -> _DirHit | Resolution:
        key = base + "\0" + head
        hit = self._dirs.get(key)
        if hit is None:
            res = self.walk(base, split_path(head), follow_last=True, must_dir=True, hops=0)
            hit = _DirHit(res.resolved, res.hops, res.clamped, res.text_clamped) \
                if res.error is None else res
            if len(self._dirs) > _CACHE_LIMIT:
                self._dirs.clear()
            self._dirs[key] = hit
        return hit

    def walk(self, start: str, comps: list[str], *, follow_last: bool = True,
             must_dir: bool = False, hops: int = 0, empty: bool = False) -> Resolution:
        """The exact walk: ``comps`` (from :func:`split_path`) from directory ``start``."""
        return _Walk(self, start, comps, follow_last, hops).run(must_dir, empty)


def _cat(head: str, tail: str) -> str:
    return tail if not head else head + "/" + tail


class _Walk:
    """One lookup: a stack of components still to walk (top = next), as the kernel keeps."""

    __slots__ = ("clamped", "cur", "follow_last", "hops", "low", "node", "r", "stack",
                 "text_clamped", "top", "trace")

    def __init__(self, r: Resolver, start: str, comps: list[str], follow_last: bool,
                 hops: int) -> None:
        self.r = r
        self.cur = start
        self.node: Node | None = None
        self.stack = comps[::-1]
        self.top = len(self.stack)  # stack[:top] are still components of the looked-up text
        self.low = self.top
        self.follow_last = follow_last
        self.hops = hops
        self.clamped = self.text_clamped = False
        self.trace: list[tuple[str, int, int]] = []

    def _result(self, resolved: str, error: ResolveError | None, remaining: str = "",
                node: Node | None = None, cycle: tuple[str, ...] = ()) -> Resolution:
        return Resolution(resolved, remaining, error, node, self.hops, self.clamped, cycle,
                          self.text_clamped)

    def _rest(self, name: str = ".") -> str:
        """What remains to walk (``name`` first); ``.`` (a trailing slash) is left out."""
        return "/".join(c for c in [name, *reversed(self.stack)] if c != ".")

    def run(self, must_dir: bool, empty: bool) -> Resolution:
        if empty:
            return self._result(self.cur, _MISSING, self._rest())
        stack = self.stack
        while stack:
            name = stack.pop()
            n = len(stack)
            self.low = min(self.low, n)
            if name == ".":
                continue
            if name == "..":
                self._dotdot(n)
                continue
            failed = self._step(name, n)
            if failed is not None:
                return failed
        node = self.node if self.node is not None else self.r.lstat(self.cur)
        if must_dir and (node is None or node.type is not _DIR):
            return self._result(self.cur, _NOTDIR, node=node)
        return self._result(self.cur, None, node=node)

    def _dotdot(self, n: int) -> None:
        if self.cur == "/":
            self.clamped = True
            if n < self.top:
                self.text_clamped = True
        else:
            self.cur = parent_of(self.cur)
            self.node = None

    def _step(self, name: str, n: int) -> Resolution | None:
        """Step into ``name`` (``n`` components remain); a Resolution when the walk ends."""
        path = _join(self.cur, name)
        node = self.r.lstat(path)
        if node is None:
            return self._result(self.cur, _MISSING, self._rest(name))
        if node.type is _SYMLINK and (n or self.follow_last):
            return self._link(path, name, n)
        if n and node.type is not _DIR:
            return self._result(path, _NOTDIR, self._rest(), node)
        self.cur, self.node = path, node
        return None

    def _skip_cycles(self) -> None:
        """Jump over whole turns of a cycle that ends at the newest trace entry.

        When link ``p`` is followed at depth ``n`` and was followed before at the same depth
        with nothing below ``n`` consumed in between, the walk's state (directory, stack) is
        the same as then: it repeats every ``k`` hops. Skipping a multiple of ``k`` hops that
        stays within the budget changes nothing but the work; the trace keeps the first
        turn, so the reported cycle is the same.
        """
        trace = self.trace
        path, depth, low = trace[-1]
        for i in range(len(trace) - 2, -1, -1):
            if trace[i][0] == path and trace[i][1] == depth and low >= depth:
                period = len(trace) - 1 - i
                budget = self.r.max_links - self.hops
                if budget > 0:
                    self.hops += (budget // period) * period
                return
            low = min(low, trace[i][2])

    def _link(self, path: str, name: str, n: int) -> Resolution | None:
        self.hops += 1
        self.trace.append((path, n, self.low))
        self.low = n
        if len(self.trace) in _SKIP_CHECKS:
            self._skip_cycles()
        if self.hops > self.r.max_links:
            return self._result(self.cur, _LOOP, self._rest(name), cycle=_find_cycle(self.trace))
        text = self.r.readlink(path)
        if not text:
            return self._result(self.cur, _MISSING, self._rest(name))
        if text[0] == "/":
            self.cur, self.node = "/", None
        self.stack.extend(reversed(split_path(text)))
        self.top = min(self.top, n)
        return None


def resolve_in_root(vfs: VFS, unsafe_path: str, *, follow_last: bool = True,
                    max_links: int = MAX_LINKS, start: str = "/") -> Resolution:
    """Resolve ``unsafe_path`` inside the root of ``vfs`` as ``openat2(RESOLVE_IN_ROOT)`` would.

    ``start`` is the directory a relative path starts from: a resolved in-root directory
    (no links in it), e.g. the parent of a link met while walking the tree. The result says
    how far resolution got (``resolved``) and what remained (``remaining``); see
    :class:`crilink.pathres.base.Resolution`. Raises ``InputError`` when the VFS cannot read.
    For many lookups against one tree, use a :class:`Resolver` (memoised).
    """
    if unsafe_path.startswith("/"):
        start = "/"
    return Resolver(vfs, max_links=max_links).walk(
        start, split_path(unsafe_path), follow_last=follow_last, empty=not unsafe_path)
