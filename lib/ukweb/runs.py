"""Sweeps: every workload x server configuration x connections x repetition, as in §4.

`sweep(params)` (and `ukweb run -f params/quick.yaml`) measures every point of a profile into
data/raw/<run-id>/ (layout: design "A run on disk"). Points run in series, one per workload x
server: the page cache dropped once and pre-warmed in the series' own memory cgroup, then the
points in ascending connections (ukweb.point). The file set is served through the disk model
(ukweb.diskmodel) and the server's CPU slowed by the CPU thief (ukweb.cpuemul) for the whole
sweep. Rerunning the same run id resumes it: points with DONE are kept, the rest are redone.
SIGINT/SIGTERM stop cleanly (the server and loadgen are killed through their cgroups, the
cgroups removed, the disk model unmounted, the partial point left without DONE). A server that
fails to start or dies marks its point FAILED and the sweep goes on; a full disk, or a disk
model or CPU thief that dies, stops the sweep with an error rather than measuring without it.
Progress goes to <run>/progress.jsonl, one JSON object per line (a point's start and end).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import shlex
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import yaml
from tqdm import tqdm

from ukweb import budget, fileset, machine, manifest, paths
from ukweb import hosts as hosts_mod
from ukweb.cpuemul import CpuEmulationError
from ukweb.diskmodel import DiskModelError
from ukweb.hosts import Hosts
from ukweb.leftovers import LeftoversError
from ukweb.netns import NetnsError, Topology
from ukweb.paths import RAW
from ukweb.plan import Point, carried, plan, point_dir, series_plan
from ukweb.point import DiskFull, PointFailed, PointRunner, TestbedDied, mark_failed
from ukweb.regime import (
    SweepError,
    check_methods,
    docroot_for,
    effective_share,
    load_calibration,
    make_testbed,
    method_deviations,
    mounted_disk,
)
from ukweb.servers import ServerConfig, named_config
from ukweb.sweep_params import LABEL, ParamsError, SweepParams, load_params, validate
from ukweb.testbed import Testbed, pin

__all__ = ["SweepParams", "load_params", "sweep", "point_dir", "plan", "cli", "SweepError"]

log = logging.getLogger(__name__)

HOSTS_ENV = "UKWEB_HOSTS"  # a hosts file: the sweep runs on that testbed (make reproduce HOSTS=)


class Interrupted(BaseException):
    """SIGTERM, turned into an exception so every context manager cleans up on the way out."""


# [I] What a point costs besides its warm-up and measurement (server start and stop under the
# slow CPU, Reset, Fetch, writing the logs), and a series besides its points (sync, cache drop,
# pre-warm through the disk model); measured on the 2-core VM with the paper profile: its
# reference run took 5,816 s for 296 points in 20 series (19.1 s a point, 16 s of it measured;
# estimated 91.5 min, 5.5 % short: its top-ups at high load take longer), a quick run 11.5 min.
POINT_OVERHEAD_S = budget.POINT_OVERHEAD_S
SERIES_OVERHEAD_S = budget.SERIES_OVERHEAD_S


def budget_of(params: SweepParams) -> budget.Budget | None:
    """The variance budget of a profile with carried series (None without)."""
    if params.carry_from is None:
        return None
    try:
        variance = budget.load_variance(params.variance)
    except budget.BudgetError as exc:
        raise ParamsError(str(exc)) from exc
    if variance is None:
        if params.batch_s is None or params.carried_s is None:
            raise ParamsError("params: carry_from without a variance file needs batch_s and carried_s")
        variance = {"batch_s": params.batch_s, "tau_int_s": {}, "points": {}}
    return budget.Budget(params, variance)


def estimate_minutes(params: SweepParams) -> float:
    """The time a sweep of params takes: its points' warm-up and measurement, the carried
    series' settling and windows (ukweb.budget), the overheads."""
    b = budget_of(params)
    if b is not None:  # a profile without a target fills its max_minutes
        return b.plan(params.max_minutes if params.target_half_pp is None else None).minutes
    series = series_plan(params)
    points = sum(len(s) for s in series)
    per_point = params.warmup_s + params.duration_s + POINT_OVERHEAD_S
    return (points * per_point + len(series) * SERIES_OVERHEAD_S) / 60.0


