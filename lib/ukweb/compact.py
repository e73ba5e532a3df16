"""`ukweb compact RUN`: a run's request logs as Parquet (zstd), for committing a reference run.

loadgen writes requests.csv.gz, one row per request; a paper-profile run holds ~10 million
rows. The same columns as Parquet with zstd take a fraction of the space and read faster; the
readers (ukweb.logs.read_requests) accept both. Each point's log is converted next to the CSV,
read back and compared row for row, and only then is the CSV removed: an interrupted compaction
loses nothing and can be rerun.

`--measured-only` keeps the rows completed in the measured window or in flight when it closed
(t_end_us >= the window's start, whatever phase they started in: the only rows any figure or
claim reads, ukweb.completions), and replaces the rows completed in the warm-up by their
per-second counts in warmup_per_second.csv (seconds of the log's time base, by completion), so
how each point settled stays visible. A paper run's 10 s warm-ups are 62 % of its rows: this is
what fits its reference copy in ~40 MB. The manifest records that the run was compacted, and
how. [I] Compactions before the completion rule kept the rows *started* in the window and
counted the rest by completion second from the log's first request; ukweb.completions reads the
replies that straddled the warm-up's end back from those counts.

The server's post log (postlog.txt, the answer to SPECweb99's Fetch command, which no analysis
reads) is gzipped: a paper run's 296 post logs are 85 MB of text, ~9 MB as gzip.
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ukweb import completions, logs, manifest
from ukweb.analysis import point_dirs, require_run

# [I] Measured on a quick run's point (24,630 rows, 397 KB of CSV.gz): 241 KB with delta
# encoding on every integer, 207 KB with it on the two growing times only (delta of random
# connection and directory numbers is wider than the numbers) and a dictionary for `bytes`
# (a few hundred distinct sizes); 106 KB of it is the measurement phase.
PARQUET = {"compression": "zstd", "compression_level": 9,
           "use_dictionary": ["type", "error", "phase", "status", "class", "file", "ok", "bytes"],
           "column_encoding": {"t_start_us": "DELTA_BINARY_PACKED", "t_end_us": "DELTA_BINARY_PACKED"}}
WARMUP_FILE = completions.WARMUP_FILE
KEPT = "t_end_us >= measured window start"  # the manifest's record of what --measured-only kept
POSTLOG = "postlog.txt"


def gzip_postlog(point: Path) -> tuple[int, int]:
    """postlog.txt -> postlog.txt.gz, read back before the text goes; (bytes before, after)."""
    src = point / POSTLOG
    if not src.is_file():
        return 0, 0
    data = src.read_bytes()
    out = point / (POSTLOG + ".gz")
    tmp = point / (POSTLOG + ".tmp.gz")
    tmp.write_bytes(gzip.compress(data, compresslevel=9, mtime=0))
    if gzip.decompress(tmp.read_bytes()) != data:
        tmp.unlink()
        raise ValueError(f"{point}: the gzipped post log does not read back")
    os.replace(tmp, out)
    src.unlink()
    return len(data), out.stat().st_size


def warmup_per_second(requests: pd.DataFrame, start_us: int) -> pd.DataFrame:
    """Requests, ok replies and their bytes completed in each second of the warm-up (the rows
    with t_end_us < start_us, the measured window's start), by the second of the log's time
    base a request ended in."""
    warm = requests[requests["t_end_us"] < start_us]
    if warm.empty:
        return pd.DataFrame(columns=["second", "requests", "ok", "ok_bytes"])
    second = warm["t_end_us"] // 1_000_000
    grouped = warm.assign(second=second, ok_bytes=warm["bytes"].where(warm["ok"], 0)).groupby("second")
    return pd.DataFrame({"requests": grouped.size(), "ok": grouped["ok"].sum(),
                         "ok_bytes": grouped["ok_bytes"].sum()}).reset_index()


def compact_point(point: Path, measured_only: bool = False) -> tuple[int, int] | None:
    """requests.csv.gz -> requests.parquet in one point; (bytes before, after), or None."""
    src = point / "requests.csv.gz"
    if not src.is_file():
        return None
    typed = logs.read_requests(src)  # checks the columns and every categorical value
    kept = typed
    if measured_only and (point / "summary.json").is_file():
        # Without a summary (a point that failed before loadgen wrote one) the window is
        # unknown: every row is kept.
        start, _ = completions.window_us(logs.read_summary(point))
        (point / WARMUP_FILE).write_text(warmup_per_second(typed, start).to_csv(index=False))
        kept = typed[typed["t_end_us"] >= start].reset_index(drop=True)
    out = point / "requests.parquet"
    tmp = out.with_name("requests.tmp.parquet")  # the reader goes by the suffix
    frame = kept.astype({c: "string" for c in ("type", "error", "phase")}).astype({"ok": "int8"})
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp, **PARQUET)
    back = logs.read_requests(tmp)
    if not back.equals(kept):
        tmp.unlink()
        raise ValueError(f"{point}: the Parquet copy does not read back as the CSV")
    os.replace(tmp, out)
    before = src.stat().st_size
    src.unlink()
    return before, out.stat().st_size


def _record(run: Path, measured_only: bool, done: dict) -> None:
    """The manifest says the request logs were compacted, when and how."""
    path = run / "manifest.json"
    if not path.is_file():
        return
    man = manifest.read(path)
    man.setdefault("compacted", []).append({
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "measured_only": measured_only, **({"kept": KEPT} if measured_only else {}), **done})
    manifest.write(path, man)


def compact(run: Path, measured_only: bool = False) -> dict:
    """Every point of run; totals of bytes before and after."""
    before = after = points = post_before = post_after = 0
    for point in point_dirs(run):
        sizes = compact_point(point, measured_only)
        if sizes:
            before, after, points = before + sizes[0], after + sizes[1], points + 1
        text, packed = gzip_postlog(point)
        post_before, post_after = post_before + text, post_after + packed
    done = {"points": points, "csv_bytes": before, "parquet_bytes": after,
            "postlog_bytes": post_before, "postlog_gz_bytes": post_after}
    if points or post_before:
        _record(run, measured_only, done)
    return done


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ukweb compact",
                                     description="convert a run's request logs to Parquet (zstd)")
    parser.add_argument("run", type=Path, help="a run directory (with points/)")
    parser.add_argument("--measured-only", action="store_true",
                        help="keep the rows completed in the measured window or in flight at its "
                             "close; the warm-up's completions as per-second counts")
    args = parser.parse_args(argv)
    try:
        require_run(args.run)
    except FileNotFoundError as exc:
        print(f"ukweb compact: {exc}", file=sys.stderr)
        return 2
    try:
        done = compact(args.run, args.measured_only)
    except (ValueError, logs.LogError) as exc:
        print(f"ukweb compact: {exc}", file=sys.stderr)
        return 1
    print(f"{args.run}: {done['points']} request logs, {done['csv_bytes'] / 1e6:.1f} MB of CSV.gz "
          f"-> {done['parquet_bytes'] / 1e6:.1f} MB of Parquet; post logs {done['postlog_bytes'] / 1e6:.1f} "
          f"-> {done['postlog_gz_bytes'] / 1e6:.1f} MB")
    return 0
