"""`ukweb export RUN`: one archive of a run, to publish or hand on.

RUN.tar.gz holds one directory, <run-id>/, that `ukweb report` / `make report RUN=...` accepts
once unpacked:
  manifest.json, progress.jsonl, points/...   the run as measured (raw or compacted logs)
  processed/                                  data/processed/<run-id>/ when it exists
                                              (points.parquet, claims, figures, report.html)
  environment/                                what read it: `ukweb --version`, the installed
                                              Python packages, the paper's claims and rules
The servers' scratch (work/) is left out. The archive is written beside its final name and
renamed when complete, so an interrupted export leaves no half archive.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import tarfile
from importlib import metadata
from pathlib import Path

from ukweb import analysis, manifest, paths

SKIPPED = {"work"}


def environment() -> dict[str, bytes]:
    """The files of environment/: version, packages, host, and the paper's tables."""
    packages = sorted(f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions()
                      if d.metadata["Name"])
    host = {"python": sys.version, "platform": platform.platform(), "machine": platform.machine()}
    files = {"version.txt": manifest.version() + "\n",
             "requirements.txt": "\n".join(packages) + "\n",
             "host.json": json.dumps(host, indent=2) + "\n"}
    out = {name: text.encode() for name, text in files.items()}
    for table in ("claims.csv", "rules.csv"):
        if (paths.PAPER / table).is_file():
            out[table] = (paths.PAPER / table).read_bytes()
    return out


def _keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    """Leave out <run-id>/work/ and what is under it."""
    parts = Path(info.name).parts
    return None if len(parts) > 1 and parts[1] in SKIPPED else info


def export(run: Path, target: Path | None = None, processed: Path | None = None) -> Path:
    """Write the archive of run (default <run-id>.tar.gz in the current directory)."""
    run = analysis.require_run(Path(run)).resolve()
    target = Path(target or f"{run.name}.tar.gz")
    processed = processed or analysis.processed_dir(run)
    tmp = target.with_name(target.name + ".part")
    with tarfile.open(tmp, "w:gz") as tar:
        tar.add(run, arcname=run.name, filter=_keep)
        if processed.is_dir() and processed.resolve() != run:
            tar.add(processed, arcname=f"{run.name}/processed")
        for name, data in environment().items():
            info = tarfile.TarInfo(f"{run.name}/environment/{name}")
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    os.replace(tmp, target)
    return target


def cli(argv: list[str]) -> int:
    """`ukweb export RUN [-o FILE]`."""
    parser = argparse.ArgumentParser(prog="ukweb export", description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="run directory (data/raw/<id> or data/reference/<id>)")
    parser.add_argument("-o", "--output", type=Path, help="archive (default ./<run-id>.tar.gz)")
    parser.add_argument("--processed", type=Path,
                        help="processed outputs to include (default data/processed/<run-id>)")
    args = parser.parse_args(argv)
    try:
        target = export(args.run, args.output, args.processed)
    except FileNotFoundError as exc:
        print(f"ukweb export: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {target} ({target.stat().st_size / 1e6:.1f} MB); unpack it and run "
          f"`ukweb report {Path(args.run).resolve().name}`")
    return 0
