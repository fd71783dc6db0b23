"""Root filesystem scan benchmark (by hand, not in CI): ``crilink scan ROOT -o json`` against
``find ROOT -xtype l`` and ``symlinks -rv ROOT`` on the same trees, in the same run.

    python bench/bench_rootfs.py [--workdir /var/tmp/crilink-bench-rootfs] [--entries 1000000]
                                 [--repeat 3] [--no-debian]

Trees:
- ``gen``: generated once and cached in ``--workdir`` (a ``.done`` file marks a finished
  tree). Three levels of directories (t*/m*/l*) with 100 entries per leaf directory: 80 empty
  files and 20 symlinks of every kind: relative ok (same dir, sibling dir, through a directory
  link), absolute ok, chains of 3, dangling (missing, absolute missing, through a file), a
  cycle pair, ``..``-escaping texts (one that still resolves once clamped, one that does
  not), plus one directory link per middle directory.
- ``debian``: the debootstrap minbase root filesystem of the fixtures
  (``$CRILINK_FIXTURES/rootfs/debian-minbase``), when present.

Each command runs once to warm the page cache, then ``--repeat`` times; the best wall time is
kept. crilink's peak RSS is the max RSS of its child processes (``RUSAGE_CHILDREN``, measured
in a fresh helper process per tree so one tree's peak does not hide another's).
Needs the ``symlinks`` tool (Debian package ``symlinks``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_WORK = Path("/var/tmp/crilink-bench-rootfs")
FIXTURES = Path(os.environ.get("CRILINK_FIXTURES", "/var/tmp/crilink-fixtures"))
TOP, MID, LEAF = 20, 50, 10  # 10,000 leaf dirs
FILES, PER_LEAF = 80, 100
TARGET_RSS_MB = 200
TARGET_RATIO = 0.75


def _links(t: int, m: int, leaf: int) -> list[tuple[str, str]]:
    """The 20 (name, text) symlinks of leaf dir t/m/l (every kind of link)."""
    o_t, o_m, o_l = (t + 7) % TOP, (m + 13) % MID, (leaf + 3) % LEAF
    other = f"t{o_t}/m{o_m}/l{o_l}"
    return [
        ("rel-same", "f1"),
        ("rel-sib", f"../l{o_l}/f2"),
        ("rel-up", f"../../m{o_m}/l{o_l}/f3"),
        ("rel-far", f"../../../{other}/f4"),
        ("rel-dirlink", f"../../dl/l{o_l}/f5"),
        ("rel-dot", "./f6"),
        ("rel-dir", f"../l{o_l}"),
        ("abs-ok", f"/{other}/f7"),
        ("abs-dirlink", f"/t{o_t}/m{o_m}/dl/l{leaf}/f8"),
        ("chain0", "chain1"),
        ("chain1", "chain2"),
        ("chain2", f"../l{o_l}/f9"),
        ("dangling", "nope"),
        ("dangling-abs", f"/t{o_t}/m{o_m}/gone/f1"),
        ("through-file", "f10/x"),
        ("loop-a", "loop-b"),
        ("loop-b", "./loop-a"),
        ("escape-ok", f"../../../../../{other}/f11"),
        ("escape-bad", "../../../../../etc/passwd"),
        ("rel-file", f"../../../t{t}/m{m}/l{leaf}/f12"),
    ]


def generate(work: Path, entries: int) -> Path:
    """Build the tree once (about ``entries`` entries); reused when ``.done`` is there."""
    root = work / "gen"
    done = work / ".done"
    if done.is_file() and done.read_text().strip() == str(entries):
        return root
    if root.exists():
        subprocess.run(["rm", "-rf", str(root)], check=True)
    leaves = max(1, entries // PER_LEAF)
    started = time.monotonic()
    made = 0
    for t in range(TOP):
        for m in range(MID):
            mid = root / f"t{t}/m{m}"
            for leaf in range(LEAF):
                idx = (t * MID + m) * LEAF + leaf
                if idx >= leaves:
                    break
                d = mid / f"l{leaf}"
                d.mkdir(parents=True)
                fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    for i in range(FILES):
                        os.close(os.open(f"f{i}", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd))
                    for name, text in _links(t, m, leaf):
                        os.symlink(text, name, dir_fd=fd)
                finally:
                    os.close(fd)
                made += PER_LEAF + 1
            if mid.is_dir():
                (mid / "dl").symlink_to(f"../m{(m + 1) % MID}")
                made += 1
    done.write_text(f"{entries}\n")
    print(f"generated {made:,} entries in {root} in {time.monotonic() - started:.0f} s",
          file=sys.stderr)
    return root


def best_of(argv: list[str], repeat: int) -> tuple[float, bytes]:
    subprocess.run(argv, capture_output=True, check=False)  # warm the page cache
    best, out = float("inf"), b""
    for _ in range(repeat):
        t0 = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, check=False)
        best = min(best, time.perf_counter() - t0)
        out = proc.stdout
    return best, out


def peak_rss_mb(argv: list[str]) -> float:
    """Max RSS of ``argv``, run under a fresh helper so only its own peak counts."""
    code = ("import resource,subprocess,sys;"
            "subprocess.run(sys.argv[1:],stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL);"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                         check=True)
    return int(out.stdout.strip()) / 1024


def bench_tree(label: str, root: Path, repeat: int) -> dict[str, float]:
    crilink = [sys.executable, "-m", "crilink.cli.main", "scan", str(root), "-o", "json"]
    find = ["find", str(root), "-xtype", "l"]
    symlinks = ["symlinks", "-rv", str(root)]
    ours, out = best_of(crilink, repeat)
    summary = json.loads(out)["summary"]
    t_find, found = best_of(find, repeat)
    t_sym, _ = best_of(symlinks, repeat)
    rss = peak_rss_mb(crilink)
    stats = summary["stats"]
    lines = found.count(b"\n")
    print(f"\n## {label}: {root}")
    print(f"entries {stats['entries']:,}, symlinks {stats['symlinks']:,}, "
          f"findings {summary['total']:,} {summary['by_kind']}; "
          f"find -xtype l lines {lines:,}")
    print(f"| command | wall time (best of {repeat}) | ours / peer |")
    print("|---|---:|---:|")
    print(f"| `crilink scan ROOT -o json` | {ours:.3f} s | |")
    print(f"| `find ROOT -xtype l` | {t_find:.3f} s | {ours / t_find:.2f}x |")
    print(f"| `symlinks -rv ROOT` | {t_sym:.3f} s | {ours / t_sym:.2f}x |")
    print(f"crilink peak RSS: {rss:.1f} MB")
    return {"crilink": ours, "find": t_find, "symlinks": t_sym, "rss_mb": rss}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, default=DEFAULT_WORK)
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-debian", action="store_true")
    ap.add_argument("--generate-only", action="store_true")
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    root = generate(args.workdir, args.entries)
    if args.generate_only:
        return 0
    print(f"bench_rootfs: {os.cpu_count()} cores, kernel {os.uname().release}")
    gen = bench_tree(f"generated tree ({args.entries:,} entries)", root, args.repeat)
    ok = gen["crilink"] <= TARGET_RATIO * gen["find"] and gen["rss_mb"] < TARGET_RSS_MB
    debian = FIXTURES / "rootfs/debian-minbase"
    if not args.no_debian and debian.is_dir():
        bench_tree("debootstrap minbase", debian, args.repeat)
    print(f"\ntargets (generated tree): wall <= {TARGET_RATIO}x find -xtype l: "
          f"{'met' if gen['crilink'] <= TARGET_RATIO * gen['find'] else 'NOT met'} "
          f"({gen['crilink'] / gen['find']:.2f}x); peak RSS < {TARGET_RSS_MB} MB: "
          f"{'met' if gen['rss_mb'] < TARGET_RSS_MB else 'NOT met'} ({gen['rss_mb']:.0f} MB)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
