"""The streaming layer tar reader and the blob stream: tolerance, truncation, formats.

Tars here are made with Python's tarfile (hand-made); the umoci 0.4.7 layers without an
end-of-archive come from the real fixtures.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from crilink.formats.blobstream import (
    Compression,
    LayerStream,
    MalformedLayerError,
    MalformedReason,
    sniff_compression,
)
from crilink.formats.layertar import MAX_META, EntryType, TarReader

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
from images import layout_layers

UMOCI_OPAQUE_LAYER = 2  # v2's layers: busybox, changes, umoci insert --opaque, --whiteout
UMOCI_WHITEOUT_LAYER = 3


def make_tar(members: list[tarfile.TarInfo | tuple[tarfile.TarInfo, bytes]],
             fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for m in members:
            info, data = m if isinstance(m, tuple) else (m, b"")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def info(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname = kind, link
    return ti


def read_all(data: bytes) -> tuple[list[tuple[str, EntryType, int, str]], TarReader]:
    reader = TarReader(LayerStream(io.BytesIO(data)))
    return [(e.name, e.type, e.size, e.linkname) for e in reader], reader


def test_reads_every_type() -> None:
    data = make_tar([(info("f"), b"hello"), info("d", tarfile.DIRTYPE),
                     info("s", tarfile.SYMTYPE, "../t"), info("h", tarfile.LNKTYPE, "f"),
                     info("fifo", tarfile.FIFOTYPE), info("dev", tarfile.CHRTYPE)])
    entries, reader = read_all(data)
    assert entries == [("f", EntryType.FILE, 5, ""), ("d/", EntryType.DIR, 0, ""),
                       ("s", EntryType.SYMLINK, 0, "../t"), ("h", EntryType.HARDLINK, 0, "f"),
                       ("fifo", EntryType.OTHER, 0, ""), ("dev", EntryType.OTHER, 0, "")]
    assert reader.problem is None


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
def test_long_names_and_links(fmt: int) -> None:
    name, link = "d/" + "n" * 300, "/" + "l" * 400
    entries, reader = read_all(make_tar([info(name, tarfile.SYMTYPE, link)], fmt))
    assert entries == [(name, EntryType.SYMLINK, 0, link)]
    assert reader.problem is None


def test_ustar_prefix_joins_the_name() -> None:
    name = "p" * 120 + "/" + "q" * 90
    entries, _ = read_all(make_tar([(info(name), b"x")], tarfile.USTAR_FORMAT))
    assert entries[0][0] == name


def test_non_utf8_name_round_trips() -> None:
    raw = b"bad-\xff\nname"
    ti = tarfile.TarInfo(raw.decode("utf-8", "surrogateescape"))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT,
                      encoding="utf-8", errors="surrogateescape") as tar:
        tar.addfile(ti)
    entries, _ = read_all(buf.getvalue())
    assert entries[0][0].encode("utf-8", "surrogateescape") == raw


def test_base256_size_is_read() -> None:
    block = bytearray(make_tar([(info("f"), b"abc")], tarfile.GNU_FORMAT)[:512])
    block[124:136] = b"\x80" + (3).to_bytes(11, "big")
    block[148:156] = b" " * 8
    block[148:156] = f"{sum(block):06o}\x00 ".encode()
    data = bytes(block) + b"abc".ljust(512, b"\0") + bytes(1024)
    entries, reader = read_all(data)
    assert entries == [("f", EntryType.FILE, 3, "")]
    assert reader.problem is None


def test_missing_eof_is_tolerated_and_said() -> None:
    data = make_tar([(info("a"), b"1"), (info("b"), b"22")])
    cut = 512 * 4  # both members whole, no end-of-archive blocks
    entries, reader = read_all(data[:cut])
    assert [e[0] for e in entries] == ["a", "b"]
    assert reader.problem is not None and reader.problem.reason is MalformedReason.MISSING_EOF


def test_missing_padding_after_last_data_is_missing_eof_not_truncation() -> None:
    data = make_tar([(info("a"), b"x" * 23)])
    entries, reader = read_all(data[:512 + 23])
    assert [e[0] for e in entries] == ["a"]
    assert reader.problem is not None and reader.problem.reason is MalformedReason.MISSING_EOF


@pytest.mark.parametrize("cut", [512 + 10, 512 * 2 + 100])
def test_truncation_inside_data_or_header(cut: int) -> None:
    data = make_tar([(info("a"), b"x" * 100), (info("b"), b"y" * 10)])
    _, reader = read_all(data[:cut])
    assert reader.problem is not None and reader.problem.reason is MalformedReason.TRUNCATED


def test_bad_checksum_stops_with_bad_header() -> None:
    data = bytearray(make_tar([(info("a"), b"1"), (info("b"), b"2")], tarfile.USTAR_FORMAT))
    data[1024 + 148:1024 + 156] = b"0000000\x00"
    entries, reader = read_all(bytes(data))
    assert [e[0] for e in entries] == ["a"]
    assert reader.problem is not None and reader.problem.reason is MalformedReason.BAD_HEADER


def test_oversized_pax_header_is_refused() -> None:
    entries, reader = read_all(make_tar([info("x" * (MAX_META + 10))]))
    assert entries == []
    assert reader.problem is not None
    assert reader.problem.reason is MalformedReason.OVERSIZED_HEADER


@pytest.mark.parametrize(("compress", "kind"), [
    (lambda b: gzip.compress(b, mtime=0), Compression.GZIP),
    (zstandard.ZstdCompressor().compress, Compression.ZSTD),
    (lambda b: b, Compression.NONE),
])
def test_compression_by_magic_and_digests(compress: Callable[[bytes], bytes],
                                          kind: Compression) -> None:
    tar = make_tar([(info("a"), b"payload")])
    blob = compress(tar)
    stream = LayerStream(io.BytesIO(blob))
    assert stream.compression is kind
    assert [e.name for e in TarReader(stream)] == ["a"]
    stream.drain()
    assert stream.blob_digest() == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert stream.diff_digest() == "sha256:" + hashlib.sha256(tar).hexdigest()


def test_multi_member_gzip_is_one_stream() -> None:
    tar = make_tar([(info("a"), b"1" * 2000)])
    blob = gzip.compress(tar[:1000], mtime=0) + gzip.compress(tar[1000:], mtime=0)
    stream = LayerStream(io.BytesIO(blob))
    reader = TarReader(stream)
    assert [e.name for e in reader] == ["a"] and reader.problem is None


@pytest.mark.parametrize("compress", [lambda b: gzip.compress(b, mtime=0),
                                      zstandard.ZstdCompressor().compress])
def test_truncated_compressed_stream(compress: Callable[[bytes], bytes]) -> None:
    blob = compress(make_tar([(info("a"), bytes(range(256)) * 200)]))
    stream = LayerStream(io.BytesIO(blob[:-6]))
    reader = TarReader(stream)
    list(reader)
    if reader.problem is None:  # the tar ended before the cut: draining must notice it
        with pytest.raises(MalformedLayerError) as err:
            stream.drain()
        assert err.value.reason is MalformedReason.TRUNCATED
    else:
        assert reader.problem.reason is MalformedReason.TRUNCATED


def skippable(payload: bytes, magic: int = 0x184D2A50) -> bytes:
    return magic.to_bytes(4, "little") + len(payload).to_bytes(4, "little") + payload


@pytest.mark.parametrize("shape", ["trailing", "leading", "between", "every_magic"])
def test_zstd_skippable_frames_are_passed_over(shape: str) -> None:
    """zstd:chunked (containers-storage) ends a layer with a skippable frame holding its TOC;
    skippable frames may stand anywhere a frame may begin, across the 1 KiB feeding steps."""
    tar = make_tar([(info("a"), bytes(range(256)) * 40)])
    z = zstandard.ZstdCompressor().compress
    toc = skippable(b"T" * 3000)
    blob = {"trailing": z(tar) + toc, "leading": skippable(b"h" * 1021) + z(tar),
            "between": z(tar[:1500]) + toc + z(tar[1500:]) + toc,
            "every_magic": b"".join(skippable(b"m" * i, 0x184D2A50 + i) for i in range(16))
            + z(tar)}[shape]
    stream = LayerStream(io.BytesIO(blob))
    assert stream.compression is Compression.ZSTD
    reader = TarReader(stream)
    assert [e.name for e in reader] == ["a"] and reader.problem is None
    stream.drain()
    assert stream.diff_digest() == "sha256:" + hashlib.sha256(tar).hexdigest()


@pytest.mark.parametrize("cut", [3, 8, 100])
def test_zstd_cut_skippable_frame_is_truncated(cut: int) -> None:
    tar = make_tar([info("a")])
    stream = LayerStream(io.BytesIO(zstandard.ZstdCompressor().compress(tar)
                                    + skippable(b"T" * 200)[:-cut]))
    list(TarReader(stream))
    with pytest.raises(MalformedLayerError) as err:
        stream.drain()
    assert err.value.reason is MalformedReason.TRUNCATED


def test_gzip_followed_by_garbage_is_corrupt() -> None:
    stream = LayerStream(io.BytesIO(gzip.compress(make_tar([info("a")]), mtime=0) + b"junk!"))
    list(TarReader(stream))
    with pytest.raises(MalformedLayerError) as err:
        stream.drain()
    assert err.value.reason is MalformedReason.CORRUPT_COMPRESSION


@pytest.mark.parametrize("offset", [-8, -6, -2])  # the CRC-32 and the length of the trailer
def test_gzip_trailer_damage_is_corrupt(offset: int) -> None:
    blob = bytearray(gzip.compress(make_tar([(info("a"), b"x" * 5000)]), mtime=0))
    blob[offset] ^= 0xFF
    stream = LayerStream(io.BytesIO(bytes(blob)))
    reader = TarReader(stream)
    list(reader)
    if reader.problem is not None:  # the inflater checked the trailer with the tar's last bytes
        assert reader.problem.reason is MalformedReason.CORRUPT_COMPRESSION
        return
    with pytest.raises(MalformedLayerError) as err:
        stream.drain()
    assert err.value.reason is MalformedReason.CORRUPT_COMPRESSION


def test_sniff_unknown() -> None:
    assert sniff_compression(b"\xfd7zXZ\x00") is Compression.UNKNOWN
    assert sniff_compression(b"BZh91A") is Compression.UNKNOWN


@pytest.mark.parametrize(("index", "names"), [
    (UMOCI_OPAQUE_LAYER, ["opt/app/.wh..wh..opq", "opt/app/", "opt/app/only.txt"]),
    (UMOCI_WHITEOUT_LAYER, ["usr/bin/.wh.dangling-link"]),
])
def test_real_umoci_insert_layers_without_eof(real_fixtures: Path, index: int,
                                              names: list[str]) -> None:
    """umoci 0.4.7 ``insert`` output: no end-of-archive (and no final padding); Python's
    tarfile stream mode fails on the first ("unexpected end of data"), this reader does not."""
    blob = layout_layers(real_fixtures / "oci/layout", "v2")[index]
    path = real_fixtures / "oci/layout/blobs/sha256" / blob
    with path.open("rb") as f:
        stream = LayerStream(f)
        reader = TarReader(stream)
        assert [e.name for e in reader] == names
        stream.drain()
    assert reader.problem is not None and reader.problem.reason is MalformedReason.MISSING_EOF
    assert stream.blob_digest() == "sha256:" + blob


def test_lone_zero_block_followed_by_members_is_malformed() -> None:
    one = make_tar([(info("seen"), b"1")], tarfile.USTAR_FORMAT)[:1024]  # header + data
    hidden = make_tar([(info("hidden"), b"2")], tarfile.USTAR_FORMAT)  # with a proper end
    entries, reader = read_all(one + bytes(512) + hidden)
    assert [e[0] for e in entries] == ["seen"]
    assert reader.problem is not None
    assert reader.problem.reason is MalformedReason.LONE_ZERO_BLOCK
    assert reader.problem.offset == 1024  # the zero block's, as its message says
    assert "at offset 1024 " in reader.problem.message


@pytest.mark.parametrize("tail", [bytes(512), bytes(512 * 20), bytes(512 + 100), b""])
def test_zero_block_then_zeros_or_nothing_is_a_proper_end(tail: bytes) -> None:
    head = make_tar([(info("a"), b"1")], tarfile.USTAR_FORMAT)[:1024]
    entries, reader = read_all(head + bytes(512) + tail)
    assert [e[0] for e in entries] == ["a"] and reader.problem is None


def test_negative_pax_size_is_a_bad_header() -> None:
    ti = info("f")
    ti.pax_headers = {"size": "-5"}
    _, reader = read_all(make_tar([ti]))
    assert reader.problem is not None and reader.problem.reason is MalformedReason.BAD_HEADER
