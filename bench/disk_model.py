"""The FUSE disk model measured against its own parameters, side by side in one run.

    .venv/bin/python bench/disk_model.py [--seek-ms 12] [--mbps 40] [--ops 40] [--qd 8]
                                         [--source FILESET] [--scratch /tmp] [--cpus 1]

Mounts build/diskmodel over a directory of generated files (or the file set with --source) and
prints, for each access pattern, the latency or rate a reader sees next to what the model says
(positioning unless a read continues the previous one, plus bytes / rate, FIFO): random 4 KB
and 64 KB reads at queue depth 1 and --qd (latency and IOPS), a cold 900 KB file read,
sequential MB/s of a large file, a warm (cached) read, an O_DIRECT read and a cold sendfile. The
daemon's own counters for the same reads (misses that reached it, positionings) are printed too,
so a row whose reads did not all reach the disk shows it. Only the mount's files are dropped from
the cache (posix_fadvise DONTNEED through the mount), never the machine's.
"""

from __future__ import annotations

import argparse
import mmap
import os
import random
import shutil
import socket
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ukweb.diskmodel import DiskModel, DiskParams, check, delta

BLOCK = 128 * 1024  # random reads start on distinct 128 KB blocks: never adjacent


@dataclass
class Row:
    name: str
    unit: str
    measured: float
    model: float | None
    reads: int  # reads that reached the daemon during the measurement
    seeks: int
    expect_reads: int | None = None


def make_files(root: Path) -> dict[str, list[Path]]:
    """Files for each pattern: 8 x 16 MB for random reads, 6 x 900 KB, one 64 MB."""
    root.mkdir(parents=True)
    chunk = bytes(range(256)) * 4096  # 1 MB

    def write(path: Path, size: int) -> Path:
        with open(path, "wb") as f:
            left = size
            while left:
                left -= f.write(chunk[:min(left, len(chunk))])
        return path

    return {"random": [write(root / f"rand{i}", 16 << 20) for i in range(8)],
            "file900": [write(root / f"f900_{i}", 900 * 1024) for i in range(6)],
            "seq": [write(root / "seq", 64 << 20)]}


def pick_files(source: Path) -> dict[str, list[Path]]:
    """The same patterns from the file set: class 3 files for random reads, the 900 KB files
    (class3_8), and the largest files for the sequential rate."""
    files = [Path(d) / f for d, _, fs in os.walk(source) for f in fs]
    sized = sorted(((p.stat().st_size, p) for p in files), reverse=True)
    rng = random.Random(1)
    big = [p for s, p in sized if s >= BLOCK]
    f900 = [p for s, p in sized if s == 900 * 1024] or [p for _, p in sized[:6]]
    if not big:
        raise SystemExit(f"{source}: no file of {BLOCK // 1024} KB or more for random reads")
    return {"random": rng.sample(big, min(len(big), 4000)),
            "file900": rng.sample(f900, min(len(f900), 6)),
            "seq": [p for _, p in sized[:8]]}