def check_budget(params: SweepParams) -> budget.Plan | None:
    """ParamsError when the profile cannot finish in its max_minutes, or (carried series) when
    its variance budget cannot be met in that time, naming the claims left undecided; else the
    plan of a carried profile (its windows and expected half-widths)."""
    b = budget_of(params)
    if b is not None:
        try:
            return b.check()
        except budget.BudgetError as exc:
            raise ParamsError(str(exc)) from exc
    if params.max_minutes is None:
        return None
    est = estimate_minutes(params)
    if est > params.max_minutes:
        n = len(plan(params))
        raise ParamsError(
            f"params: {n} points of {params.warmup_s:g} s + {params.duration_s:g} s take about "
            f"{est:.0f} min, over max_minutes={params.max_minutes:g}: shorten warmup_s/duration_s, "
            "drop points or repetitions, or raise max_minutes")
    return None


def resolve_configs(labels: set[str], backlog: int,
                    configs: dict[str, ServerConfig] | None) -> dict[str, ServerConfig]:
    """Server label -> configuration: the caller's own objects first, then named_config()."""
    out = {}
    for label in sorted(labels):
        try:
            cfg = (configs or {}).get(label) or named_config(label)
        except ValueError as exc:
            raise ParamsError(f"params: server {label!r}: {exc}") from exc
        out[label] = dataclasses.replace(cfg, backlog=backlog)
    return out


def run_path(root: Path, run_id: str) -> Path:
    """root/run_id, refusing a run id that is not a plain name inside root."""
    if not LABEL.match(run_id) or run_id in (".", ".."):
        raise ParamsError(f"run id {run_id!r}: expected a name of letters, digits, '.', '_', '-' "
                          "(a run stays inside its root)")
    run = (Path(root) / run_id).resolve()
    if run.parent != Path(root).resolve():
        raise ParamsError(f"run id {run_id!r} leaves {root}")
    return run


_TERMINATED = threading.Event()  # SIGTERM arrived (kept even when its exception was lost)


def _check_terminated() -> None:
    """Raise Interrupted if SIGTERM arrived while its exception could not be raised: Python
    drops exceptions raised where it ignores them (at-fork handlers, e.g. logging's around
    subprocess with preexec_fn), which once let a run finish after SIGTERM with exit 0."""
    if _TERMINATED.is_set():
        raise Interrupted("SIGTERM")


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """While sweeping, SIGTERM raises Interrupted (in the main thread) like Ctrl-C does."""
    def handler(signum: int, frame: object) -> None:
        # One is enough: a second SIGTERM must not interrupt the clean-up it started.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _TERMINATED.set()
        raise Interrupted("SIGTERM")
    _TERMINATED.clear()
    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@contextlib.contextmanager
def links(params: SweepParams, testbed: Testbed) -> Iterator[Topology | None]:
    """The two rate-limited links of the paper's testbed when params.netns, else loopback."""
    if not params.netns:
        yield None
        return
    if not testbed.caps.netns:
        testbed.deviate("netns", testbed.caps.problems()["netns"] + "; using loopback")
        yield None
        return
    try:
        topo = Topology(prefix=f"{testbed.prefix}-net", server_cpus=testbed.server_cpu_list,
                        client_cpus=testbed.client_cpu_list).create()
    except NetnsError as exc:
        testbed.deviate("netns", f"{exc}; using loopback")
        yield None
        return
    testbed.network = {"server_ns": topo.server_ns, "client_ns": topo.client_ns,
                       "links": topo.links, "rate": topo.rate, "server_addrs": topo.server_addrs(),
                       "rps_cpus": topo.steering()}
    try:
        yield topo
    finally:
        topo.remove()


