"""Read the raw logs of a data point into pandas (formats in docs/interfaces.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ukweb.workload import REQUEST_TYPES

REQUEST_COLUMNS = ("t_start_us", "t_end_us", "conn", "type", "class", "dir", "file", "status",
                   "bytes", "ok", "error", "phase")
# `inflight` (loadgen 2 on) is no fault: the request had not completed when the measured window
# closed; it counts in no window (ukweb.completions).
ERROR_KINDS = ("connect", "reset", "timeout", "status", "malformed", "length", "too_large",
               "size", "content", "query", "cookie", "ad", "inflight")
PHASES = ("warmup", "measure")  # the phase a request *started* in; windows count completions

_DTYPES = {"t_start_us": "int64", "t_end_us": "int64", "conn": "int32", "class": "int8",
           "dir": "int32", "file": "int8", "status": "int16", "bytes": "int64", "ok": "int8",
           "type": "string", "error": "string", "phase": "string"}


class LogError(ValueError):
    """A log file that is missing, truncated or not in the documented format."""


def _categorical(values: pd.Series, categories: tuple[str, ...], column: str,
                 path: Path) -> pd.Series:
    unknown = set(values.dropna().unique()) - set(categories)
    if unknown:
        raise LogError(f"{path}: unknown {column} values {sorted(unknown)}")
    return pd.Categorical(values, categories=list(categories))


REQUEST_FILES = ("requests.parquet", "requests.csv.gz")  # compacted (ukweb compact) or as written


def request_log(point_dir: Path) -> Path:
    """The point's request log: requests.parquet when the run was compacted, else the CSV."""
    for name in REQUEST_FILES:
        if (Path(point_dir) / name).is_file():
            return Path(point_dir) / name
    return Path(point_dir) / REQUEST_FILES[-1]


def read_requests(path: Path) -> pd.DataFrame:
    """requests.csv.gz or requests.parquet (or a point directory holding one) as a DataFrame.

    Integers get fixed-width dtypes, `ok` is bool, and `type`, `error` and `phase` are
    categoricals over the documented values; an empty `error` (a valid reply) is "".
    """
    path = Path(path)
    if path.is_dir():
        path = request_log(path)
    try:
        if path.suffix == ".parquet":
            df = pd.read_parquet(path).astype({k: v for k, v in _DTYPES.items() if k != "ok"})
        else:
            df = pd.read_csv(path, dtype=_DTYPES, keep_default_na=False, na_values={})
    except (OSError, EOFError, ValueError, pd.errors.ParserError) as exc:
        raise LogError(f"{path}: not a readable request log: {exc}") from exc
    if tuple(df.columns) != REQUEST_COLUMNS:
        raise LogError(f"{path}: columns {list(df.columns)}, expected {list(REQUEST_COLUMNS)}")
    df["ok"] = df["ok"].astype(bool)
    df["type"] = _categorical(df["type"], REQUEST_TYPES, "type", path)
    df["error"] = _categorical(df["error"], ("",) + ERROR_KINDS, "error", path)
    df["phase"] = _categorical(df["phase"], PHASES, "phase", path)
    return df


def read_summary(point_dir: Path) -> dict:
    """summary.json of a point directory (or the file itself) as a dict."""
    path = Path(point_dir)
    if path.is_dir():
        path = path / "summary.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise LogError(f"{path}: not a readable loadgen summary: {exc}") from exc


# system.csv's own columns, as ukweb.sampler writes them (the disk model's follow when it runs).
SYSTEM_COLUMNS = ("t", "cpu_user", "cpu_sys", "cpu_idle", "cpu_iowait", "ctx_switches",
                  "listen_overflows", "listen_drops", "disk_read_bytes", "page_cache_bytes",
                  "blocked_s", "server_cpu_s", "cpu_softirq", "memory_bytes", "procs",
                  "blocked_max_s", "blocked_iowq_s")
OLD_COLUMNS = SYSTEM_COLUMNS.index("server_cpu_s") + 1  # what runs before the disk model wrote


def read_system(point_dir: Path) -> pd.DataFrame:
    """system.csv of a point directory (or the file): the runner's 1 s samples (ukweb.sampler).

    Counters are per interval ending at `t`; page_cache_bytes is a gauge. An empty table (header
    only) means the point lasted less than one sample interval.
    """
    path = Path(point_dir)
    if path.is_dir():
        path = path / "system.csv"
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise LogError(f"{path}: not a readable system sample log: {exc}") from exc
    # Older runs wrote a prefix of today's columns (up to blocked_s or server_cpu_s); later
    # columns, and counters of other testbed parts (disk_*), are optional.
    head = tuple(df.columns[:len(SYSTEM_COLUMNS)])
    if head not in (SYSTEM_COLUMNS, SYSTEM_COLUMNS[:OLD_COLUMNS], SYSTEM_COLUMNS[:OLD_COLUMNS - 1]):
        raise LogError(f"{path}: columns {list(df.columns)}, expected {list(SYSTEM_COLUMNS)}")
    return df.astype({c: "int64" for c in SYSTEM_COLUMNS if c in df and c.endswith(
        ("bytes", "switches", "overflows", "drops"))})
