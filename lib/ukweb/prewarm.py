"""Pre-warm a series' page cache: the files a steady server would have cached, read in its cgroup.

The paper measured in steady state (iterations back to back, nothing emptied the cache between
them), so its servers ran with a full cache holding what the workload asks for most. A series
here starts from a dropped cache; reading the file set in its memory cgroup puts it where a long
run would: page-cache pages stay charged to the cgroup that read them.

[I] Which files: SPECweb99 picks a directory by Zipf (rank = directory number), a class by fixed
shares and a file within the class by Zipf, so P(dir d, class c, file f) is proportional to
(1/(d+1)) x share(c) x P(f) whatever the number of directories (normalisation only scales it).
An LRU-like page cache under such independent requests keeps the files asked for most often
(Che's approximation), so the warm set is the most probable files whose sizes fit in the target.
They are read coldest first, so that the hottest are the most recently used and the last that
reclaim would take when the server's own memory and later misses push the cgroup to its cap.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ukweb import workload
from ukweb.cgroups import Cgroup

FILL = 0.90  # [I] of the cap: room for the server's own memory; warm-ups fill the rest


def hottest_first(dirs: int) -> list[tuple[float, int, str]]:
    """(relative request rate, size, relative path) of every file, most requested first."""
    fprob = workload.file_probabilities()
    rows = [((1.0 / (d + 1)) * workload.CLASS_SHARES[c] * fprob[f], workload.file_size(c, f),
             workload.file_path(d, c, f))
            for d in range(dirs) for c in range(workload.CLASSES)
            for f in range(workload.FILES_PER_CLASS)]
    return sorted(rows, key=lambda r: -r[0])


def warm_set(dirs: int, budget_bytes: int) -> list[str]:
    """The most requested files that fit in budget_bytes, in reading order (coldest first)."""
    chosen, used = [], 0
    for _, size, rel in hottest_first(dirs):
        if used + size > budget_bytes:
            continue  # a smaller, colder file may still fit
        chosen.append(rel)
        used += size
    return chosen[::-1]


# The reader: reads every listed file to the end, so its pages enter the cache charged to the
# reader's cgroup. A separate process because it must join the series' memory cgroup.
_READER = """
import os, sys
done = 0
for rel in sys.stdin.read().split():
    fd = os.open(os.path.join(sys.argv[1], rel), os.O_RDONLY)
    try:
        while os.read(fd, 1 << 20):
            pass
    finally:
        os.close(fd)
    done += 1
print(done)
"""


def evict(docroot: Path, dirs: int) -> int:
    """Drop the file set's pages from the page cache, file by file (POSIX_FADV_DONTNEED), and
    return how many files. Through the disk model's mount this empties exactly the server's
    cache and keeps the daemon's backing files in the host cache, so a miss costs the modelled
    disk and not this machine's (a machine-wide drop_caches would make every later backing read
    a real disk read, an overrun of the model)."""
    os.sync()
    n = 0
    for d in range(dirs):
        for c in range(workload.CLASSES):
            for f in range(workload.FILES_PER_CLASS):
                try:
                    fd = os.open(docroot / workload.file_path(d, c, f), os.O_RDONLY)
                except FileNotFoundError:
                    continue
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                finally:
                    os.close(fd)
                n += 1
    return n


def prewarm(cg: Cgroup | None, docroot: Path, dirs: int, cap_bytes: int,
            cpus: list[int]) -> dict:
    """Read the warm set of a file set of `dirs` directories under docroot, in cg's memory
    cgroup, on `cpus` (the clients' CPUs: pre-warming is not the server's work)."""
    files = warm_set(dirs, int(cap_bytes * FILL))

    def preexec() -> None:
        if cg is not None:
            cg.join(roles=("memory",))
        os.sched_setaffinity(0, cpus)

    out = subprocess.run([sys.executable, "-c", _READER, str(docroot)], input="\n".join(files),
                         capture_output=True, text=True, preexec_fn=preexec, check=False,
                         timeout=600)
    if out.returncode != 0:
        raise OSError(f"pre-warm reader failed: {out.stderr.strip().splitlines()[-1:]}")
    cached = cg.page_cache_bytes() if cg is not None and cg.dirs else None
    return {"files": len(files), "bytes": sum(workload.file_size(*_class_file(r)) for r in files),
            "page_cache_bytes": cached}


def _class_file(rel: str) -> tuple[int, int]:
    cls, num = rel.rsplit("/", 1)[1].removeprefix("class").split("_")
    return int(cls), int(num)