def _open_manifest(run: Path, params: SweepParams, testbed: Testbed,
                   calibration: dict | None, hosts: dict | None = None) -> dict:
    """The run's manifest, new or resumed; `hosts`: a multi-host testbed's record
    (ukweb.multirun.Testbed.record: the hosts file without secrets, each host's commit, clock
    offset and kernel), kept whole for the run and per resume in its `runs` entry."""
    path = run / "manifest.json"
    mine = params.as_dict()
    if path.is_file():
        man = manifest.read(path)
        theirs = {k: v for k, v in man["params"].items() if k != "run_id"}
        if theirs != {k: v for k, v in mine.items() if k != "run_id"}:
            changed = sorted(k for k in mine if k != "run_id" and mine.get(k) != theirs.get(k))
            raise SweepError(f"{run} was started with other parameters ({', '.join(changed)}); "
                             "use a new run id")
        _check_same_setup(run, man, testbed, calibration)
        _check_same_hosts(run, man, hosts)
        for earlier in man["runs"]:  # a runner that never closed its entry was killed
            if earlier.get("status") == "running":
                earlier["status"] = "killed"
        man["deviations"] = _merge(man["deviations"], testbed.deviation_list())
    else:
        man = machine.build(mine, deviations=testbed.deviation_list(),
                             calibration=calibration, testbed=testbed.describe())
        if hosts is not None:
            man["hosts"] = hosts
    man["runs"].append({"start": manifest.now(), "end": None, "status": "running",
                        "git": manifest.git_state(), "cpus": _cpus(testbed.describe()),
                        "reaped": testbed.reaped})
    if hosts is not None:  # this resume's commits and clock offsets
        man["runs"][-1]["hosts"] = hosts["hosts"]
    manifest.write(path, man)
    return man


def _cpus(tb: dict) -> dict:
    return {k: tb.get(k) for k in ("server_cpus", "client_cpus", "cpu_method", "cpu_share")}


def _check_same_setup(run: Path, man: dict, testbed: Testbed, calibration: dict | None) -> None:
    """A resume measures what the run measured: the same commit, calibration and CPUs, or it is
    refused naming both (issue 17: a resume on other CPUs mixed two setups in one run)."""
    then, now = (man.get("git") or {}).get("commit"), manifest.git_state()["commit"]
    if then != now:
        raise SweepError(f"{run} was measured by commit {then} and this is commit {now}: "
                         "check out the run's commit to resume, or use a new run id")
    if man.get("calibration") != json.loads(json.dumps(calibration, default=str)):
        def cal(c: dict | None) -> str:
            return "none" if not c else f"{c.get('path')} (cpu_share {c.get('cpu_share')})"
        raise SweepError(f"{run} was measured with calibration {cal(man.get('calibration'))} and "
                         f"this run has {cal(calibration)}: restore it to resume, or use a new run id")
    was, is_ = _cpus(man.get("testbed") or {}), _cpus(testbed.describe())
    if was != is_:
        raise SweepError(f"{run} was measured on {was} and this testbed is {is_}: free the "
                         "configured CPUs to resume (ukweb check), or use a new run id")


def _check_same_hosts(run: Path, man: dict, hosts: dict | None) -> None:
    """A run is resumed on the testbed it was measured on: one machine, or the same hosts
    (addresses, links, shares, emulation)."""
    def where(h: dict | None) -> str:
        if not h:
            return "this machine"
        t = h["testbed"]
        return (f"server {t['server']['name']} ({t['server']['address']}) and clients "
                + ", ".join(f"{c['name']} ({c['address']}, {c['share']:g})" for c in t["clients"]))
    def same(h: dict | None) -> dict | None:  # the file may move; what it says may not
        return None if not h else {k: v for k, v in h["testbed"].items() if k != "file"}
    then, now = man.get("hosts"), hosts
    if same(then) != same(now):
        raise SweepError(f"{run} was measured on {where(then)} and this run is on {where(now)}: "
                         "resume it on the same testbed, or use a new run id")


