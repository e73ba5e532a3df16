"""`ukweb compact RUN`: a run's request logs as Parquet (zstd), for committing a reference run.

loadgen writes requests.csv.gz, one row per request; a paper-profile run holds a few million
rows. The same columns as Parquet with zstd take a fraction of the space and read faster; the
readers (ukweb.logs.read_requests) accept both. Each point's log is converted next to the CSV,
read back and compared row for row, and only then is the CSV removed: an interrupted compaction
loses nothing and can be rerun.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ukweb import logs
from ukweb.analysis import point_dirs

# [I] Measured on a quick run: 19.0 MB of CSV.gz became 13.7 MB with zstd alone, 61 % of the
# CSV with delta encoding of the growing integers and dictionaries for the small categories.
PARQUET = {"compression": "zstd", "compression_level": 9,
           "use_dictionary": ["type", "error", "phase", "status", "class", "file", "ok"],
           "column_encoding": {c: "DELTA_BINARY_PACKED"
                               for c in ("t_start_us", "t_end_us", "conn", "dir", "bytes")}}


def compact_point(point: Path) -> tuple[int, int] | None:
    """requests.csv.gz -> requests.parquet in one point; (bytes before, after), or None."""
    src = point / "requests.csv.gz"
    if not src.is_file():
        return None
    raw = pd.read_csv(src, dtype=str, keep_default_na=False, na_values={})  # exactly as logged
    typed = logs.read_requests(src)
    out = point / "requests.parquet"
    tmp = out.with_name("requests.tmp.parquet")  # the reader goes by the suffix
    frame = typed.astype({c: "string" for c in ("type", "error", "phase")}).astype({"ok": "int8"})
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp, **PARQUET)
    back = logs.read_requests(tmp)
    if len(back) != len(raw) or not back.equals(typed):
        tmp.unlink()
        raise ValueError(f"{point}: the Parquet copy does not read back as the CSV")
    os.replace(tmp, out)
    before = src.stat().st_size
    src.unlink()
    return before, out.stat().st_size


def compact(run: Path) -> dict:
    """Every point of run; totals of bytes before and after."""
    before = after = points = 0
    for point in point_dirs(run):
        sizes = compact_point(point)
        if sizes:
            before, after, points = before + sizes[0], after + sizes[1], points + 1
    return {"points": points, "csv_bytes": before, "parquet_bytes": after}


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ukweb compact",
                                     description="convert a run's request logs to Parquet (zstd)")
    parser.add_argument("run", type=Path, help="a run directory (with points/)")
    args = parser.parse_args(argv)
    if not (args.run / "points").is_dir():
        print(f"ukweb compact: {args.run} is not a run directory (no points/ inside)", file=sys.stderr)
        return 2
    try:
        done = compact(args.run)
    except (ValueError, logs.LogError) as exc:
        print(f"ukweb compact: {exc}", file=sys.stderr)
        return 1
    print(f"{args.run}: {done['points']} request logs, {done['csv_bytes'] / 1e6:.1f} MB of CSV.gz "
          f"-> {done['parquet_bytes'] / 1e6:.1f} MB of Parquet")
    return 0
