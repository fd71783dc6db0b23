"""Docker's overlay2 data root: the store adapter, a read-only view, and discovery.

Nouns (see :mod:`crilink.formats.docker` for the on-disk layout):
- *chain*: a layerdb entry, named by its chain id (bare hex here); its *cache id* names its
  driver dir ``overlay2/<cache-id>``.
- *mount*: a container's read-write layer (``mount-id``) and init layer (``init-id``,
  ``<mount-id>-init``), both driver dirs, on top of a parent chain.
- *layer dir*: any entry of ``overlay2/`` except the short-link dir ``l``.

Guarantees: reading never writes and never talks to dockerd. ``runtime_status`` looks at
``/proc`` for a dockerd whose data root is this store (or a managed containerd under it).
Errors: an unreadable data root raises :class:`InputError`; malformed JSON raises
:class:`CorruptInputError`.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from crilink.errors import InputError, denied_hint
from crilink.formats import docker as fmt
from crilink.formats.jsondoc import parse_json
from crilink.model import TargetKind
from crilink.pathres.files import read_regular
from crilink.stores.base import RuntimeStatus

__all__ = [
    "DAEMON_JSON",
    "DEFAULT_DATA_ROOT",
    "DockerContainer",
    "DockerDiscovery",
    "DockerImage",
    "DockerLayer",
    "DockerMount",
    "DockerStore",
    "DockerView",
    "dockerd_processes",
    "find_docker",
    "open_docker",
]

DEFAULT_DATA_ROOT = "/var/lib/docker"
DAEMON_JSON = "/etc/docker/daemon.json"
DATA_ROOT_KEY = "data-root"
LEGACY_GRAPH_KEY = "graph"
DOCKERD_EXE = "dockerd"
CONTAINERD_EXE = "containerd"
MANAGED_CONTAINERD_DIR = "containerd"  # <data-root>/containerd/daemon: dockerd's own containerd
_DATA_ROOT_FLAGS = ("--data-root", "-g", "--graph")
_CONFIG_FLAG = "--config-file"
SMALL_FILE_LIMIT = 64 << 10  # layerdb cache-id, parent, diff, size: under 100 bytes each
_HOST_FLAGS = ("-H", "--host")
_PIDFILE_FLAGS = ("-p", "--pidfile")


def _strip(digest: str | None) -> str | None:
    if digest is None:
        return None
    return digest.removeprefix(fmt.SHA256_PREFIX)


@dataclass(frozen=True, slots=True)
class DockerLayer:
    """A layerdb chain: ids are bare hex; ``parent`` is a chain id or ``None`` for a base."""

    chain_id: str
    cache_id: str | None
    parent: str | None
    diff_id: str | None
    size: int | None


@dataclass(frozen=True, slots=True)
class DockerMount:
    """A container's layers: ``mount_id``/``init_id`` are driver dir names."""

    container_id: str
    mount_id: str | None
    init_id: str | None
    parent: str | None


@dataclass(frozen=True, slots=True)
class DockerImage:
    """An image in imagedb: its id, its top chain (``None`` for an image with no layers)."""

    image_id: str
    top_chain: str | None
    refs: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DockerContainer:
    """A container dir with its config: name and image id (bare hex)."""

    id: str
    name: str | None
    image: str | None


@dataclass(frozen=True, slots=True)
class DockerView:
    """Everything the checks need from one data root, read once."""

    root: Path
    layers: Mapping[str, DockerLayer]
    mounts: Mapping[str, DockerMount]
    images: Mapping[str, DockerImage]
    containers: Mapping[str, DockerContainer]
    layer_dirs: frozenset[str]
    pending: tuple[str, ...]  # layerdb/tmp entries: registrations a crash interrupted

    def known_dirs(self) -> frozenset[str]:
        """Driver dir names some record knows: cache ids, mount ids and init ids."""
        known = {layer.cache_id for layer in self.layers.values()}
        for mount in self.mounts.values():
            known.update((mount.mount_id, mount.init_id))
        return frozenset(k for k in known if k)


def _read_small_files(directory: Path) -> dict[str, bytes]:
    """name -> content of a record dir's small files. A file that is not a regular file (a
    symlink, FIFO, device), unreadable or over :data:`SMALL_FILE_LIMIT` reads as empty: the
    record then lacks that field, which the checks report (never a hang, never a crash)."""
    out: dict[str, bytes] = {}
    try:
        entries = list(os.scandir(directory))
    except OSError as err:
        raise InputError(f"read {directory}: {err.strerror}") from err
    for entry in entries:
        if entry.name.endswith(".gz") or entry.is_dir(follow_symlinks=False):
            continue
        try:
            out[entry.name] = read_regular(entry.path, entry.path, limit=SMALL_FILE_LIMIT)
        except InputError:
            out[entry.name] = b""
    return out