def _merge(old: list[dict], new: list[dict]) -> list[dict]:
    return old + [d for d in new if d not in old]


def sweep(params: SweepParams, run_id: str | None = None, root: Path = RAW, progress: bool = True,
          configs: dict[str, ServerConfig] | None = None, hosts: Hosts | None = None) -> Path:
    """Run (or resume) every point of params; returns the run directory.

    configs maps server labels to ServerConfig objects the caller built; other labels go
    through ukweb.servers.named_config. hosts (or the file named by $UKWEB_HOSTS, which
    `make reproduce HOSTS=FILE` sets): a multi-host testbed instead of this machine.
    """
    run_id = run_id or params.run_id or f"{params.profile}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    run = run_path(root, run_id)
    carried = check_budget(params)
    if carried is not None:  # the notebooks reach here without the CLI's printout
        log.info("%s: %s", params.profile, carried.table())
    hosts = hosts if hosts is not None else hosts_from_env()
    if hosts is None:
        check_methods(params)
    series = series_plan(params)
    cfgs = resolve_configs({p.server for s in series for p in s}, params.backlog, configs)
    calibration = load_calibration(params)
    share = effective_share(params, calibration)
    if hosts is not None:
        return _sweep_hosts(params, hosts, run, series, cfgs, calibration, share, carried, progress)
    docroot = docroot_for(params)
    run.mkdir(parents=True, exist_ok=True)
    testbed = make_testbed(params, share)
    method_deviations(params, testbed, share)
    status = "interrupted"
    with _sigterm_raises(), testbed, links(params, testbed) as net, \
            mounted_disk(params, docroot, testbed) as disk, runner_pinned(testbed.client_cpu_list):
        man = _open_manifest(run, params, testbed, calibration)
        try:
            runner = PointRunner(testbed, disk.mountpoint if disk else docroot, params.warmup_s,
                                 params.duration_s, params.line_speed, params.seed,
                                 params.loadgen_threads, net, disk=disk, prewarm=params.prewarm,
                                 max_connections=params.max_connections(),
                                 settle_taus=params.settle_taus, settle_max_s=params.settle_max_s)
            failed = _run_series(run, series, runner, cfgs, progress,
                                 Carry.of(params, carried), man)
            status = f"done, {len(failed)} failed" if failed else "done"
        finally:
            shutil.rmtree(run / "work", ignore_errors=True)  # servers' scratch (post logs)
            _close_manifest(run, man, testbed, status)
    return run


def hosts_from_env() -> Hosts | None:
    """The hosts file $UKWEB_HOSTS names (unset or empty: this machine)."""
    path = os.environ.get(HOSTS_ENV, "").strip()
    if not path:
        return None
    try:
        return hosts_mod.load(paths.resolve(path))
    except hosts_mod.HostsError as exc:
        raise ParamsError(f"{HOSTS_ENV}: {exc}") from exc


def _sweep_hosts(params: SweepParams, hosts: Hosts, run: Path, series: list[list[Point]],
                 cfgs: dict[str, ServerConfig], calibration: dict | None, share: float | None,
                 carried: budget.Plan | None, progress: bool) -> Path:
    """The sweep over a multi-host testbed (ukweb.multirun): the same series, points, run
    directory and manifest, with the hosts' record; a host that cannot be used is one line
    (SweepError) before any point runs."""
    from ukweb import multirun
    from ukweb.remote import RemoteError

    status = "interrupted"
    with _sigterm_raises():
        try:
            testbed = multirun.Testbed(hosts, params, share, run.name).__enter__()
        except RemoteError as exc:
            raise SweepError(str(exc)) from exc
        try:
            run.mkdir(parents=True, exist_ok=True)
            man = _open_manifest(run, params, testbed, calibration, hosts=testbed.record())
            try:
                runner = multirun.HostsRunner(testbed, params)
                failed = _run_series(run, series, runner, cfgs, progress,
                                     Carry.of(params, carried), man)
                status = f"done, {len(failed)} failed" if failed else "done"
            except (RemoteError, PointFailed) as exc:  # a series the server host could not start
                raise SweepError(f"{exc}; rerun with the same run id to resume") from exc
            finally:
                _close_manifest(run, man, testbed, status)
        finally:
            testbed.__exit__(None, None, None)
    return run


