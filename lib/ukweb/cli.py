"""The `ukweb` command: one subcommand per step of the pipeline.

Each subcommand's arguments live with the module that does the work (`<module>.cli(argv)`),
so the CLI and the notebooks call the same functions.
"""

from __future__ import annotations

import importlib
import logging
import sys

from ukweb.manifest import version

# subcommand -> (module, one-line help)
COMMANDS = {
    "check": ("ukweb.testbed", "check this machine: CPUs, cgroups, io_uring, tools"),
    "build": ("ukweb.servers", "build the C servers and the load generator"),
    "fileset": ("ukweb.fileset", "generate or verify a SPECweb99 file set"),
    "calibrate": ("ukweb.calibrate", "find the CPU share that matches the paper's anchor"),
    "run": ("ukweb.runs", "run a sweep from a params file"),
    "hosts": ("ukweb.multihost", "check a multi-host testbed's hosts file (docs/hosts.md)"),
    "analyze": ("ukweb.analysis", "tidy table of a run's data points"),
    "report": ("ukweb.report", "figures, claims and report.html from a run directory"),
    "compact": ("ukweb.compact", "a run's request logs as Parquet (zstd), to commit a reference"),
    "reproduce": ("ukweb.reproduce", "run the notebooks end to end with papermill"),
    "status": ("ukweb.runstatus", "a run's points: done, failed, missing, with reasons"),
    "compare": ("ukweb.compare", "two runs side by side: per point, peak and claim, with intervals"),
    "export": ("ukweb.export", "one archive of a run: logs, manifest, outputs, environment"),
}


def usage() -> str:
    lines = ["usage: ukweb [--version] COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<10} {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        print(version())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"ukweb: unknown command {name!r}; try `ukweb --help`", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.cli(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
