"""`ukweb reproduce --profile P` (`make reproduce`): the paper, regenerated end to end.

Runs the notebooks in order with papermill, all with the profile's parameters
(params/<profile>.yaml) plus the run id and output directory chosen here:
01-testbed (machine, build, file set, calibration) -> 02-run (the sweep, raw logs under
data/raw/<run-id>/) -> 03-figures, 04-claims, 05-why (ukweb.report). Executed notebooks,
figures, claims.json and report.html land in data/processed/<run-id>/; the claims table is
printed last. While 02-run sweeps, its progress (ukweb.progress) is shown on the terminal.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import subprocess
import sys
from contextlib import nullcontext
from pathlib import Path

import yaml

from ukweb import paths, progress, report
from ukweb.rules import RulesError
from ukweb.sweep_params import ParamsError, SweepParams, validate

log = logging.getLogger(__name__)

RUN_NOTEBOOKS = ("01-testbed", "02-run")
# Notebook-only parameters, declared beside the profile keys in every parameters cell.
NOTEBOOK_KEYS = ("run_dir", "out_dir")


def profile_path(profile: str) -> Path:
    """params/<profile>.yaml; ParamsError naming the known profiles when it does not exist."""
    path = paths.PARAMS / f"{profile}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in paths.PARAMS.glob("*.yaml"))
        raise ParamsError(f"no profile {profile!r}; known profiles: {', '.join(known)}")
    return path


def load_profile(profile: str) -> dict:
    """The profile's raw parameters (what papermill's -f would pass), validated once here."""
    raw = yaml.safe_load(profile_path(profile).read_text())
    validate(raw)
    return raw


def params_from(namespace: dict) -> SweepParams:
    """The SweepParams a notebook's parameters cell describes (its globals, profile keys only)."""
    keys = set(SweepParams.__dataclass_fields__) - {"extra"}
    return validate({k: namespace[k] for k in keys if k in namespace})


def new_run_id(profile: str) -> str:
    """<profile>-<YYYYmmdd-HHMMSS>, the runner's own default."""
    return f"{profile}-{dt.datetime.now():%Y%m%d-%H%M%S}"


def reproduce(profile: str, run_id: str | None = None) -> Path:
    """Run every notebook for a profile; returns data/processed/<run-id>/report.html.

    02-run writes data/raw/<run_id> (run_sweep with run_dir None); while papermill runs it,
    nothing in the notebook reaches the terminal, so its progress.jsonl is followed here."""
    raw = load_profile(profile)
    run_id = run_id or raw.get("run_id") or new_run_id(profile)
    out = paths.PROCESSED / run_id
    values = {**raw, "run_id": run_id, "run_dir": None, "out_dir": str(out)}
    executed = []
    for name in RUN_NOTEBOOKS:
        with progress.following(paths.RAW / run_id) if name == "02-run" else nullcontext():
            executed.append(report.execute(name, out / "notebooks", values))
    return report.build(paths.RAW / run_id, out, parameters=values, earlier=executed)


def cli(argv: list[str]) -> int:
    """`ukweb reproduce [--profile quick] [--run-id ID]`."""
    parser = argparse.ArgumentParser(prog="ukweb reproduce",
                                     description="run the notebooks end to end with papermill")
    parser.add_argument("--profile", default="quick", help="params/<profile>.yaml (smoke, quick, paper)")
    parser.add_argument("--run-id", help="resume or name the run (default <profile>-<time>)")
    args = parser.parse_args(argv)
    try:
        load_profile(args.profile)
        report.use_rules(None)  # a malformed rule table must stop us before the sweep, not after
    except (ParamsError, RulesError) as err:
        print(f"ukweb reproduce: {err}", file=sys.stderr)
        return 2
    return report.run_and_summarise("ukweb reproduce", lambda: reproduce(args.profile, args.run_id))


def build_binaries() -> list[Path]:
    """`make build` in the repository (the one documented way to build the C programs)."""
    subprocess.run(["make", "-s", "-C", str(paths.REPO), "build"], check=True)
    return [paths.binary(name) for name in ("userver", "ktux", "loadgen")]


def ensure_calibration(params: SweepParams) -> dict | None:
    """The CPU share the sweep will use: from the profile, from its calibration file, or
    measured now (ukweb.calibrate, in the profile's own regime) when the file is named but
    missing; None when the profile emulates no slower CPU."""
    if params.cpu_method == "none":
        log.info("profile %s uses cpu_method none: the server runs at full CPU speed", params.profile)
        return None
    if params.cpu_share is not None:
        return {"cpu_method": params.cpu_method, "cpu_share": params.cpu_share, "source": "profile"}
    path = params.calibration_path()
    if path is None:
        log.info("profile %s names no calibration: the server runs at full CPU speed", params.profile)
        return None
    if not path.is_file():
        from ukweb import calibrate  # late: it starts servers, only needed here

        log.info("%s missing: calibrating now", path)
        calibrate.calibrate(profile=profile_path(params.profile), out=path)
    return yaml.safe_load(path.read_text())


def run_sweep(params: SweepParams, run_id: str | None = None, run_dir: str | Path | None = None) -> Path:
    """The sweep of notebook 02: into run_dir when given (its name is the run id), else into
    data/raw/<run_id>."""
    from ukweb import runs  # late: it pulls in the server and loadgen control

    if run_dir:
        run_dir = Path(run_dir)
        return runs.sweep(params, run_id=run_dir.name, root=run_dir.parent, progress=False)
    return runs.sweep(params, run_id=run_id, progress=False)