@contextlib.contextmanager
def runner_pinned(cpus: list[int]) -> Iterator[None]:
    """The runner itself (sampler, HTTP calls, pre-warm) off the server's CPU for the block."""
    affinity = os.sched_getaffinity(0)
    pin(cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, affinity)


class Progress:
    """progress.jsonl of a run (one JSON object per line), and a tqdm bar on a terminal."""

    def __init__(self, run: Path, total: int, show: bool) -> None:
        self.path, self.total, self.index = run / "progress.jsonl", total, 0
        self.start = time.monotonic()
        self.bar = tqdm(total=total, unit="point", disable=not (show and sys.stderr.isatty()))

    def emit(self, event: str, **fields: object) -> None:
        rec = {"event": event, **fields, "time": manifest.now()}
        with open(self.path, "a") as f:
            f.write(json.dumps(rec, default=str) + "\n")

    def begin(self, point: Point) -> None:
        self.index += 1
        self.bar.set_description(point.label())
        self.emit("start", point=point.label(), index=self.index, total=self.total)

    def end(self, point: Point, status: str, replies_per_s: float | None) -> None:
        self.emit("end", point=point.label(), index=self.index, total=self.total, status=status,
                  replies_per_s=replies_per_s,
                  elapsed_s=round(time.monotonic() - self.start, 1))
        self.bar.update(1)


@dataclasses.dataclass
class Carry:
    """How the carried points of a sweep are measured: from which connection count, the window
    the budget gave each point, the transition and the batch length."""

    params: SweepParams | None
    windows: dict[tuple[str, str, int], float]
    batches: dict[str, int]

    @classmethod
    def of(cls, params: SweepParams, plan: budget.Plan | None) -> Carry:
        if params.carry_from is None or plan is None:
            return cls(None, {}, {})
        return cls(params, plan.windows, plan.batches)

    @property
    def transition_s(self) -> float:
        return self.params.transition_s if self.params else 0.0

    def carried(self, p: Point) -> bool:
        return self.params is not None and carried(self.params, p.workload, p.server,
                                                          p.connections)

    def batch_s(self, p: Point) -> int:
        return self.batches[budget.family(p.server)]

    def window(self, p: Point) -> float:
        default = self.params.carried_s or self.params.min_batches * self.batch_s(p)
        return self.windows.get((p.workload, p.server, p.connections), float(default))


def _run_series(run: Path, series: list[list[Point]], runner: PointRunner,
                cfgs: dict[str, ServerConfig], show: bool, carry: Carry | None = None,
                man: dict | None = None) -> list[Point]:
    failed: list[Point] = []
    carry = carry or Carry(None, {}, {})
    prog = Progress(run, sum(len(s) for s in series), show)
    for pts in series:
        todo = [p for p in pts if not (run / p.rel() / "DONE").is_file()]
        for p in pts:
            if p not in todo:
                prog.begin(p)
                prog.end(p, "skipped", None)
        if not todo:
            continue
        label = f"{todo[0].workload}-{todo[0].server}"
        fresh = [p for p in todo if not carry.carried(p)]
        carried = [p for p in todo if carry.carried(p)]
        # A carried series resumed midway (some of its carried points DONE) settles again
        # before its next point: the server and its cache did not survive the interruption.
        resumed = any(carry.carried(p) and p not in todo for p in pts)
        with runner.series(label, todo[0].connections) as info:
            prog.emit("series", **info)
            for point in fresh:
                prog.begin(point)
                status, rate = _run_point(run, point, runner, cfgs[point.server])
                prog.end(point, status, rate)
                if status != "DONE":
                    failed.append(point)
            while carried:
                failed += _run_carried(run, carried, runner, cfgs[carried[0].server], carry,
                                       prog, man, resumed)
                resumed = False
    prog.bar.close()
    return failed


