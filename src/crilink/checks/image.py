"""Image checks: merge an image's layers in memory, then report what is broken in the view.

Targets: an OCI image layout directory, an oci-archive or a docker-archive tarball. Nothing
is unpacked or written. Finding kinds produced here:

- ``unsafe_entry`` (error), ``hardlink_missing_target`` (error), ``hardlink_cross_layer``
  (info, ``bytes`` = size stored again): from the merge (:mod:`crilink.formats.imageview`);
- ``malformed_layer``: ``detail.reason`` is one of
  :class:`~crilink.formats.blobstream.MalformedReason`. Severity ``warning``, except
  ``missing_eof`` alone, which is ``info``: umoci 0.4.7 ``insert`` writes such layers and
  containerd and podman extract them whole, so the image works; the layer is read anyway;
  and ``missing_blob`` / ``not_a_file``, which are ``error``: no runtime can unpack the image.
  Then ``dangling`` and ``loop`` verdicts on the incomplete view are ``info`` with
  ``detail.unverified`` (their targets may lie in the layer that could not be read);
- the shared symlink kinds (``dangling``, ``loop``, ``escapes_root``, ``absolute``) from
  :func:`crilink.checks.links.symlink_findings`, for every symlink of the merged view.

Every finding has a root-relative ``path`` (``/`` for a finding about a whole layer) and the
``layer`` digest (OCI: the descriptor digest; docker-archive: the layer's ``diff_id``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from crilink.checks.links import symlink_findings
from crilink.errors import CorruptInputError
from crilink.formats.blobstream import (
    Compression,
    LayerStream,
    MalformedLayerError,
    MalformedReason,
)
from crilink.formats.imagesource import ImagePlan, LayerRef, open_image
from crilink.formats.imageview import BAD_WHITEOUT, ImageView, IssueKind, MergeIssue
from crilink.formats.layertar import TarProblem, TarReader
from crilink.formats.source import MissingBlobError
from crilink.model import Finding, ScanResult, Severity
from crilink.pathres.resolve import Resolver

if TYPE_CHECKING:
    from crilink.scan import ScanOptions

__all__ = ["MALFORMED_LAYER", "check_image", "run"]

MALFORMED_LAYER = "malformed_layer"
LAYER_PATH = "/"
_ISSUE_SEVERITY = {
    IssueKind.UNSAFE_ENTRY: Severity.ERROR,
    IssueKind.HARDLINK_MISSING_TARGET: Severity.ERROR,
    IssueKind.HARDLINK_CROSS_LAYER: Severity.INFO,
}
_ISSUE_MESSAGE = {
    IssueKind.UNSAFE_ENTRY: "layer entry climbs out of the root with '..'; not applied",
    IssueKind.HARDLINK_MISSING_TARGET: "hard link to a target that is not there at this layer",
    IssueKind.HARDLINK_CROSS_LAYER: "hard link to a lower layer's file: its bytes are stored "
                                    "again in this layer",
}
_REASON_MESSAGE = {
    BAD_WHITEOUT: "whiteout of '..', '.' or an empty name: names no file (it would hide the "
                  "directory itself or its parent); not applied",
}
Progress = Callable[[int, int | None], None]


def run(target: str, options: ScanOptions) -> ScanResult:
    """Scan the image at ``target`` (layout dir or archive); see the module docstring."""
    plan = open_image(target, options.ref, options.platform)
    try:
        return check_image(target, plan, options.progress)
    finally:
        plan.source.close()


def check_image(target: str, plan: ImagePlan, progress: Progress | None = None) -> ScanResult:
    """Merge ``plan``'s layers and return every finding with the scan's counters."""
    view = ImageView()
    findings: list[Finding] = []
    raw_bytes = 0
    total = len(plan.layers)
    for layer in plan.layers:
        if progress is not None:
            progress(layer.index, total)
        layer_findings, nbytes = _scan_layer(plan, layer, view)
        findings.extend(layer_findings)
        raw_bytes += nbytes
    if progress is not None:
        progress(total, total)
    link_findings = _symlink_checks(view)
    lost = [f.layer for f in findings if f.kind == MALFORMED_LAYER
            and f.detail.get("reason") in _UNREADABLE_LAYER]
    links = link_findings[0] if not lost else [_unverified(f, lost) for f in link_findings[0]]
    stats = {"layers": total, "entries": view.entries, "nodes": len(view.vfs),
             "symlinks": len(link_findings[1]), "bytes_read": raw_bytes}
    return ScanResult.of(target, plan.kind, findings + links, stats)


# a layer that could not be read at all: the merged view lacks its files
_UNREADABLE_LAYER = frozenset({str(MalformedReason.MISSING_BLOB),
                               str(MalformedReason.NOT_A_FILE)})
_FAILED_LINK_KINDS = frozenset({"dangling", "loop"})


def _unverified(f: Finding, lost: list[str | None]) -> Finding:
    """A failed link verdict on a view that lacks a whole layer may be wrong (the target may
    be in the missing layer): kept as ``info``, marked, never counted as a fault of its own."""
    if f.kind not in _FAILED_LINK_KINDS:
        return f
    return replace(f, severity=Severity.INFO,
                   message=f"{f.message} (unverified: layer {lost[0]} could not be read)",
                   detail={**f.detail, "unverified": "layer_unreadable"})


def _symlink_checks(view: ImageView) -> tuple[list[Finding], list[str]]:
    resolver = Resolver(view.vfs)
    findings: list[Finding] = []
    seen: list[str] = []
    for path, text, layer in sorted(view.symlinks()):
        seen.append(path)
        findings.extend(symlink_findings(resolver, path, text, layer=layer))
    return findings, seen


def _malformed(layer: LayerRef, reason: MalformedReason, message: str,
               **detail: Any) -> Finding:
    severity = Severity.INFO if reason is MalformedReason.MISSING_EOF else \
        Severity.ERROR if str(reason) in _UNREADABLE_LAYER else Severity.WARNING
    return Finding(MALFORMED_LAYER, severity, LAYER_PATH, message=message, layer=layer.digest,
                   detail={"reason": str(reason), **detail})


def _issue_finding(issue: MergeIssue) -> Finding:
    detail: dict[str, Any] = {"reason": issue.reason} if issue.reason else {}
    if issue.target_layer is not None:
        detail["target_layer"] = issue.target_layer
    return Finding(str(issue.kind), _ISSUE_SEVERITY[issue.kind], issue.path,
                   message=_REASON_MESSAGE.get(issue.reason, _ISSUE_MESSAGE[issue.kind]),
                   link=issue.link, layer=issue.layer,
                   bytes=issue.size, detail=detail)


def _scan_layer(plan: ImagePlan, layer: LayerRef, view: ImageView) -> tuple[list[Finding], int]:
    """Merge one layer into ``view``; its findings and the blob bytes read."""
    try:
        raw = plan.source.open(layer.name)
    except MissingBlobError as err:
        return [_malformed(layer, MalformedReason.MISSING_BLOB, err.message)], 0
    except CorruptInputError as err:  # a symlink, FIFO, device ... where the blob belongs
        return [_malformed(layer, MalformedReason.NOT_A_FILE, err.message)], 0
    with raw:
        try:
            stream = LayerStream(raw, layer.digest.split(":", 1)[0],
                                 limit=layer.size, diff_algorithm=_algorithm(layer.diff_id))
        except MalformedLayerError as err:
            return [_malformed(layer, err.reason, err.message)], 0
        if stream.compression is Compression.UNKNOWN:
            return [_malformed(layer, MalformedReason.UNKNOWN_COMPRESSION,
                               "layer compressed with neither gzip nor zstd")], stream.raw_bytes
        reader = TarReader(stream)
        findings = [_issue_finding(i) for i in view.apply_layer(layer.digest, reader)]
        findings.extend(_layer_end(layer, stream, reader.problem))
        return findings, stream.raw_bytes


def _algorithm(digest: str | None) -> str | None:
    """``sha512`` of ``sha512:<hex>`` (digests were checked when the documents were read)."""
    return digest.split(":", 1)[0] if digest else None


def _size_finding(layer: LayerRef, stream: LayerStream) -> Finding | None:
    """``size_mismatch`` when the blob (read whole, up to its descriptor's size) is shorter
    than the descriptor says, or goes on past it; the blob is never read further."""
    if layer.size is None:
        return None
    if stream.raw_bytes < layer.size:
        return _malformed(layer, MalformedReason.SIZE_MISMATCH,
                          f"layer blob is {stream.raw_bytes} bytes, its descriptor says "
                          f"{layer.size}", expected=layer.size, actual=stream.raw_bytes)
    if stream.longer_than_limit():
        return _malformed(layer, MalformedReason.SIZE_MISMATCH,
                          f"layer blob is longer than the {layer.size} bytes its descriptor "
                          "says; read no further", expected=layer.size, longer=True)
    return None


def _layer_end(layer: LayerRef, stream: LayerStream, problem: TarProblem | None) -> list[Finding]:
    """Findings about how the layer ended: truncation, missing EOF, digests."""
    out: list[Finding] = []
    if problem is not None:
        out.append(_malformed(layer, problem.reason, problem.message, offset=problem.offset))
        if problem.reason is not MalformedReason.MISSING_EOF:
            # the bytes are damaged: a digest mismatch would say nothing more; but when the
            # descriptor's size cut the blob short, that is the cause, and is said too
            longer = layer.size is not None and stream.raw_bytes == layer.size
            size = _size_finding(layer, stream) if longer else None
            return out if size is None else [*out, size]
    try:
        stream.drain()
        size = _size_finding(layer, stream)
    except MalformedLayerError as err:
        return [*out, _malformed(layer, err.reason, err.message)]
    blob_digest = layer.blob_digest
    if size is not None:
        out.append(size)
        blob_digest = None  # a blob of another length cannot hash right: said once, above
    checks = ((MalformedReason.DIGEST_MISMATCH, blob_digest, stream.blob_digest()),
              (MalformedReason.DIFF_ID_MISMATCH, layer.diff_id, stream.diff_digest()))
    for reason, want, got in checks:
        if want is not None and want != got:
            out.append(_malformed(layer, reason, f"layer bytes hash to {got}, expected {want}",
                                  expected=want, actual=got))
    return out
