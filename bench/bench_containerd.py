"""Benchmark (by hand, not CI): ``crilink snapshots -o json`` on a containerd root with
>= 10,000 snapshots, against ``ctr snapshots ls`` + ``ctr snapshots usage``, and crilink's
hard-link-aware usage against ``du -sx`` on the same snapshot dirs, in the same run.

The store is written by the real containerd (Debian's 1.6, private root/state/socket, GC
delayed so that nothing is collected while it is built): ``ctr images import`` of generated
docker-archives (``--images`` images of ``--layers`` layers; each layer holds a file and a
hard link to it, so every layer is a committed snapshot with content), then ``--actives``
active snapshots made with ``ctr snapshots prepare`` (``--jobs`` at a time) on top of the
images, as containers' writable layers would be. Run as root::

    python bench/bench_containerd.py [--workdir /var/tmp/crilink-bench-ctd] [--images 40]
        [--layers 50] [--actives 8000] [--jobs 4] [--repeat 3]

The store is kept in the workdir and reused by later runs (delete it to rebuild). The ctr
pair is timed while the daemon runs; crilink, du and the reader are timed after it has
stopped (crilink reads offline). Each figure is the best wall time of ``--repeat`` warm runs.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration"))
from containerd_daemon import Containerd  # the tests' harness, found by path

NS = "bench"
META_DB = "io.containerd.metadata.v1.bolt/meta.db"
SNAP_DB = "io.containerd.snapshotter.v1.overlayfs/metadata.db"
SNAP_DIRS = "io.containerd.snapshotter.v1.overlayfs/snapshots"
DONE_MARK = ".crilink-bench-complete"
TARGET_CTR = 0.5  # issue 3: crilink snapshots at most 0.5x the ctr pair
TARGET_DU = 1.0  # and its usage at most 1.0x du


def _tar(entries: Sequence[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _layer(image: int, n: int) -> bytes:
    data = (f"image {image} layer {n}\n" * 200).encode()
    name = f"img{image}/l{n}/data.txt"
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    link = tarfile.TarInfo(f"img{image}/l{n}/data-hardlink.txt")
    link.type, link.linkname = tarfile.LNKTYPE, name
    return _tar([(info, data), (link, None)])


def make_archive(path: Path, image: int, layers: int) -> None:
    """A docker-archive of one image with ``layers`` distinct layers."""
    entries: list[tuple[tarfile.TarInfo, bytes | None]] = []
    diff_ids = []
    for n in range(layers):
        blob = _layer(image, n)
        digest = hashlib.sha256(blob).hexdigest()
        diff_ids.append(digest)
        entries.append((_info(f"{digest}/layer.tar", blob), blob))
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers",
                                    "diff_ids": [f"sha256:{d}" for d in diff_ids]}}).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name,
                            "RepoTags": [f"docker.io/bench/img{image}:latest"],
                            "Layers": [f"{d}/layer.tar" for d in diff_ids]}]).encode()
    entries += [(_info(config_name, config), config), (_info("manifest.json", manifest), manifest)]
    path.write_bytes(_tar(entries))


def _info(name: str, data: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    return info


def snapshot_rows(ctd: Containerd) -> list[tuple[str, str]]:
    """(key, parent) of every snapshot in the bench namespace, as ctr lists them."""
    out = ctd.ctr("-n", NS, "snapshots", "ls").stdout.splitlines()[1:]
    rows = []
    for line in out:
        cells = line.split()
        if cells:
            rows.append((cells[0], cells[1] if len(cells) == 3 else ""))
    return rows


def prepare_actives(ctd: Containerd, tops: list[str], count: int, jobs: int) -> None:
    running: list[subprocess.Popen[bytes]] = []
    for i in range(count):
        if len(running) >= jobs:
            proc = running.pop(0)
            if proc.wait() != 0:
                raise RuntimeError(f"ctr snapshots prepare failed ({proc.args})")
        running.append(subprocess.Popen(
            ["ctr", "--address", ctd.address, "-n", NS, "snapshots", "prepare",
             f"active-{i:05}", tops[i % len(tops)]], stdout=subprocess.DEVNULL))
        if i % 1000 == 999:
            print(f"  {i + 1} active snapshots", file=sys.stderr)
    for proc in running:
        if proc.wait() != 0:
            raise RuntimeError(f"ctr snapshots prepare failed ({proc.args})")


def build_store(ctd: Containerd, work: Path, args: argparse.Namespace) -> None:
    archives = work / "archives"
    archives.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for image in range(args.images):
        path = archives / f"img{image}.tar"
        if not path.exists():
            make_archive(path, image, args.layers)
        ctd.ctr("-n", NS, "images", "import", "--snapshotter", "overlayfs", str(path))
    rows = snapshot_rows(ctd)
    parents = {parent for _, parent in rows}
    tops = sorted(key for key, _ in rows if key not in parents)
    print(f"  imported {len(rows)} committed snapshots in {time.perf_counter() - t0:.0f} s",
          file=sys.stderr)
    t0 = time.perf_counter()
    prepare_actives(ctd, tops, args.actives, args.jobs)
    print(f"  prepared {args.actives} active snapshots in {time.perf_counter() - t0:.0f} s",
          file=sys.stderr)


def best(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm the page cache
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def run(*argv: str, ok: tuple[int, ...] = (0,)) -> Callable[[], str]:
    def call() -> str:
        res = subprocess.run(argv, capture_output=True, text=True, check=False)
        if res.returncode not in ok:
            raise RuntimeError(f"{' '.join(argv)}: exit {res.returncode}: {res.stderr[-500:]}")
        return res.stdout
    return call


def reader_walk(path: Path) -> Callable[[], int]:
    from crilink.formats.bolt import BoltDB, Bucket  # noqa: PLC0415 - after sys.path set-up

    def count(bucket: Bucket) -> int:
        n = sum(1 for _ in bucket.items())
        for _, sub in bucket.buckets():
            n += 1 + count(sub)
        return n

    def walk() -> int:
        with BoltDB.open(path) as db:
            return count(db.root)
    return walk


def measure(root: Path, ctd: Containerd, repeat: int) -> dict[str, float]:
    ctr = ["ctr", "--address", ctd.address, "-n", NS, "snapshots"]
    ctr_ls = run(*ctr, "ls")
    ctr_usage = run(*ctr, "usage")
    nsnap = len(ctr_ls().splitlines()) - 1
    print(f"snapshots in namespace {NS}: {nsnap}", file=sys.stderr)
    times = {"ctr snapshots ls": best(ctr_ls, repeat),
             "ctr snapshots usage": best(ctr_usage, repeat)}
    ctd.stop()
    crilink = [shutil.which("crilink") or "crilink"]
    times["crilink snapshots -o json"] = best(
        run(*crilink, "snapshots", str(root), "-o", "json", ok=(0, 1)), repeat)
    snaps = str(root / SNAP_DIRS)
    times["du -sx snapshots/"] = best(run("du", "-sx", snaps), repeat)
    times["crilink usage (usage_of)"] = best(run(
        sys.executable, "-c", "import sys; from crilink.stores.usage import usage_of; "
        "print(usage_of([sys.argv[1]]))", snaps), repeat)
    for rel in (META_DB, SNAP_DB):
        walk = reader_walk(root / rel)
        times[f"reader: full walk of {Path(rel).name} ({walk()} keys)"] = best(walk, repeat)
    return times


def report(times: dict[str, float]) -> None:
    for name, secs in times.items():
        print(f"{name:55} {secs:8.3f} s")
    pair = times["ctr snapshots ls"] + times["ctr snapshots usage"]
    ratio_ctr = times["crilink snapshots -o json"] / pair
    ratio_du = times["crilink usage (usage_of)"] / times["du -sx snapshots/"]
    print(f"crilink snapshots / (ctr ls + ctr usage) = {ratio_ctr:.2f}x (target <= {TARGET_CTR})")
    print(f"crilink usage / du -sx = {ratio_du:.2f}x (target <= {TARGET_DU})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp/crilink-bench-ctd"))
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--layers", type=int, default=50)
    parser.add_argument("--actives", type=int, default=8000)
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    root = args.workdir / "root"
    ctd = Containerd(root, gc="delayed")
    try:
        ctd.start()
        if not (args.workdir / DONE_MARK).exists():
            print(f"building the store in {root} ...", file=sys.stderr)
            build_store(ctd, args.workdir, args)
            (args.workdir / DONE_MARK).write_text("built by bench_containerd.py\n")
        report(measure(root, ctd, args.repeat))
    finally:
        ctd.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