def _read_doc(path: Path) -> bytes | None:
    """A JSON document's bytes (regular file, capped); ``None`` when it is absent."""
    if not os.path.lexists(path):
        return None
    return read_regular(path, str(path))


def _subdirs(directory: Path) -> list[str]:
    try:
        return sorted(e.name for e in os.scandir(directory) if e.is_dir(follow_symlinks=False))
    except FileNotFoundError:
        return []
    except OSError as err:
        raise InputError(f"list {directory}: {err.strerror}") from err


def _read_layers(root: Path) -> dict[str, DockerLayer]:
    base = root / fmt.LAYERDB_SHA256_DIR
    out: dict[str, DockerLayer] = {}
    for name in _subdirs(base):
        if not fmt.is_hex_id(name):
            continue
        raw = fmt.layer_record(name, _read_small_files(base / name))
        out[name] = DockerLayer(name, raw.cache_id, _strip(raw.parent), raw.diff_id, raw.size)
    return out


def _read_mounts(root: Path) -> dict[str, DockerMount]:
    base = root / fmt.MOUNTS_DIR
    out: dict[str, DockerMount] = {}
    for name in _subdirs(base):
        raw = fmt.mount_record(name, _read_small_files(base / name))
        out[name] = DockerMount(name, raw.mount_id, raw.init_id, _strip(raw.parent))
    return out


def _read_images(root: Path) -> dict[str, DockerImage]:
    refs: dict[str, list[str]] = {}
    repo_doc = _read_doc(root / fmt.REPOSITORIES_FILE)
    if repo_doc is not None:
        for ref, image_id in fmt.parse_repositories(repo_doc).items():
            refs.setdefault(_strip(image_id) or image_id, []).append(ref)
    base = root / fmt.IMAGEDB_CONTENT_DIR
    out: dict[str, DockerImage] = {}
    for entry in sorted(os.scandir(base), key=lambda e: e.name) if base.is_dir() else []:
        if not fmt.is_hex_id(entry.name) or entry.is_dir(follow_symlinks=False):
            continue
        config = fmt.parse_image_config(entry.name, read_regular(entry.path, entry.path))
        chains = fmt.chain_ids(config.diff_ids)
        top = _strip(chains[-1]) if chains else None
        out[entry.name] = DockerImage(entry.name, top, tuple(sorted(refs.get(entry.name, []))))
    return out


def _read_containers(root: Path) -> dict[str, DockerContainer]:
    base = root / fmt.CONTAINERS_DIR
    out: dict[str, DockerContainer] = {}
    for name in _subdirs(base):
        config = _read_doc(base / name / fmt.CONFIG_V2_FILE)
        if config is None:
            out[name] = DockerContainer(name, None, None)
            continue
        raw = fmt.parse_container_config(name, config)
        out[name] = DockerContainer(name, raw.name, _strip(raw.image))
    return out


def _layer_dirs(root: Path) -> frozenset[str]:
    return frozenset(n for n in _subdirs(root / fmt.DRIVER_DIR) if n != "l")


def open_docker(root: str | os.PathLike[str]) -> DockerView:
    """Read the data root at ``root`` (must hold ``image/overlay2``) into a :class:`DockerView`."""
    path = Path(root).absolute()
    if not (path / fmt.IMAGE_DIR).is_dir():
        raise InputError(f"open {path}: not a Docker overlay2 data root (no {fmt.IMAGE_DIR}/)")
    try:
        return DockerView(path, _read_layers(path), _read_mounts(path), _read_images(path),
                          _read_containers(path), _layer_dirs(path),
                          tuple(_subdirs(path / fmt.LAYERDB_TMP_DIR)))
    except PermissionError as err:
        raise InputError(f"read {path}: permission denied{denied_hint()}") from err


# ---------------------------------------------------------------- runtime detection


@dataclass(frozen=True, slots=True)
class DockerdProcess:
    """A running dockerd (or a containerd it manages): pid, data root, socket, pidfile."""

    pid: int
    exe: str
    data_root: str
    hosts: tuple[str, ...] = ()
    pidfile: str | None = None


def _flag_values(argv: list[str], names: tuple[str, ...]) -> list[str]:
    values: list[str] = []
    for i, arg in enumerate(argv):
        for name in names:
            if arg == name and i + 1 < len(argv):
                values.append(argv[i + 1])
            elif arg.startswith(name + "="):
                values.append(arg[len(name) + 1:])
    return values