def _run_carried(run: Path, carried: list[Point], runner: PointRunner, cfg: ServerConfig,
                 carry: Carry, prog: Progress, man: dict | None, resumed: bool) -> list[Point]:
    """The carried points of one series on one server, settled first; pops the points it
    measured from `carried` and returns the failed ones. When the server dies the caller
    starts another (settled again) for the rest."""
    failed: list[Point] = []
    first = carried[0]
    work = run / "work" / "carried" / f"{first.workload}-{first.server}"
    try:
        with runner.carried(work, cfg, first) as settle:
            record = {"series": f"{first.workload}-{first.server}", "from": first.label(),
                      "resumed": resumed, **settle}
            prog.emit("settled", **record)
            _note_settling(run, man, record)
            while carried:
                point = carried.pop(0)
                prog.begin(point)
                status, rate = _run_point(run, point, runner, cfg, carry, settle)
                prog.end(point, status, rate)
                if status != "DONE":
                    failed.append(point)
                    if not runner.server_alive():
                        break  # the rest on a new server, settled again
    except TestbedDied as exc:
        raise SweepError(f"{first.label()}: {exc}; rerun with the same run id to resume") from exc
    except PointFailed as exc:  # the carried server could not start or settle: fail its point
        point = carried.pop(0)
        prog.begin(point)
        (run / point.rel()).mkdir(parents=True, exist_ok=True)
        mark_failed(run / point.rel(), point, exc)
        prog.end(point, "FAILED", None)
        failed.append(point)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return failed


def _note_settling(run: Path, man: dict | None, record: dict) -> None:
    """The manifest's current run lists each carried series' settling (a resumed series says
    it settled again)."""
    if man is None:
        return
    man["runs"][-1].setdefault("settled", []).append(record)
    try:
        manifest.write(run / "manifest.json", man)
    except OSError as exc:
        log.error("cannot update %s/manifest.json: %s", run, exc)


def _run_point(run: Path, point: Point, runner: PointRunner, cfg: ServerConfig,
               carry: Carry | None = None, settle: dict | None = None) -> tuple[str, float | None]:
    """Measure one point (on the carried server when `carry` is given); ('DONE', replies/s) or
    ('FAILED', None). A dead testbed part or a full disk stops the sweep (SweepError) after
    marking the point."""
    _check_terminated()
    d = run / point.rel()
    try:
        if carry is not None:
            done = runner.run_carried(run, point, carry.window(point), carry.transition_s,
                                      carry.batch_s(point), settle or {})
        else:
            done = runner.run(run, point, cfg)
        return "DONE", done.get("ops_per_s")
    except DiskFull as exc:
        stop = SweepError(f"{exc}; free space under {run}, then resume")
        stop.resume_run = run  # type: ignore[attr-defined]  # cli prints the exact command
        raise stop from exc
    except TestbedDied as exc:
        mark_failed(d, point, exc)
        raise SweepError(f"{point.label()}: {exc}; rerun with the same run id to resume") from exc
    except PointFailed as exc:
        mark_failed(d, point, exc)
    except (CpuEmulationError, DiskModelError) as exc:
        mark_failed(d, point, PointFailed("testbed error", str(exc)))
        raise SweepError(str(exc)) from exc
    except Exception as exc:  # a bug must cost one point, not the rest of the sweep
        log.exception("point %s: unexpected error", point.label())
        mark_failed(d, point, PointFailed(f"runner error ({type(exc).__name__})", str(exc)))
    return "FAILED", None


