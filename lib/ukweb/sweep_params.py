"""SweepParams: a params/*.yaml profile, validated.

The same flat YAML files are papermill's parameter files for the notebooks, so they hold only
simple values (numbers, strings, lists, one level of mapping). A key the runner does not know
is refused, naming the known ones: a misspelt `duraton_s` must not run a sweep with the default.
A profile whose points cannot finish in its `max_minutes` is refused before anything runs.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from ukweb.cpulist import parse_cpus
from ukweb.paths import REPO
from ukweb.workload import MIXES, WORKLOADS

CPU_METHODS = ("thief", "quota", "none")  # how the slower CPU is emulated (ukweb.cpuemul)

LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class ParamsError(ValueError):
    """A params file has a bad value; the message names the key and what is expected."""


@dataclass
class ProcessSweep:
    """Claims S6 and D6: userver with N processes at a fixed connection count."""

    workloads: list[str]
    procs: list[int]
    connections: int
    repetitions: int | None = None  # None: the profile's repetitions


@dataclass
class SweepParams:
    profile: str
    workloads: list[str]
    servers: dict[str, list[str]]
    connections: list[int]
    run_id: str | None = None
    repetitions: int = 1
    warmup_s: float = 60.0
    duration_s: float = 120.0
    line_speed: int = 400_000
    process_sweep: ProcessSweep | None = None
    fileset_dir: str = "data/fileset"
    server_cpus: str = "0"
    client_cpus: str = "1"
    memory_mb: int | None = 512
    cpu_method: str = "thief"             # ukweb.cpuemul: thief | quota | none
    cpu_share: float | None = None        # emulated CPU speed / this CPU's; None: calibration
    disk_model: bool = True               # the file set behind the FUSE disk model (ukweb.diskmodel)
    disk_seek_ms: float = 12.0            # the 7200 RPM IDE disk: positioning per random read
    disk_mbps: float = 40.0               # and its transfer rate, MB/s
    disk_read_mbps: float | None = None   # optional blkio read throttle (a rate, no latency)
    disk_read_iops: int | None = None
    calibration: str | None = "params/calibration.yaml"
    drop_caches: bool = True              # once per series (workload x server), then pre-warm
    prewarm: bool = True                  # fill the series' memory cap with the hottest files
    settle_s: float = 10.0                # warm-up a point needs for the offered load to settle
    max_minutes: float | None = None      # refuse a profile whose estimate exceeds this
    # Carried series (issue 17, design "Steady points"): at and above carry_from connections one
    # server process and its cache go from point to point in ascending connections, settled at
    # the series' start for settle_taus x tau (the cache turnover), each point a transition_s
    # warm-up and one long window whose interval comes from batch means. null: a fresh,
    # pre-warmed server at every point (the older method).
    carry_from: int | None = None
    settle_taus: float = 2.0              # k: settle for k x tau at a carried series' start
    settle_max_s: float = 600.0           # ... but never longer than this
    transition_s: float = 10.0            # warm-up at each new connection count of a series
    carried_s: float | None = None        # fixed window of a carried point; null: the budget's
    batch_s: int | None = None            # batch length; null: params/variance.yaml's
    min_batches: int = 3                  # the shortest carried window, in batches
    max_window_s: float = 600.0           # the longest window the budget may give a point
    target_half_pp: float | None = None   # the 95 % half-width each peak-gap claim should reach
    variance: str | None = "params/variance.yaml"  # measured inputs (bench/variance.py)
    netns: bool = False
    backlog: int = 128
    seed: int = 1
    loadgen_threads: int = 1

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def fileset_path(self) -> Path:
        p = Path(self.fileset_dir)
        return p if p.is_absolute() else REPO / p

    def calibration_path(self) -> Path | None:
        if not self.calibration:
            return None
        p = Path(self.calibration)
        return p if p.is_absolute() else REPO / p

    def max_connections(self) -> int:
        """The largest point, which sizes the file set (SPECweb99 sizes it for MAX_LOAD)."""
        most = max(self.connections)
        if self.process_sweep:
            most = max(most, self.process_sweep.connections)
        return most


def _fail(key: str, value: object, expected: str) -> ParamsError:
    return ParamsError(f"params: {key}={value!r}: expected {expected}")


def _int(key: str, v: object, minimum: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise _fail(key, v, f"an integer >= {minimum}")
    return v


def _num(key: str, v: object, lo: float, hi: float | None = None) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < lo or (hi is not None and v > hi):
        raise _fail(key, v, f"a number in [{lo}, {hi if hi is not None else 'inf'}]")
    return float(v)


def _bool(key: str, v: object) -> bool:
    if not isinstance(v, bool):
        raise _fail(key, v, "true or false")
    return v


def _str(key: str, v: object) -> str:
    if not isinstance(v, str) or not v:
        raise _fail(key, v, "a non-empty string")
    return v


def _workloads(key: str, v: object) -> list[str]:
    known = set(WORKLOADS) | set(MIXES)
    if not isinstance(v, list) or not v or any(w not in known for w in v):
        raise _fail(key, v, f"a non-empty list of workloads from {sorted(known)}")
    return list(v)


def _ints(key: str, v: object, minimum: int) -> list[int]:
    if not isinstance(v, list) or not v:
        raise _fail(key, v, f"a non-empty list of integers >= {minimum}")
    return [_int(f"{key}[{i}]", x, minimum) for i, x in enumerate(v)]


def _servers(v: object, workloads: list[str]) -> dict[str, list[str]]:
    if not isinstance(v, dict):
        raise _fail("servers", v, "a mapping workload -> list of server labels")
    out = {}
    for w in workloads:
        labels = v.get(w)
        if not isinstance(labels, list) or not labels or not all(
                isinstance(s, str) and LABEL.match(s) for s in labels):
            raise _fail(f"servers.{w}", labels, "a non-empty list of server labels (e.g. userver-8, ktux)")
        out[w] = list(labels)
    return out


def _process_sweep(v: object) -> ProcessSweep | None:
    if v is None:
        return None
    keys = {"workloads", "procs", "connections"}
    if not isinstance(v, dict) or not keys <= set(v) <= keys | {"repetitions"}:
        raise _fail("process_sweep", v, "null or a mapping with workloads, procs, connections "
                    "(and optionally repetitions)")
    reps = v.get("repetitions")
    return ProcessSweep(_workloads("process_sweep.workloads", v["workloads"]),
                        _ints("process_sweep.procs", v["procs"], 1),
                        _int("process_sweep.connections", v["connections"], 1),
                        None if reps is None else _int("process_sweep.repetitions", reps, 1))


def _choice(key: str, v: object, choices: tuple[str, ...]) -> str:
    if v not in choices:
        raise _fail(key, v, f"one of {', '.join(choices)}")
    return v


def _optional(key: str, v: object, check):
    return None if v is None else check(key, v)


def validate(raw: dict) -> SweepParams:
    """A SweepParams from a mapping; ParamsError on the first bad value."""
    if not isinstance(raw, dict):
        raise ParamsError(f"params: expected a mapping of parameters, got {type(raw).__name__}")
    known = {f.name for f in dataclasses.fields(SweepParams)}
    for key in ("profile", "workloads", "servers", "connections"):
        if key not in raw:
            raise ParamsError(f"params: {key} is required")
    unknown = sorted(k for k in raw if k not in known)
    if unknown:
        raise ParamsError(f"params: unknown key(s) {', '.join(map(repr, unknown))}; known keys: "
                          f"{', '.join(sorted(known))}")
    d = SweepParams.__dataclass_fields__
    g = {k: raw.get(k, d[k].default) for k in known}
    workloads = _workloads("workloads", g["workloads"])
    for key in ("server_cpus", "client_cpus"):
        try:
            parse_cpus(_str(key, str(g[key])))
        except ValueError as exc:
            raise ParamsError(f"params: {exc}") from exc
    run_id = g["run_id"]
    if run_id is not None and (not isinstance(run_id, str) or not LABEL.match(run_id)):
        raise _fail("run_id", run_id, "null or a name of letters, digits, '.', '_', '-'")
    return SweepParams(
        profile=_str("profile", g["profile"]),
        workloads=workloads,
        servers=_servers(g["servers"], workloads),
        connections=_ints("connections", g["connections"], 1),
        run_id=run_id,
        repetitions=_int("repetitions", g["repetitions"], 1),
        warmup_s=_num("warmup_s", g["warmup_s"], 0),
        duration_s=_num("duration_s", g["duration_s"], 0.5),
        line_speed=_int("line_speed", g["line_speed"], 0),
        process_sweep=_process_sweep(g["process_sweep"]),
        fileset_dir=_str("fileset_dir", g["fileset_dir"]),
        server_cpus=str(g["server_cpus"]),
        client_cpus=str(g["client_cpus"]),
        memory_mb=_optional("memory_mb", g["memory_mb"], lambda k, v: _int(k, v, 16)),
        cpu_method=_choice("cpu_method", g["cpu_method"], CPU_METHODS),
        cpu_share=_optional("cpu_share", g["cpu_share"], lambda k, v: _num(k, v, 0.01, 0.99)),
        disk_model=_bool("disk_model", g["disk_model"]),
        disk_seek_ms=_num("disk_seek_ms", g["disk_seek_ms"], 0),
        disk_mbps=_num("disk_mbps", g["disk_mbps"], 0.1),
        disk_read_mbps=_optional("disk_read_mbps", g["disk_read_mbps"], lambda k, v: _num(k, v, 0.1)),
        disk_read_iops=_optional("disk_read_iops", g["disk_read_iops"], lambda k, v: _int(k, v, 1)),
        calibration=_optional("calibration", g["calibration"], _str),
        drop_caches=_bool("drop_caches", g["drop_caches"]),
        prewarm=_bool("prewarm", g["prewarm"]),
        settle_s=_num("settle_s", g["settle_s"], 0),
        max_minutes=_optional("max_minutes", g["max_minutes"], lambda k, v: _num(k, v, 0.1)),
        carry_from=_optional("carry_from", g["carry_from"], lambda k, v: _int(k, v, 1)),
        settle_taus=_num("settle_taus", g["settle_taus"], 0),
        settle_max_s=_num("settle_max_s", g["settle_max_s"], 0),
        transition_s=_num("transition_s", g["transition_s"], 0),
        carried_s=_optional("carried_s", g["carried_s"], lambda k, v: _num(k, v, 1)),
        batch_s=_optional("batch_s", g["batch_s"], lambda k, v: _int(k, v, 1)),
        min_batches=_int("min_batches", g["min_batches"], 2),
        max_window_s=_num("max_window_s", g["max_window_s"], 1),
        target_half_pp=_optional("target_half_pp", g["target_half_pp"], lambda k, v: _num(k, v, 0.1)),
        variance=_optional("variance", g["variance"], _str),
        netns=_bool("netns", g["netns"]),
        backlog=_int("backlog", g["backlog"], 1),
        seed=_int("seed", g["seed"], 0),
        loadgen_threads=_int("loadgen_threads", g["loadgen_threads"], 1),
    )


def load_params(path: Path | str) -> SweepParams:
    """Read and validate a profile; ParamsError names the file and the bad value."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ParamsError(f"params: cannot read {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ParamsError(f"params: {path} is not valid YAML: {exc}") from exc
    try:
        return validate(raw)
    except ParamsError as exc:
        raise ParamsError(f"{path}: {exc}") from exc
