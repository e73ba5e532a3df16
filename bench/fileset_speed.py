"""File-set generation speed next to a plain write of the same bytes, measured side by side.

    .venv/bin/python bench/fileset_speed.py [--dirs 40] [--scratch /tmp] [--repeat 2]

Prints MB/s for: (1) `ukweb.fileset.generate` (render + write + fsync + rename, 36 files per
directory); (2) a dd-style write of the same files (same sizes, a constant buffer, fsync per
file, no rendering); (3) `dd bs=1M conv=fsync` of the same total into one file; (4) rendering
alone, no disk. The ratio (1)/(2) says whether generation is limited by the disk or by Python.
Numbers from a shared machine are noisy; compare ratios, not absolute speeds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from ukweb import fileset
from ukweb.workload import CLASSES, DIR_BYTES, FILES_PER_CLASS, file_size


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def plain_write(root: Path, dirs: int) -> None:
    """The same file layout written from one constant buffer: the disk's cost alone."""
    buf = memoryview(bytes(range(256)) * (1024 * 1024 // 256))
    for d in range(dirs):
        path = root / f"dir{d:05d}"
        path.mkdir(parents=True)
        for c in range(CLASSES):
            for n in range(FILES_PER_CLASS):
                with open(path / f"class{c}_{n}", "wb") as f:
                    f.write(buf[: file_size(c, n)])
                    f.flush()
                    os.fsync(f.fileno())


def dd_write(target: Path, total: int) -> None:
    count = max(1, total // 2**20)
    subprocess.run(["dd", "if=/dev/zero", f"of={target}", "bs=1M", f"count={count}",
                    "conv=fsync", "status=none"], check=True)


def render_only(dirs: int) -> None:
    pool = fileset.filler_pool(1)
    for d in range(dirs):
        rng = np.random.default_rng([1, d + 1])
        for c in range(CLASSES):
            for n in range(FILES_PER_CLASS):
                fileset.render(c, n, d, pool, rng)


def one_round(work: Path, dirs: int) -> dict[str, float]:
    """Seconds for each way of producing `dirs` directories' worth of bytes under `work`."""
    return {
        "generate (ukweb.fileset)": timed(
            lambda: fileset.generate(work / "gen", dirs=dirs, seed=1, progress=False)),
        "plain write, same files": timed(lambda: plain_write(work / "plain", dirs)),
        "dd bs=1M conv=fsync": timed(lambda: dd_write(work / "dd.bin", dirs * DIR_BYTES)),
        "render only (no disk)": timed(lambda: render_only(dirs)),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dirs", type=int, default=40, help="directories per measurement (5.1 MB each)")
    p.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()))
    p.add_argument("--repeat", type=int, default=2, help="rounds; the best of each is kept")
    args = p.parse_args()
    mb = args.dirs * DIR_BYTES / 1e6
    best: dict[str, float] = {}
    for _ in range(args.repeat):
        work = Path(tempfile.mkdtemp(prefix="fileset-bench-", dir=args.scratch))
        try:
            for name, seconds in one_round(work, args.dirs).items():
                best[name] = min(best.get(name, float("inf")), seconds)
        finally:
            shutil.rmtree(work)
    print(f"{mb:.0f} MB per measurement, best of {args.repeat} (machine may be busy)")
    for name, seconds in best.items():
        print(f"  {name:<28} {mb / seconds:8.0f} MB/s")
    ratio = best["plain write, same files"] / best["generate (ukweb.fileset)"]
    print(f"generate / plain write = {ratio:.2f}  (1.0 = limited by the disk, not by Python)")


if __name__ == "__main__":
    main()
