"""Benchmark (by hand, not CI): ``crilink scan`` of a containers-storage graph root with
>= 2,000 layers against ``podman images`` + ``du -sx`` on the same store, in the same run.

The store is written by the real podman: ``podman load`` of generated docker-archives, each
one image of ``--layers`` tiny layers (a distinct file per layer, so nothing is shared).
Run as root::

    python bench/bench_cstorage.py [--workdir /var/tmp/crilink-bench-cs] [--images 20]
                                   [--layers 100] [--repeat 3]

The store is kept in the workdir and reused by later runs (delete it to rebuild). Prints the
best wall time of each command over ``--repeat`` warm runs and the ratios.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

FLAGS = ("--storage-driver", "overlay", "--cgroup-manager", "cgroupfs",
         "--events-backend", "file")


def _tar_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def make_archive(path: Path, image: int, layers: int) -> None:
    """A docker-archive of one image with ``layers`` layers, one small file each."""
    files: dict[str, bytes] = {}
    diff_ids = []
    for n in range(layers):
        blob = _tar_bytes({f"img{image}/layer{n}.txt": f"image {image} layer {n}\n".encode()})
        digest = hashlib.sha256(blob).hexdigest()
        files[f"{digest}/layer.tar"] = blob
        diff_ids.append(digest)
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers",
                                    "diff_ids": [f"sha256:{d}" for d in diff_ids]}}).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    files[config_name] = config
    files["manifest.json"] = json.dumps([{
        "Config": config_name, "RepoTags": [f"localhost/bench/img{image}:latest"],
        "Layers": [f"{d}/layer.tar" for d in diff_ids]}]).encode()
    path.write_bytes(_tar_bytes(files))


def podman(base: Path, runroot: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    argv = ["podman", "--root", str(base / "root"), "--runroot", runroot, *FLAGS,
            "--tmpdir", str(base / "tmp"), *args]
    return subprocess.run(argv, check=True, capture_output=True)


def build_store(base: Path, images: int, layers: int) -> str:
    """Make (or reuse) the store; return its runroot (kept in base/runroot.txt)."""
    marker = base / "runroot.txt"
    if marker.exists():
        runroot = marker.read_text().strip()
        Path(runroot).mkdir(parents=True, exist_ok=True)
        return runroot
    (base / "tmp").mkdir(parents=True, exist_ok=True)
    runroot = tempfile.mkdtemp(prefix="crl-bench.", dir="/tmp")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=base) as work:
        for i in range(images):
            archive = Path(work) / f"img{i}.tar"
            make_archive(archive, i, layers)
            podman(base, runroot, "load", "-q", "-i", str(archive))
            archive.unlink()
    marker.write_text(runroot)
    print(f"built {images} images x {layers} layers in {time.perf_counter() - t0:.1f} s",
          file=sys.stderr)
    return runroot


def best_of(repeat: int, argv: list[str]) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, check=False)
        best = min(best, time.perf_counter() - t0)
        if proc.returncode not in (0, 1):
            raise SystemExit(f"{argv[0]} failed: {proc.stderr.decode()[-500:]}")
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", default="/var/tmp/crilink-bench-cs")
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--layers", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    base = Path(args.workdir)
    runroot = build_store(base, args.images, args.layers)
    root = base / "root"
    layers = len(json.loads((root / "overlay-layers/layers.json").read_text()))
    crilink = [sys.executable, "-m", "crilink.cli.main", "scan", str(root), "-o", "json"]
    pm_images = ["podman", "--root", str(root), "--runroot", runroot, *FLAGS,
                 "--tmpdir", str(base / "tmp"), "images"]
    du = ["du", "-sx", str(root)]
    best_of(1, crilink)  # warm the cache
    t_crilink = best_of(args.repeat, crilink)
    t_podman = best_of(args.repeat, pm_images)
    t_du = best_of(args.repeat, du)
    print(f"store {root}: {layers} layers, {args.images} images")
    print(f"crilink scan -o json      {t_crilink:8.3f} s")
    print(f"podman images             {t_podman:8.3f} s")
    print(f"du -sx                    {t_du:8.3f} s")
    print(f"podman images + du -sx    {t_podman + t_du:8.3f} s")
    print(f"ratio crilink / (podman images + du)  {t_crilink / (t_podman + t_du):.2f}")
    print(f"ratio crilink / du                    {t_crilink / t_du:.2f}")


if __name__ == "__main__":
    main()
