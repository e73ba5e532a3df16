"""Sweeps: every workload x server configuration x connections x repetition, as in §4.

`sweep(params)` (and `ukweb run -f params/quick.yaml`) measures every point of a profile into
data/raw/<run-id>/ (layout: design "A run on disk"). Rerunning the same run id resumes it: points
with DONE are kept, the rest are redone. SIGINT/SIGTERM stop cleanly (the server and loadgen
are killed through their cgroups, the cgroups removed, the partial point left without DONE).
A server that fails to start or dies marks its point FAILED and the sweep goes on; a full disk
stops the sweep with an error rather than leaving a corrupt log.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import logging
import shutil
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import yaml
from tqdm import tqdm

from ukweb import fileset, manifest
from ukweb.netns import NetnsError, Topology
from ukweb.paths import RAW
from ukweb.point import DiskFull, Point, PointFailed, PointRunner, mark_failed, point_dir
from ukweb.servers import ServerConfig, named_config
from ukweb.sweep_params import ParamsError, SweepParams, load_params, validate
from ukweb.testbed import Testbed

__all__ = ["SweepParams", "load_params", "sweep", "point_dir", "plan", "cli", "SweepError"]

log = logging.getLogger(__name__)


class SweepError(RuntimeError):
    """The sweep cannot go on (parameters differ from the run being resumed, disk full, ...)."""


class Interrupted(BaseException):
    """SIGTERM, turned into an exception so every context manager cleans up on the way out."""


def plan(params: SweepParams) -> list[Point]:
    """Every point of the profile, in run order, without duplicates."""
    reps = range(1, params.repetitions + 1)
    points = [Point(w, s, c, r) for w in params.workloads for s in params.servers[w]
              for c in params.connections for r in reps]
    ps = params.process_sweep
    if ps is not None:
        points += [Point(w, f"userver-{n}", ps.connections, r)
                   for w in ps.workloads for n in ps.procs for r in reps]
    return list(dict.fromkeys(points))


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


def load_calibration(params: SweepParams) -> dict | None:
    """The calibration file's content when it exists (it proposes cpu_quota_pct)."""
    path = params.calibration_path()
    if path is None or not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ParamsError(f"calibration {path} is not valid YAML: {exc}") from exc
    quota = data.get("cpu_quota_pct") if isinstance(data, dict) else "?"
    if quota is not None and (isinstance(quota, bool) or not isinstance(quota, (int, float))
                              or not 1 <= quota <= 100):
        raise ParamsError(f"calibration {path}: cpu_quota_pct={quota!r}: expected null or 1..100")
    return {"path": str(path), **data}


def effective_quota(params: SweepParams, calibration: dict | None) -> float | None:
    if params.cpu_quota_pct is not None:
        return params.cpu_quota_pct
    return (calibration or {}).get("cpu_quota_pct")


def _docroot(params: SweepParams) -> Path:
    """Generate the file set for the largest point once; later runs reuse it."""
    root = Path(fileset.ensure(params.fileset_path(), params.max_connections(), seed=params.seed))
    return root.parent if root.name == "file_set" else root


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """While sweeping, SIGTERM raises Interrupted (in the main thread) like Ctrl-C does."""
    def handler(signum: int, frame: object) -> None:
        # One is enough: a second SIGTERM must not interrupt the clean-up it started.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Interrupted("SIGTERM")
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
def _network(params: SweepParams, testbed: Testbed) -> Iterator[Topology | None]:
    """The two rate-limited links of the paper's testbed when params.netns, else loopback."""
    if not params.netns:
        yield None
        return
    if not testbed.caps.netns:
        testbed.deviate("netns", testbed.caps.problems()["netns"] + "; using loopback")
        yield None
        return
    try:
        topo = Topology(prefix=f"{testbed.prefix}-net").create()
    except NetnsError as exc:
        testbed.deviate("netns", f"{exc}; using loopback")
        yield None
        return
    testbed.network = {"server_ns": topo.server_ns, "client_ns": topo.client_ns,
                       "links": topo.links, "rate": topo.rate, "server_addrs": topo.server_addrs()}
    try:
        yield topo
    finally:
        topo.remove()