def configured_data_root(config_file: str = DAEMON_JSON) -> str:
    """The data root a dockerd started with ``config_file`` uses (no flag given)."""
    try:
        doc = parse_json(read_regular(config_file, config_file, limit=1 << 20), config_file)
    except InputError:
        return DEFAULT_DATA_ROOT
    if isinstance(doc, dict):
        for key in (DATA_ROOT_KEY, LEGACY_GRAPH_KEY):
            value = doc.get(key)
            if isinstance(value, str) and value:
                return value
    return DEFAULT_DATA_ROOT


def _proc_argv(proc: Path, pid: str) -> tuple[str, list[str]] | None:
    try:
        exe = str((proc / pid / "exe").readlink())
        argv = (proc / pid / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    return exe.removesuffix(" (deleted)"), [os.fsdecode(a) for a in argv if a]


def _as_dockerd(pid: int, exe: str, argv: list[str]) -> DockerdProcess | None:
    name = Path(exe).name
    if name == DOCKERD_EXE:
        roots = _flag_values(argv, _DATA_ROOT_FLAGS)
        configs = _flag_values(argv, (_CONFIG_FLAG,))
        root = roots[-1] if roots else configured_data_root(configs[-1] if configs else DAEMON_JSON)
        pidfiles = _flag_values(argv, _PIDFILE_FLAGS)
        return DockerdProcess(pid, exe, root, tuple(_flag_values(argv, _HOST_FLAGS)),
                              pidfiles[-1] if pidfiles else None)
    if name == CONTAINERD_EXE:
        roots = _flag_values(argv, ("--root",))
        roots += [r for c in _flag_values(argv, ("-c", "--config")) if (r := _toml_root(c))]
        for root in roots:
            parent = Path(os.path.normpath(root)).parent
            if parent.name == MANAGED_CONTAINERD_DIR:
                return DockerdProcess(pid, exe, str(parent.parent))
    return None


def _toml_root(config: str) -> str | None:
    """The ``root`` of a containerd config (dockerd writes one for the containerd it manages)."""
    try:
        doc = tomllib.loads(Path(config).read_text())
    except (OSError, ValueError):
        return None
    root = doc.get("root")
    return root if isinstance(root, str) else None


def dockerd_processes(proc: str = "/proc") -> Iterator[DockerdProcess]:
    """Every running dockerd, and every containerd a dockerd manages, with their data roots."""
    base = Path(proc)
    for pid in sorted((p.name for p in base.iterdir() if p.name.isdigit()), key=int):
        found = _proc_argv(base, pid)
        if found is not None:
            process = _as_dockerd(int(pid), *found)
            if process is not None:
                yield process


def _same_dir(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def status_for(root: str | os.PathLike[str], proc: str = "/proc") -> RuntimeStatus:
    """Whether a dockerd (or its managed containerd) runs on the data root ``root``."""
    evidence: list[str] = []
    pids: list[int] = []
    for p in dockerd_processes(proc):
        if _same_dir(p.data_root, root):
            pids.append(p.pid)
            evidence.append(f"{Path(p.exe).name} pid {p.pid} has data root {p.data_root}")
    return RuntimeStatus(bool(pids), pids[0] if pids else None, tuple(evidence))


@dataclass(frozen=True, slots=True)
class DockerStore:
    """The Store adapter for a Docker overlay2 data root (see :mod:`crilink.stores.base`)."""

    root: Path
    proc: str = "/proc"

    @property
    def kind(self) -> TargetKind:
        return TargetKind.DOCKER

    @property
    def runtime_name(self) -> str:
        return DOCKERD_EXE

    def runtime_status(self) -> RuntimeStatus:
        return status_for(self.root, self.proc)

    def view(self) -> DockerView:
        return open_docker(self.root)


@dataclass(frozen=True, slots=True)
class DockerDiscovery:
    """Where this host's Docker data root is and whether dockerd runs on it.

    ``source`` says how the root was found: ``"process"`` (a running dockerd's flags or
    config), ``"config"`` (``daemon.json``), ``"default"``.
    """

    data_root: Path
    exists: bool
    running: bool
    pid: int | None
    source: str
    evidence: tuple[str, ...] = ()


def find_docker(daemon_json: str = DAEMON_JSON, proc: str = "/proc") -> DockerDiscovery:
    """The Docker data root: a running dockerd's, else ``daemon.json``'s, else the default."""
    running = [p for p in dockerd_processes(proc) if Path(p.exe).name == DOCKERD_EXE]
    if running:
        root, source = running[0].data_root, "process"
    else:
        root = configured_data_root(daemon_json)
        source = "default" if root == DEFAULT_DATA_ROOT else "config"
    status = status_for(root, proc)
    exists = (Path(root) / fmt.IMAGE_DIR).is_dir()
    return DockerDiscovery(Path(root), exists, status.running, status.pid, source, status.evidence)
