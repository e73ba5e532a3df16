"""Run the C load generator (`build/loadgen`) for one data point and return its summary.

The command line and the output files are fixed by docs/interfaces.md; this module only builds
the arguments, runs the program to completion and turns a failure into a `LoadgenError` that
carries loadgen's own stderr.
"""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ukweb import paths
from ukweb.specweb99 import ResetParams
from ukweb.workload import MIXES, Mix

log = logging.getLogger(__name__)

# Seconds allowed beyond warm-up + measurement before a silent loadgen is killed: start-up,
# the last per-request timeout and writing the log.
GRACE_S = 30.0


class LoadgenError(RuntimeError):
    """loadgen failed (bad arguments, could not run, killed); the message holds its stderr."""


@dataclass
class LoadgenParams:
    """One data point's load: the loadgen flags of docs/interfaces.md with their defaults."""

    connections: int
    mix: str | Mix = "static"
    warmup_s: float = 5
    duration_s: float = 10
    line_speed: float = 400_000
    conform_speed: float = 320_000
    keepalive_pct: float = 0.7
    ka_min: int = 5
    ka_max: int = 15
    seed: int = 1
    threads: int = 1
    timeout_s: float = 10
    dirs: int | None = None
    reset: ResetParams | None = None
    prefix: str = ""
    url: str | None = None  # benchmark mode: repeat one static URL, check status and length only

    def __post_init__(self) -> None:
        if self.connections < 1 or self.threads < 1 or self.threads > self.connections:
            raise ValueError(
                f"need connections >= threads >= 1, got connections={self.connections} "
                f"threads={self.threads}")
        if isinstance(self.mix, str) and self.mix not in MIXES:
            raise ValueError(f"unknown mix {self.mix!r}; known mixes: {', '.join(MIXES)}")
        if self.warmup_s < 0 or self.duration_s <= 0 or self.timeout_s <= 0:
            raise ValueError("warmup_s must be >= 0, duration_s and timeout_s > 0")
        if not 0 <= self.keepalive_pct <= 1 or not 1 <= self.ka_min <= self.ka_max:
            raise ValueError("need 0 <= keepalive_pct <= 1 and 1 <= ka_min <= ka_max")


def _mix_args(mix: str | Mix) -> list[str]:
    if isinstance(mix, Mix):
        return ["--mix-shares", mix.shares_arg()]
    return ["--mix", mix]


def command(params: LoadgenParams, servers: Sequence[str], out_dir: Path) -> list[str]:
    """The loadgen argv for one point; `servers` are HOST:PORT strings (spread round-robin)."""
    if not servers:
        raise ValueError("loadgen needs at least one server HOST:PORT")
    argv = [str(paths.binary("loadgen"))]
    for server in servers:
        argv += ["--server", server]
    p = params
    argv += ["--connections", str(p.connections), "--out", str(out_dir), *_mix_args(p.mix),
             "--warmup", f"{p.warmup_s:g}", "--duration", f"{p.duration_s:g}",
             "--line-speed", f"{p.line_speed:g}", "--conform-speed", f"{p.conform_speed:g}",
             "--keepalive-pct", f"{p.keepalive_pct:g}", "--ka-min", str(p.ka_min),
             "--ka-max", str(p.ka_max), "--seed", str(p.seed), "--threads", str(p.threads),
             "--timeout", f"{p.timeout_s:g}"]
    if p.dirs is not None:
        argv += ["--dirs", str(p.dirs)]
    if p.reset is not None:
        r = p.reset
        argv += ["--maxload", str(r.maxload), "--maxthread", str(r.maxthread),
                 "--exp", f"{r.exp1},{r.exp2}", "--pttime", str(r.pttime)]
    if p.prefix:
        argv += ["--prefix", p.prefix]
    if p.url:
        argv += ["--url", p.url]
    return argv


def run(params: LoadgenParams, servers: Sequence[str], out_dir: Path, *,
        preexec: Callable[[], None] | None = None) -> dict:
    """Run loadgen for one point, wait for it, and return the parsed summary.json.

    Raises LoadgenError with loadgen's stderr when it exits non-zero, outlives warm-up +
    measurement + GRACE_S + its per-request timeout, or leaves no summary. The child is killed
    if this call is interrupted, so no loadgen outlives its point.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    argv = command(params, servers, out_dir)
    log.info("loadgen: %s", " ".join(argv))
    limit = params.warmup_s + params.duration_s + params.timeout_s + GRACE_S
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=preexec)
    try:
        _, stderr = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, stderr = proc.communicate()
        raise LoadgenError(f"loadgen ran past {limit:.0f} s and was killed; stderr: "
                           f"{stderr.strip()}") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        raise LoadgenError(f"loadgen exited {proc.returncode}: {stderr.strip()}")
    summary = out_dir / "summary.json"
    try:
        return json.loads(summary.read_text())
    except (OSError, ValueError) as exc:
        raise LoadgenError(f"loadgen exited 0 but {summary} is unreadable: {exc}") from exc