def _open_manifest(run: Path, params: SweepParams, testbed: Testbed,
                   calibration: dict | None) -> dict:
    path = run / "manifest.json"
    mine = params.as_dict()
    if path.is_file():
        man = manifest.read(path)
        theirs = {k: v for k, v in man["params"].items() if k != "run_id"}
        if theirs != {k: v for k, v in mine.items() if k != "run_id"}:
            changed = sorted(k for k in mine if k != "run_id" and mine.get(k) != theirs.get(k))
            raise SweepError(f"{run} was started with other parameters ({', '.join(changed)}); "
                             "use a new run id")
        man["deviations"] = _merge(man["deviations"], testbed.deviation_list())
    else:
        man = manifest.build(mine, deviations=testbed.deviation_list(),
                             calibration=calibration, testbed=testbed.describe())
    man["runs"].append({"start": manifest.now(), "end": None, "status": "running",
                        "git": manifest.git_state()})
    manifest.write(path, man)
    return man


def _merge(old: list[dict], new: list[dict]) -> list[dict]:
    return old + [d for d in new if d not in old]


def sweep(params: SweepParams, run_id: str | None = None, root: Path = RAW, progress: bool = True,
          configs: dict[str, ServerConfig] | None = None) -> Path:
    """Run (or resume) every point of params; returns the run directory.

    configs maps server labels to ServerConfig objects the caller built; other labels go
    through ukweb.servers.named_config.
    """
    run_id = run_id or params.run_id or f"{params.profile}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    points = plan(params)
    cfgs = resolve_configs({p.server for p in points}, params.backlog, configs)
    calibration = load_calibration(params)
    run = Path(root) / run_id
    run.mkdir(parents=True, exist_ok=True)
    testbed = Testbed(server_cpus=params.server_cpus, client_cpus=params.client_cpus,
                      memory_mb=params.memory_mb,
                      cpu_quota_pct=effective_quota(params, calibration),
                      drop_caches=params.drop_caches, disk_read_mbps=params.disk_read_mbps,
                      disk_read_iops=params.disk_read_iops, disk_path=params.fileset_path().parent)
    if testbed.cpu_quota_pct is None:
        testbed.deviate("cpu_quota", "no CPU quota (no calibration): the server runs at this "
                        "machine's CPU speed, so peaks move to higher connection counts")
    status = "interrupted"
    with _sigterm_raises(), testbed, _network(params, testbed) as net:
        man = _open_manifest(run, params, testbed, calibration)
        try:
            docroot = _docroot(params)
            runner = PointRunner(testbed, docroot, params.warmup_s, params.duration_s,
                                 params.line_speed, params.seed, params.loadgen_threads, net)
            failed = _run_points(run, points, runner, cfgs, progress)
            status = f"done, {len(failed)} failed" if failed else "done"
        finally:
            shutil.rmtree(run / "work", ignore_errors=True)  # servers' scratch (post logs)
            _close_manifest(run, man, testbed, status)
    return run


def _run_points(run: Path, points: list[Point], runner: PointRunner,
                cfgs: dict[str, ServerConfig], progress: bool) -> list[Point]:
    failed = []
    bar = tqdm(points, unit="point", disable=not (progress and sys.stderr.isatty()))
    for point in bar:
        bar.set_description(point.label())
        d = run / point.rel()
        if (d / "DONE").is_file():
            log.info("point %s: DONE, skipped", point.label())
            continue
        try:
            runner.run(run, point, cfgs[point.server])
        except DiskFull as exc:
            raise SweepError(str(exc)) from exc
        except PointFailed as exc:
            mark_failed(d, point, exc)
            failed.append(point)
        except Exception as exc:  # a bug must cost one point, not the rest of the sweep
            log.exception("point %s: unexpected error", point.label())
            mark_failed(d, point, PointFailed(f"runner error ({type(exc).__name__})", str(exc)))
            failed.append(point)
    return failed


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
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params)
        if args.set:
            params = validate({**_raw(args.params), **_overrides(args.set)})
        run = sweep(params, args.run_id, args.root, progress=not args.no_progress)
    except ParamsError as exc:
        print(f"ukweb run: {exc}", file=sys.stderr)
        return 2
    except (SweepError, fileset.FilesetError) as exc:
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


def _raw(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}
