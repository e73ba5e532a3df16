"""The FUSE disk model measured against its own parameters, side by side in one run.

    .venv/bin/python bench/disk_model.py [--seek-ms 12] [--mbps 40] [--ops 40] [--qd 8,32,64]
                                         [--readers 16,64] [--elevator linus|fifo]
                                         [--rt-priority 60] [--hog 0] [--source FILESET]
                                         [--scratch /tmp] [--cpus 1]

Mounts build/diskmodel over a directory of generated files (or the file set with --source) and
prints, for each access pattern, the latency or rate a reader sees next to what the model says
(positioning unless a read continues the previous one, plus bytes / rate): random 4 KB and 64 KB
reads at queue depth 1 and each --qd (latency and IOPS), a cold 900 KB file read, sequential
MB/s of a large file, many readers each reading its own file sequentially at once (--readers:
the model there is the modelled time of what the disk did, its positionings x seek + bytes /
rate, so the row shows whether the daemon kept its model; the sequential fraction shows what
the elevator made of the interleaved readahead), a warm (cached) read, an O_DIRECT read and a
cold sendfile. The daemon's own counters for the same reads (misses that reached it,
positionings, sequential reads, how late its replies were) are printed too. --hog N runs N
busy processes (and a loopback TCP stream, whose softirq work lands there too) on the daemon's
CPUs meanwhile, as loadgen does in a run: with --rt-priority 0 the daemon's timing is plain
CFS at nice -10, the "before" of its SCHED_FIFO timing. Only the mount's files are dropped
from the cache (posix_fadvise DONTNEED through the mount), never the machine's. Run it under
the measurement lock: flock /tmp/ukweb-measure.lock .venv/bin/python bench/disk_model.py
"""

from __future__ import annotations

import argparse
import contextlib
import mmap
import multiprocessing
import os
import random
import shutil
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
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
    sequential: int = 0
    late_ms: float = 0.0   # the daemon's replies after their modelled time, mean per read
    late_1ms: int = 0      # replies more than 1 ms after their modelled time
    overrun_ms: float = 0.0


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
            "seq": [write(root / "seq", 64 << 20)],
            "readers": [write(root / f"reader{i}", 2 << 20) for i in range(64)]}


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
            "seq": [p for _, p in sized[:8]],
            "readers": [p for _, p in sized[8:72]]}


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

    def run(name: str, unit: str, model, fn, expect: int | None = None) -> float:
        """model: a number, or a function of the daemon's counters for the same reads."""
        before = disk.stats(fresh=True)
        value = fn()
        d = delta(before, disk.stats(fresh=True))
        if callable(model):
            model = model(d)
        rows.append(Row(name, unit, value, model, d["reads"], d["seeks"], expect,
                        d["sequential"], 1e3 * d["late_s"] / max(1, d["reads"]),
                        d["late_wakeups"], 1e3 * d["overrun_s"]))
        return value

    for size in (4096, 65536) if "random" in args.patterns else ():
        s = prm.service_s(size)
        for qd in (1, *args.qd):
            n = args.ops * qd if qd <= 8 else 8 * qd  # deep queues: 8 rounds keep it seconds
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
    if "file900" in args.patterns:
        run(f"cold {sizes[0] // 1024} KB file, whole", "ms",
            statistics.mean(prm.service_s(s) for s in sizes) * 1e3,
            lambda: statistics.mean(whole_file(f900)) * 1e3)

    seq = [via[p] for p in files["seq"]]
    drop(seq)
    total = sum(p.stat().st_size for p in seq)
    model_s = sum(prm.service_s(p.stat().st_size) for p in seq)
    if "seq" in args.patterns:
        run(f"sequential, {len(seq)} file(s) of {total / len(seq) / 2**20:.1f} MB", "MB/s",
            total / model_s / 1e6, lambda: total / sum(whole_file(seq)) / 1e6)

    for k in args.readers if "readers" in args.patterns else ():  # k readers, each its own file front to back, all at once
        mine = [via[p] for p in files["readers"][:k]]
        drop(mine)
        size = sum(p.stat().st_size for p in mine)

        def together(mine=mine, size=size) -> float:
            start = time.perf_counter()
            threads = [threading.Thread(target=whole_file, args=([p],)) for p in mine]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            return size / (time.perf_counter() - start) / 1e6

        run(f"{len(mine)} sequential readers at once", "MB/s",
            lambda d, size=size: size / (d["seeks"] * prm.seek_ms / 1e3
                                         + d["bytes"] / (prm.transfer_mbps * 1e6)) / 1e6,
            together)

    todo = [(via[p], off) for p, off in slots(files["random"], args.ops, 65536, rng)]
    if "direct" in args.patterns:
        run("O_DIRECT 64 KB, QD 1", "ms", prm.service_s(65536) * 1e3,
            lambda: statistics.mean(random_reads(todo, 65536, 1, os.O_DIRECT)[0]) * 1e3,
            args.ops)

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

    if "sendfile" in args.patterns:
        run("cold 64 KB sendfile, QD 1", "ms", prm.service_s(65536) * 1e3, sendfile, args.ops)
    return rows


def _spin() -> None:
    while True:
        pass


def _stream(port: int) -> None:
    """Send to a loopback sink forever: softirq work on this CPU, as loadgen's traffic is."""
    with socket.create_connection(("127.0.0.1", port)) as c:
        data = b"x" * 65536
        while True:
            c.sendall(data)


