"""A profile's emulated regime on this machine: its calibration and CPU share, the testbed
(CPU method, memory cap, pinning), the file set and the disk model behind it, and the
deviations from the paper's testbed they record. The single-machine runner (ukweb.runs), the
calibration and a multi-host testbed's server agent (ukweb.agent) set it up the same way.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import yaml

from ukweb import cpuemul, diskmodel, fileset, paths
from ukweb.diskmodel import DiskModelError
from ukweb.sweep_params import ParamsError, SweepParams
from ukweb.testbed import Testbed


class SweepError(RuntimeError):
    """The sweep cannot go on (parameters differ from the run being resumed, disk full, ...)."""


def load_calibration(params: SweepParams) -> dict | None:
    """The calibration file's content when it exists (it proposes cpu_share for its method)."""
    path = params.calibration_path()
    if path is None or not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ParamsError(f"calibration {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ParamsError(f"calibration {path}: expected a mapping")
    share = data.get("cpu_share")
    if share is not None and (isinstance(share, bool) or not isinstance(share, (int, float))
                              or not 0 < share < 1):
        raise ParamsError(f"calibration {path}: cpu_share={share!r}: expected null or 0 < share < 1")
    return {"path": str(path), **data}


def effective_share(params: SweepParams, calibration: dict | None) -> float | None:
    """The emulated CPU's speed: the profile's cpu_share, else the calibration's when it was
    made with the same CPU method (a share calibrated for one method means nothing for another)."""
    if params.cpu_share is not None or params.cpu_method == "none":
        return params.cpu_share
    cal = calibration or {}
    if cal.get("cpu_share") is None:
        return None
    if cal.get("cpu_method") != params.cpu_method:
        raise ParamsError(f"calibration {cal.get('path')} was made for cpu_method="
                          f"{cal.get('cpu_method')!r}, the profile uses {params.cpu_method!r}: "
                          "run `ukweb calibrate` again (or delete the file)")
    return float(cal["cpu_share"])


def make_testbed(params: SweepParams, share: float | None) -> Testbed:
    """The testbed of a profile: the CPU method at `share`, memory cap, pinning, throttle."""
    return Testbed(server_cpus=params.server_cpus, client_cpus=params.client_cpus,
                   memory_mb=params.memory_mb,
                   cpu_quota_pct=share * 100 if params.cpu_method == "quota" and share else None,
                   thief_share=share if params.cpu_method == "thief" else None,
                   drop_caches=params.drop_caches, disk_read_mbps=params.disk_read_mbps,
                   disk_read_iops=params.disk_read_iops, disk_path=params.fileset_path().parent,
                   shield=params.cpu_method != "none")


def check_methods(params: SweepParams) -> None:
    """One clear error before anything runs when the CPU or disk method cannot work here."""
    why = cpuemul.check(params.cpu_method) if params.cpu_method != "none" else None
    if why:
        raise SweepError(why)
    if params.disk_model:
        why = diskmodel.check()
        if why:
            raise SweepError(f"{why} (or set disk_model: false, a recorded deviation)")


def docroot_for(params: SweepParams, connections: int = 0) -> Path:
    """Generate the file set for the largest point (or `connections`) once; later runs reuse it."""
    most = max(params.max_connections(), connections)
    root = Path(fileset.ensure(params.fileset_path(), most, seed=params.seed))
    return root.parent if root.name == "file_set" else root


def method_deviations(params: SweepParams, testbed: Testbed, share: float | None) -> None:
    """Record where the profile's methods fall short of the paper's testbed."""
    if params.cpu_method == "none":
        testbed.deviate("cpu", "cpu_method none: the server runs at this machine's CPU speed, "
                        "so peaks move to higher connection counts")
    elif share is None:
        testbed.deviate("cpu", f"cpu_method {params.cpu_method} without a cpu_share (no "
                        "calibration): the server runs at this machine's CPU speed")
    if params.cpu_method == "quota":
        testbed.deviate("cpu_method", "CFS quota: the kernel refuses quotas under 1 ms, so a "
                        "read that blocks inside the throttled part of a period costs nothing "
                        "(bench/cpu_emulation.py); blocked time is not lost as on a slow CPU")
    if not params.disk_model:
        testbed.deviate("disk_model", "disk_model: false: the file set is read from this "
                        "machine's disk, without the IDE disk's 12 ms positioning")
    if params.warmup_s < params.settle_s:
        testbed.deviate("warmup", f"warmup_s={params.warmup_s:g} < settle_s={params.settle_s:g}: "
                        "the offered load has not settled when measurement starts (points are "
                        "marked unsteady)")


@contextlib.contextmanager
def mounted_disk(params: SweepParams, docroot: Path, testbed: Testbed) -> Iterator[object | None]:
    """The file set behind the disk model for the whole sweep, when params.disk_model."""
    if not params.disk_model:
        yield None
        return
    base = paths.RUNTIME / f"disk-{os.getpid()}"
    dp = diskmodel.DiskParams(seek_ms=params.disk_seek_ms, transfer_mbps=params.disk_mbps)
    try:
        dm = diskmodel.DiskModel(docroot, base / "mnt", dp, testbed.client_cpu_list, base / "work")
        dm.__enter__()
    except DiskModelError as exc:
        raise SweepError(str(exc)) from exc
    # Once per sweep: the daemon's backing files into the host page cache, so that a miss at
    # the mount costs the modelled disk, not this machine's (ukweb.diskmodel.warm_backing).
    warmed = diskmodel.warm_backing(docroot / "file_set")
    testbed.disk_model = {**dm.describe(), "backing_warmed_bytes": warmed}
    try:
        yield dm
    finally:
        dm.__exit__(None, None, None)
        shutil.rmtree(base, ignore_errors=True)
