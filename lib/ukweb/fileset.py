"""Generate and verify the SPECweb99 file set (spec §1), deterministically from a seed.

Layout: `<out>/file_set/dirNNNNN/classC_F`. Resumable: each file is written under a temporary
name, fsync'd and renamed; a directory counts as done only when its `.complete` marker (written
last) names the same seed and format, so a half-written file set is completed, never trusted.
The manifest `.ukweb-fileset.json` marks a `file_set` as ours: we never touch a directory that
lacks it and is not empty, and we never delete anything but our own temporary files.

Speed: the random filler comes from one pool of random printable bytes, already laid out in
64-byte lines; each file copies a slice at a random 64-aligned offset and patches its header,
markers and CAD tags with numpy, so generation runs at memory-copy speed (see
bench/fileset_speed.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ukweb.workload import (
    CLASSES,
    DIR_BYTES,
    FILES_PER_CLASS,
    file_path,
    file_size,
    fileset_bytes,
    ndirs,
)

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = ".ukweb-fileset.json"
COMPLETE = ".complete"
TMP_SUFFIX = ".ukweb-tmp"
LINE = 64
MARKER_EVERY = 4096
# [I] The filler alphabet: the real sample (S3) holds '}' (125), the .NET port uses 33..124;
# 33..125 covers both and never produces '\n' or a space.
FILLER_LOW, FILLER_HIGH = 33, 125
CAD_TAG_LINE = b'<!WEB99CAD><IMG SRC="/file_set/dirNNNNN/classX_Y"><!/WEB99CAD>\n'  # 63 bytes
TAGS_PER_CLASS = (0, 1, 2, 0)  # CAD tags in class0..3 files (§1.4)
POOL_BYTES = 2 * 1024 * 1024  # > the largest body (921,563 bytes) plus any offset


class FilesetError(Exception):
    """A file set that is missing, foreign, incomplete or wrong; the message names the file."""


class FilesetUsageError(FilesetError):
    """Bad parameters or an `--out` that holds something else: the caller's mistake (exit 2)."""


# --- one file -----------------------------------------------------------------------------


def filler_pool(seed: int) -> np.ndarray:
    """POOL_BYTES of random printable bytes with '\\n' at every offset = 63 mod 64."""
    rng = np.random.default_rng([seed, 0x5EC])
    pool = rng.integers(FILLER_LOW, FILLER_HIGH + 1, POOL_BYTES, dtype=np.uint8)
    pool[LINE - 1 :: LINE] = ord("\n")
    return pool


def header(cls_: int, num: int, dir_: int) -> bytes:
    """The mandatory first line `%9d %s\\n`: whole-file size and relative name (§1.4)."""
    return b"%9d %s\n" % (file_size(cls_, num), file_path(dir_, cls_, num).encode())


def tag_markers(markers: int, tags: int, rng: np.random.Generator) -> list[int]:
    """Marker indices that get a CAD tag: one random marker in each of `tags` equal groups.

    Mirrors wafgen's `Random.Next(i*m, (i+1)*m - 1)`: exclusive upper bound, and the lower
    bound itself when the range is empty (§1.4).
    """
    if tags == 0:
        return []
    m = markers // tags
    return [i * m + (int(rng.integers(0, m - 1)) if m > 2 else 0) for i in range(tags)]