def _sink(srv: socket.socket) -> None:
    conn, _ = srv.accept()
    while conn.recv(1 << 20):
        pass


@contextlib.contextmanager
def hogged(cpus: list[int], n: int) -> Iterator[None]:
    """n busy processes and one loopback TCP stream pinned to cpus (none when n is 0)."""
    if n <= 0:
        yield
        return
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    procs = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(n)]
    procs += [multiprocessing.Process(target=_sink, args=(srv,), daemon=True),
              multiprocessing.Process(target=_stream, args=(port,), daemon=True)]
    for p in procs:
        p.start()
        os.sched_setaffinity(p.pid, cpus)
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.join()
        srv.close()


def _ints(text: str) -> list[int]:
    return [int(c) for c in text.split(",") if c]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seek-ms", type=float, default=12.0)
    p.add_argument("--mbps", type=float, default=40.0)
    p.add_argument("--ops", type=int, default=40, help="random reads per thread and pattern")
    p.add_argument("--qd", type=_ints, default=[8, 32, 64], help="deeper queue depths, e.g. 8,32,64")
    p.add_argument("--readers", type=_ints, default=[16, 64],
                   help="sequential readers at once, e.g. 16,64 (at most 64)")
    p.add_argument("--elevator", choices=["linus", "fifo"], default="linus")
    p.add_argument("--max-background", type=int, default=DiskParams.max_background,
                   help="the kernel's background limit (64: the old setting, readahead "
                        "skipped past 48 queued)")
    p.add_argument("--patterns", type=lambda t: set(t.split(",")),
                   default={"random", "file900", "seq", "readers", "direct", "sendfile"},
                   help="a subset of random,file900,seq,readers,direct,sendfile")
    p.add_argument("--rt-priority", type=int, default=DiskParams.rt_priority,
                   help="the daemon's SCHED_FIFO timing (0: CFS at nice -10, as before)")
    p.add_argument("--hog", type=int, default=0,
                   help="busy processes on the daemon's CPUs meanwhile (plus a TCP stream)")
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
        params = DiskParams(seek_ms=args.seek_ms, transfer_mbps=args.mbps,
                            rt_priority=args.rt_priority, elevator=args.elevator == "linus",
                            max_background=args.max_background,
                            congestion_threshold=min(args.max_background,
                                                     DiskParams.congestion_threshold))
        with DiskModel(src, work / "mnt", params, args.cpus, work) as disk, \
                hogged(args.cpus, args.hog):
            rows = measure(disk, files, args, work / "mnt", src)
            conn = disk.stats()["conn"]
            sizes = disk.stats()["read_sizes"]
        final = disk.final_stats or {}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"disk model: {args.seek_ms:g} ms positioning + {args.mbps:g} MB/s, elevator "
          f"{args.elevator}; daemon on CPUs {args.cpus}, SCHED_FIFO {args.rt_priority or 'off'}, "
          f"{args.hog} hog(s) there; "
          f"{'file set ' + str(args.source) if args.source else 'generated files'}")
    print(f"kernel: FUSE {conn['proto']}, no_open={conn['no_open']}, readahead "
          f"{conn['max_readahead'] // 1024} KB, max_write {conn['max_write'] // 1024} KB, "
          f"max_background {conn['max_background']}")
    head = (f"{'pattern':<40} {'measured':>10} {'model':>10} {'ratio':>6}  {'unit':<5} "
            f"{'misses':>7} {'seeks':>6} {'seq%':>5} {'late ms':>8} {'>1ms':>5} {'overrun':>8}")
    print(head)
    print("-" * len(head))
    for r in rows:
        model = f"{r.model:10.3f}" if r.model is not None else f"{'-':>10}"
        ratio = f"{r.measured / r.model:6.2f}" if r.model else f"{'-':>6}"
        flag = ("" if r.expect_reads is None or r.reads == r.expect_reads
                else f"  (expected {r.expect_reads} misses)")
        seq = f"{100 * r.sequential / r.reads:5.0f}" if r.reads else f"{'-':>5}"
        print(f"{r.name:<40} {r.measured:10.3f} {model} {ratio}  {r.unit:<5} {r.reads:7d} "
              f"{r.seeks:6d} {seq} {r.late_ms:8.3f} {r.late_1ms:5d} {r.overrun_ms:8.1f}{flag}")
    print("reads by size at the daemon: "
          + ", ".join(f"<={int(k) // 1024}K: {v}" if k.isdigit() else f"{k}: {v}"
                      for k, v in sizes.items() if v))
    print(f"daemon totals: {final.get('reads')} reads, {final.get('seeks')} positionings, "
          f"{final.get('sequential')} sequential, busy {final.get('busy_s', 0):.2f} s, "
          f"queue wait {final.get('queue_wait_s', 0):.2f} s, {final.get('overruns')} overruns "
          f"({final.get('overrun_s', 0) * 1e3:.1f} ms), late wake-ups {final.get('late_wakeups')} "
          f"({final.get('late_s', 0) * 1e3:.1f} ms in all, worst {final.get('late_max_s', 0) * 1e3:.2f}"
          f" ms), max queue depth {final.get('max_queue_depth')}, merges {final.get('merges')}, "
          f"timing {final.get('timing')}")
    print("by queue depth (reads, sequential %): " + ", ".join(
        f"{k}: {v['reads']} ({100 * v['sequential'] / v['reads']:.0f} %)"
        for k, v in (final.get("by_depth") or {}).items() if v["reads"]))


if __name__ == "__main__":
    main()