def _close_manifest(run: Path, man: dict, testbed: Testbed, status: str) -> None:
    man["deviations"] = _merge(man["deviations"], testbed.deviation_list())
    man["runs"][-1].update(end=manifest.now(), status=status)
    man["end"] = man["runs"][-1]["end"]
    try:
        manifest.write(run / "manifest.json", man)
    except OSError as exc:
        log.error("cannot update %s/manifest.json: %s", run, exc)


def point_status(run: Path, params: SweepParams) -> dict[str, list[str]]:
    """done / failed / missing point labels of a run."""
    out: dict[str, list[str]] = {"done": [], "failed": [], "missing": []}
    for p in plan(params):
        d = run / p.rel()
        key = "done" if (d / "DONE").is_file() else "failed" if (d / "FAILED").is_file() else "missing"
        out[key].append(p.label())
    return out


def _overrides(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ParamsError(f"--set {pair!r}: expected KEY=VALUE")
        out[key] = yaml.safe_load(value)
    return out


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ukweb run", description="Run (or resume) a sweep.")
    parser.add_argument("-f", "--params", required=True, type=Path, help="params/*.yaml profile")
    parser.add_argument("--run-id", help="resume or name this run (default <profile>-<time>)")
    parser.add_argument("--root", type=Path, default=RAW, help="where runs go (default data/raw)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a parameter (YAML value), e.g. --set duration_s=2")
    parser.add_argument("--hosts", type=Path, metavar="FILE",
                        help="run on a multi-host testbed: one server, N clients (docs/hosts.md)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        testbed_hosts = None
        if args.hosts is not None:
            import asyncssh
            asyncssh.set_log_level(logging.WARNING)  # it logs every connection at INFO
            testbed_hosts = hosts_mod.load(args.hosts)
        params = load_params(args.params)
        if args.set:
            params = validate({**_raw(args.params), **_overrides(args.set)})
        if args.run_id is not None:
            run_path(args.root, args.run_id)
        plan_ = check_budget(params)
        if plan_ is not None:
            print(f"ukweb run: {params.profile}: {plan_.table()}", file=sys.stderr)
        run = sweep(params, args.run_id, args.root, progress=not args.no_progress,
                    hosts=testbed_hosts)
    except (ParamsError, hosts_mod.HostsError) as exc:
        print(f"ukweb run: {exc}", file=sys.stderr)
        return 2
    except SweepError as exc:
        run = getattr(exc, "resume_run", None)
        print(f"ukweb run: {exc}" + (f": {_resume_command(args, run)}" if run else ""),
              file=sys.stderr)
        return 1
    except (fileset.FilesetError, CpuEmulationError, LeftoversError) as exc:
        print(f"ukweb run: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Interrupted) as exc:
        print(f"ukweb run: interrupted ({exc or 'Ctrl-C'}); rerun with the same --run-id to resume",
              file=sys.stderr)
        return 143 if isinstance(exc, Interrupted) else 130
    state = point_status(run, params)
    print(f"{run}: {len(state['done'])} done, {len(state['failed'])} failed, "
          f"{len(state['missing'])} missing")
    for label in state["failed"]:
        print(f"failed: {label}", file=sys.stderr)
    return 1 if state["failed"] or state["missing"] else 0


def _resume_command(args: argparse.Namespace, run: Path) -> str:
    """The exact command that resumes the stopped run."""
    cmd = ["ukweb", "run", "-f", str(args.params), "--run-id", run.name]
    if args.hosts is not None:
        cmd += ["--hosts", str(args.hosts)]
    if args.root != RAW:
        cmd += ["--root", str(args.root)]
    for pair in args.set:
        cmd += ["--set", pair]
    return " ".join(shlex.quote(c) for c in cmd)


def _raw(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}