def render(cls_: int, num: int, dir_: int, pool: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The bytes of file classC_F of directory dir_ (§1.4)."""
    head = header(cls_, num, dir_)
    size = file_size(cls_, num)
    body_len = size - len(head)
    out = np.empty(size, dtype=np.uint8)
    out[: len(head)] = np.frombuffer(head, dtype=np.uint8)
    offset = int(rng.integers(0, (POOL_BYTES - body_len) // LINE)) * LINE
    body = out[len(head) :]
    body[:] = pool[offset : offset + body_len]
    name = np.frombuffer(file_path(dir_, cls_, num).encode(), dtype=np.uint8)
    markers = body_len // MARKER_EVERY + 1
    body[::MARKER_EVERY] = name[np.arange(markers) % len(name)]
    tag = np.frombuffer(CAD_TAG_LINE, dtype=np.uint8)
    for marker in tag_markers(markers, TAGS_PER_CLASS[cls_], rng):
        at = marker * MARKER_EVERY + 1
        body[at : at + len(tag)] = tag
    return out


def _write_file(path: Path, data: np.ndarray) -> None:
    """Write under a temporary name, fsync, rename: a file is either complete or absent."""
    tmp = path.with_name(path.name + TMP_SUFFIX)
    with open(tmp, "wb") as f:
        f.write(memoryview(data))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# --- one directory ------------------------------------------------------------------------


def dir_name(dir_: int) -> str:
    return f"dir{dir_:05d}"


def _marker_text(seed: int) -> str:
    return json.dumps({"format": FORMAT_VERSION, "seed": seed})


def dir_complete(root: Path, dir_: int, seed: int) -> bool:
    """True when the directory's completion marker names this seed and format."""
    marker = root / dir_name(dir_) / COMPLETE
    try:
        return marker.read_text() == _marker_text(seed)
    except OSError:
        return False


def generate_dir(root: Path, dir_: int, seed: int, pool: np.ndarray) -> None:
    """(Re)write all 36 files of one directory, then its completion marker."""
    path = root / dir_name(dir_)
    path.mkdir(exist_ok=True)
    (path / COMPLETE).unlink(missing_ok=True)  # ours: written below, only by us
    for stale in path.glob("*" + TMP_SUFFIX):
        stale.unlink()  # our own temporary files from an interrupted run
    rng = np.random.default_rng([seed, dir_ + 1])
    for cls_ in range(CLASSES):
        for num in range(FILES_PER_CLASS):
            _write_file(path / f"class{cls_}_{num}", render(cls_, num, dir_, pool, rng))
    marker = path / COMPLETE
    marker.write_text(_marker_text(seed))
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # the renames and the marker reach the disk together
    finally:
        os.close(fd)


# --- the whole file set -------------------------------------------------------------------


def _resolve_dirs(connections: int | None, dirs: int | None) -> int:
    if (connections is None) == (dirs is None):
        raise FilesetUsageError("give exactly one of connections or dirs")
    if dirs is not None:
        if isinstance(dirs, bool) or not isinstance(dirs, int) or dirs < 1:
            raise FilesetUsageError(f"dirs must be a positive integer, got {dirs!r}")
        return dirs
    try:
        return ndirs(connections)  # type: ignore[arg-type]
    except ValueError as e:
        raise FilesetUsageError(str(e)) from None


def _claim(root: Path, seed: int, dirs: int) -> None:
    """Create or adopt `root` as our file set; refuse a foreign or differently seeded one."""
    manifest = root / MANIFEST
    if root.exists() and not root.is_dir():
        raise FilesetUsageError(f"{root} exists and is not a directory")
    if manifest.is_file():
        old = read_manifest(root)
        if old.get("seed") != seed or old.get("format") != FORMAT_VERSION:
            raise FilesetUsageError(
                f"{root} holds a file set generated with seed {old.get('seed')} "
                f"(format {old.get('format')}); use that seed or another --out"
            )
        dirs = max(dirs, int(old.get("dirs", 0)))
    elif root.is_dir() and any(root.iterdir()):
        raise FilesetUsageError(f"{root} exists and holds something else than a ukweb file set")
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / (MANIFEST + TMP_SUFFIX)
    tmp.write_text(json.dumps({"format": FORMAT_VERSION, "seed": seed, "dirs": dirs}))
    os.replace(tmp, manifest)


def read_manifest(root: Path) -> dict:
    """The manifest of a file set root; FilesetError when absent or unreadable."""
    try:
        data = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError) as e:
        raise FilesetError(f"{root} is not a ukweb file set ({MANIFEST}: {e})") from None
    if not isinstance(data, dict):
        raise FilesetError(f"{root / MANIFEST} is not a JSON object")
    return data


def _progress(total: int, desc: str, enabled: bool) -> tqdm:
    disable = not enabled or not sys.stderr.isatty() or bool(os.environ.get("CI"))
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, disable=disable)


def generate(
    out: Path, *, connections: int | None = None, dirs: int | None = None, seed: int = 1,
    progress: bool = True,
) -> Path:
    """Generate (or complete) the file set for a load into `out/file_set`; returns that path."""
    count = _resolve_dirs(connections, dirs)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise FilesetUsageError(f"seed must be a non-negative integer, got {seed!r}")
    root = Path(out) / "file_set"
    _claim(root, seed, count)
    todo = [d for d in range(count) if not dir_complete(root, d, seed)]
    log.info("file set %s: %d dirs, %d to write (%.2f GB)", root, count, len(todo),
             len(todo) * DIR_BYTES / 1e9)
    if todo:
        pool = filler_pool(seed)
        with _progress(len(todo) * DIR_BYTES, "fileset", progress) as bar:
            for d in todo:
                generate_dir(root, d, seed, pool)
                bar.update(DIR_BYTES)
    return root


def ensure(out: Path, connections: int, seed: int = 1) -> Path:
    """The file set for `connections`, reusing complete directories (generate is resumable)."""
    return generate(out, connections=connections, seed=seed, progress=True)


# --- verification -------------------------------------------------------------------------


