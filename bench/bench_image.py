"""Image scan benchmark (by hand, not in CI): ``crilink scan`` of an OCI layout against
``umoci unpack`` + ``find ROOTFS -xtype l`` on the same image, in the same run.

    python bench/bench_image.py [--rootfs DIR] [--work DIR] [--runs N]

The image is built once with umoci from the debootstrap minbase root filesystem of the
fixtures (``$CRILINK_FIXTURES/rootfs/debian-minbase``): layer 1 is the whole tree, layer 2
removes /usr/share/doc and /usr/share/man (whiteouts) and adds a few links. It is cached in
``--work`` (default /var/tmp/crilink-bench/image). Each command runs once to warm the page
cache, then ``--runs`` times; the median wall time is reported. The unpacked bundle is
removed between runs (not timed). Needs root (umoci unpack keeps owners) and umoci.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

TAG = "bench"
DEFAULT_ROOTFS = Path(os.environ.get("CRILINK_FIXTURES", "/var/tmp/crilink-fixtures")) \
    / "rootfs/debian-minbase"


def run(*cmd: str | Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(c) for c in cmd], check=True, capture_output=True)


def build(rootfs: Path, work: Path) -> Path:
    layout = work / "layout"
    if (layout / "index.json").is_file():
        return layout
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    image, bundle = f"{layout}:{TAG}", work / "bundle"
    run("umoci", "init", "--layout", layout)
    run("umoci", "new", "--image", image)
    run("umoci", "unpack", "--image", image, bundle)
    run("cp", "-a", f"{rootfs}/.", bundle / "rootfs")
    run("umoci", "repack", "--image", image, bundle)
    shutil.rmtree(bundle)
    run("umoci", "unpack", "--image", image, bundle)
    for sub in ("usr/share/doc", "usr/share/man"):
        shutil.rmtree(bundle / "rootfs" / sub, ignore_errors=True)
    (bundle / "rootfs/usr/local/bin/to-doc").symlink_to("/usr/share/doc/README")
    run("umoci", "repack", "--image", image, bundle)
    shutil.rmtree(bundle)
    return layout


def timed(func: Callable[[], object], runs: int, reset: Callable[[], None]) -> list[float]:
    reset()
    func()  # warm the page cache
    out = []
    for _ in range(runs):
        reset()
        start = time.perf_counter()
        func()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rootfs", type=Path, default=DEFAULT_ROOTFS)
    parser.add_argument("--work", type=Path, default=Path("/var/tmp/crilink-bench/image"))
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    layout = build(args.rootfs, args.work)
    bundle = args.work / "unpacked"

    def crilink() -> object:
        return subprocess.run([sys.executable, "-m", "crilink.cli.main", "scan", str(layout),
                               "-o", "json"], check=False, capture_output=True)

    def umoci_find() -> object:
        run("umoci", "unpack", "--image", f"{layout}:{TAG}", bundle)
        return run("find", bundle / "rootfs", "-xtype", "l")

    def reset() -> None:
        shutil.rmtree(bundle, ignore_errors=True)

    ours = timed(crilink, args.runs, reset)
    rss_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    theirs = timed(umoci_find, args.runs, reset)
    reset()
    entries = sum(1 for _ in args.rootfs.rglob("*"))
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"image: {layout} ({entries} entries in the rootfs, 2 layers)")
    print(f"crilink scan               median {a:7.3f} s  (runs: "
          f"{', '.join(f'{t:.3f}' for t in ours)})")
    print(f"umoci unpack + find -xtype median {b:7.3f} s  (runs: "
          f"{', '.join(f'{t:.3f}' for t in theirs)})")
    print(f"speed-up: {b / a:.1f}x (target >= 5x); peak RSS of a child: {rss_kib / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