def drop(paths: list[Path], ranges: list[tuple[Path, int]] | None = None) -> None:
    """Drop these files (through the mount) from the page cache; with ranges, only the 128 KB
    block at each (file, offset)."""
    spans = [(p, off, BLOCK) for p, off in ranges] if ranges else [(p, 0, 0) for p in paths]
    for p, off, length in spans:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, off, length, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def slots(files: list[Path], n: int, size: int, rng: random.Random) -> list[tuple[Path, int]]:
    """n distinct (file, offset) pairs, offsets on distinct 128 KB blocks."""
    pool = [(p, b * BLOCK) for p in files
            for b in range(max(0, (p.stat().st_size - size) // BLOCK + 1))]
    if len(pool) < n:
        raise SystemExit(f"only {len(pool)} distinct {size // 1024} KB slots for {n} random reads")
    return rng.sample(pool, n)


def random_reads(todo: list[tuple[Path, int]], size: int, qd: int,
                 flags: int = 0) -> tuple[list[float], float]:
    """Read every slot with qd threads; the latencies of the steady part, and IOPS."""
    fds = {p: os.open(p, os.O_RDONLY | flags) for p in dict.fromkeys(p for p, _ in todo)}
    done: list[tuple[float, float]] = []  # (end, latency)
    lock = threading.Lock()
    it = iter(todo)

    def worker() -> None:
        buf = mmap.mmap(-1, size)  # page-aligned, as O_DIRECT wants
        while True:
            with lock:
                item = next(it, None)
            if item is None:
                return
            p, off = item
            start = time.perf_counter()
            got = os.preadv(fds[p], [buf], off)
            end = time.perf_counter()
            if got != size:
                raise SystemExit(f"short read {got} of {size} at {p}:{off}")
            with lock:
                done.append((end, end - start))

    threads = [threading.Thread(target=worker) for _ in range(qd)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    for fd in fds.values():
        os.close(fd)
    done.sort()
    # The queue fills over the first qd reads and drains over the last qd: keep the middle.
    steady = done[qd - 1:len(done) - qd + 1] if len(done) > 3 * qd else done
    return [lat for _, lat in steady], len(done) / elapsed


def open_read_close(todo: list[tuple[Path, int]], size: int) -> list[float]:
    """Latency of open + pread + close, each (a server's way with a cached file)."""
    out = []
    for p, off in todo:
        start = time.perf_counter()
        fd = os.open(p, os.O_RDONLY)
        os.pread(fd, size, off)
        os.close(fd)
        out.append(time.perf_counter() - start)
    return out


def whole_file(paths: list[Path]) -> list[float]:
    out = []
    for p in paths:
        start = time.perf_counter()
        with open(p, "rb", buffering=0) as f:
            while f.read(1 << 20):
                pass
        out.append(time.perf_counter() - start)
    return out


def measure(disk: DiskModel, files: dict[str, list[Path]], args, mnt: Path, src: Path) -> list[Row]:
    rng = random.Random(7)
    prm = disk.params
    via = {p: mnt / p.relative_to(src) for group in files.values() for p in group}
    rows: list[Row] = []

    def run(name: str, unit: str, model: float | None, fn, expect: int | None = None) -> float:
        before = disk.stats(fresh=True)
        value = fn()
        d = delta(before, disk.stats(fresh=True))
        rows.append(Row(name, unit, value, model, d["reads"], d["seeks"], expect))
        return value

    for size in (4096, 65536):
        s = prm.service_s(size)
        for qd in (1, args.qd):
            n = args.ops * qd
            todo = [(via[p], off) for p, off in slots(files["random"], n, size, rng)]
            drop([], todo)
            res: dict = {}

            def go(todo=todo, size=size, qd=qd, res=res) -> float:
                res["lat"], res["iops"] = random_reads(todo, size, qd)
                return statistics.mean(res["lat"]) * 1e3

            kb = size // 1024
            run(f"random {kb} KB, QD {qd}: latency", "ms", qd * s * 1e3, go, n)
            rows.append(Row(f"random {kb} KB, QD {qd}: IOPS", "/s", res["iops"], 1 / s,
                            rows[-1].reads, rows[-1].seeks, n))
            if size == 4096 and qd == 1:  # the same slots again: in the page cache now
                run("warm 4 KB read (cached), QD 1", "ms", None,
                    lambda todo=todo: statistics.median(random_reads(todo, 4096, 1)[0]) * 1e3, 0)
                run("warm 4 KB open+pread+close", "ms", None,
                    lambda todo=todo: statistics.median(open_read_close(todo, 4096)) * 1e3, 0)

    f900 = [via[p] for p in files["file900"]]
    drop(f900)
    sizes = [p.stat().st_size for p in f900]
    run(f"cold {sizes[0] // 1024} KB file, whole", "ms",
        statistics.mean(prm.service_s(s) for s in sizes) * 1e3,
        lambda: statistics.mean(whole_file(f900)) * 1e3)

    seq = [via[p] for p in files["seq"]]
    drop(seq)
    total = sum(p.stat().st_size for p in seq)
    model_s = sum(prm.service_s(p.stat().st_size) for p in seq)
    run(f"sequential, {len(seq)} file(s) of {total / len(seq) / 2**20:.1f} MB", "MB/s",
        total / model_s / 1e6, lambda: total / sum(whole_file(seq)) / 1e6)

    todo = [(via[p], off) for p, off in slots(files["random"], args.ops, 65536, rng)]
    run("O_DIRECT 64 KB, QD 1", "ms", prm.service_s(65536) * 1e3,
        lambda: statistics.mean(random_reads(todo, 65536, 1, os.O_DIRECT)[0]) * 1e3, args.ops)

    todo = [(via[p], off) for p, off in slots(files["random"], args.ops, 65536, rng)]
    drop([], todo)

    def sendfile() -> float:
        a, b = socket.socketpair()
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        lat = []
        for p, off in todo:
            fd = os.open(p, os.O_RDONLY)
            start = time.perf_counter()
            sent = os.sendfile(a.fileno(), fd, off, 65536)
            lat.append(time.perf_counter() - start)
            os.close(fd)
            while sent > 0:
                sent -= len(b.recv(sent))
        a.close()
        b.close()
        return statistics.mean(lat) * 1e3

    run("cold 64 KB sendfile, QD 1", "ms", prm.service_s(65536) * 1e3, sendfile, args.ops)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seek-ms", type=float, default=12.0)
    p.add_argument("--mbps", type=float, default=40.0)
    p.add_argument("--ops", type=int, default=40, help="random reads per thread and pattern")
    p.add_argument("--qd", type=int, default=8, help="the deeper queue depth")
    p.add_argument("--source", type=Path, help="serve this file set instead of generated files")
    p.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()))
    p.add_argument("--cpus", type=lambda s: [int(c) for c in s.split(",")],
                   default=sorted(os.sched_getaffinity(0)), help="CPUs for the daemon, e.g. 1")
    args = p.parse_args()
    why = check()
    if why:
        raise SystemExit(f"bench/disk_model.py: {why}")
    work = Path(tempfile.mkdtemp(prefix="diskmodel-bench-", dir=args.scratch))
    try:
        src = args.source.resolve() if args.source else work / "files"
        files = pick_files(src) if args.source else make_files(src)
        params = DiskParams(seek_ms=args.seek_ms, transfer_mbps=args.mbps)
        with DiskModel(src, work / "mnt", params, args.cpus, work) as disk:
            rows = measure(disk, files, args, work / "mnt", src)
            conn = disk.stats()["conn"]
            sizes = disk.stats()["read_sizes"]
        final = disk.final_stats or {}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"disk model: {args.seek_ms:g} ms positioning + {args.mbps:g} MB/s, FIFO; "
          f"daemon on CPUs {args.cpus}; "
          f"{'file set ' + str(args.source) if args.source else 'generated files'}")
    print(f"kernel: FUSE {conn['proto']}, no_open={conn['no_open']}, readahead "
          f"{conn['max_readahead'] // 1024} KB, max_write {conn['max_write'] // 1024} KB, "
          f"max_background {conn['max_background']}")
    head = (f"{'pattern':<40} {'measured':>10} {'model':>10} {'ratio':>6}  {'unit':<5} "
            f"{'misses':>7} {'seeks':>6}")
    print(head)
    print("-" * len(head))
    for r in rows:
        model = f"{r.model:10.3f}" if r.model is not None else f"{'-':>10}"
        ratio = f"{r.measured / r.model:6.2f}" if r.model else f"{'-':>6}"
        flag = ("" if r.expect_reads is None or r.reads == r.expect_reads
                else f"  (expected {r.expect_reads} misses)")
        print(f"{r.name:<40} {r.measured:10.3f} {model} {ratio}  {r.unit:<5} {r.reads:7d} "
              f"{r.seeks:6d}{flag}")
    print("reads by size at the daemon: "
          + ", ".join(f"<={int(k) // 1024}K: {v}" if k.isdigit() else f"{k}: {v}"
                      for k, v in sizes.items() if v))
    print(f"daemon totals: {final.get('reads')} reads, {final.get('seeks')} positionings, "
          f"{final.get('sequential')} sequential, busy {final.get('busy_s', 0):.2f} s, "
          f"queue wait {final.get('queue_wait_s', 0):.2f} s, {final.get('overruns')} overruns "
          f"({final.get('overrun_s', 0) * 1e3:.1f} ms), late wake-ups {final.get('late_wakeups')} "
          f"({final.get('late_s', 0) * 1e3:.1f} ms in all), "
          f"max queue depth {final.get('max_queue_depth')}")


if __name__ == "__main__":
    main()