def verify_file(path: Path, cls_: int, num: int, dir_: int) -> None:
    """Check one file against §1.4; FilesetError naming the file and the first problem."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise FilesetError(f"{path}: cannot read ({e.strerror})") from None
    problem = _file_problem(data, cls_, num, dir_)
    if problem:
        raise FilesetError(f"{path}: {problem}")


def _file_problem(data: np.ndarray, cls_: int, num: int, dir_: int) -> str | None:
    size = file_size(cls_, num)
    if len(data) != size:
        return f"size {len(data)}, expected {size}"
    head = header(cls_, num, dir_)
    if data[: len(head)].tobytes() != head:
        return f"header {data[: len(head)].tobytes()!r}, expected {head!r}"
    body = data[len(head) :]
    nl = body[LINE - 1 :: LINE]
    if not (nl == ord("\n")).all():
        return f"line {int(np.argmax(nl != ord(chr(10))))} of the body is not 64 bytes"
    name = np.frombuffer(file_path(dir_, cls_, num).encode(), dtype=np.uint8)
    marks = body[::MARKER_EVERY]
    if not (marks == name[np.arange(len(marks)) % len(name)]).all():
        return "validation markers do not cycle through the file name"
    return _tag_problem(body, cls_) or _filler_problem(body)


def _tag_problem(body: np.ndarray, cls_: int) -> str | None:
    raw = body.tobytes()
    tag = CAD_TAG_LINE[:-1]
    at, found = raw.find(tag), []
    while at >= 0:
        found.append(at)
        at = raw.find(tag, at + 1)
    if len(found) != TAGS_PER_CLASS[cls_]:
        return f"{len(found)} CAD tags, expected {TAGS_PER_CLASS[cls_]}"
    if any((a - 1) % MARKER_EVERY for a in found):
        return "a CAD tag does not follow a validation marker"
    return None


def _filler_problem(body: np.ndarray) -> str | None:
    text = body.copy()
    text[LINE - 1 :: LINE] = ord("x")  # the newlines were checked above
    bad = (text < 32) | (text > 126)
    if bad.any():
        return f"non-printable byte at body offset {int(np.argmax(bad))}"
    return None


def fileset_root(path: Path) -> Path:
    """Accept either the `file_set` directory or the directory that holds it."""
    path = Path(path)
    return path / "file_set" if (path / "file_set").is_dir() else path


def verify(root: Path, dirs: int | None = None, *, progress: bool = False) -> None:
    """Check every file of the file set; FilesetError naming the first bad file."""
    root = fileset_root(root)
    manifest = read_manifest(root)
    count = int(manifest.get("dirs", 0)) if dirs is None else dirs
    seed = manifest.get("seed")
    if count < 1:
        raise FilesetError(f"{root}: no directories to verify")
    with _progress(count * DIR_BYTES, "verify", progress) as bar:
        for d in range(count):
            if not dir_complete(root, d, seed):  # type: ignore[arg-type]
                raise FilesetError(f"{root / dir_name(d)}: incomplete (no {COMPLETE} marker)")
            for cls_ in range(CLASSES):
                for num in range(FILES_PER_CLASS):
                    verify_file(root / dir_name(d) / f"class{cls_}_{num}", cls_, num, d)
            bar.update(DIR_BYTES)
    log.info("file set %s: %d dirs, %d bytes verified", root, count, fileset_bytes(count))


# --- CLI ----------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument as one line and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: {message}", file=sys.stderr)
        raise SystemExit(2)


def _int_at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer >= low (1 for counts, 0 for the seed)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    return parse


_positive = _int_at_least(1)
_seed = _int_at_least(0)


def _generate_parser() -> _Parser:
    p = _Parser(prog="ukweb fileset", description="Generate a SPECweb99 file set (spec §1).")
    size = p.add_mutually_exclusive_group(required=True)
    size.add_argument("--connections", type=_positive, help="size it for this many connections")
    size.add_argument("--dirs", type=_positive, help="explicit number of directories")
    p.add_argument("--out", type=Path, required=True, help="directory that will hold file_set/")
    p.add_argument("--seed", type=_seed, default=1, help="random seed (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _verify_parser() -> _Parser:
    p = _Parser(prog="ukweb fileset verify", description="Verify every file of a file set.")
    p.add_argument("root", type=Path, help="the file_set directory or the one holding it")
    p.add_argument("--dirs", type=_positive, help="verify only the first N directories")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def cli(argv: list[str]) -> int:
    """`ukweb fileset ...` and `ukweb fileset verify DIR`."""
    try:
        if argv[:1] == ["verify"]:
            args = _verify_parser().parse_args(argv[1:])
            verify(args.root, args.dirs, progress=not args.no_progress)
            print(f"ok: {fileset_root(args.root)}")
            return 0
        args = _generate_parser().parse_args(argv)
        root = generate(args.out, connections=args.connections, dirs=args.dirs,
                        seed=args.seed, progress=not args.no_progress)
        print(root)
        return 0
    except FilesetUsageError as e:
        print(f"ukweb fileset: {e}", file=sys.stderr)
        return 2
    except FilesetError as e:
        print(f"ukweb fileset: {e}", file=sys.stderr)
        return 1
