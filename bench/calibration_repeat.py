"""Two calibrations on the same machine, side by side: do they agree within 5 %?

    .venv/bin/python bench/calibration_repeat.py [-f params/paper.yaml] [--rounds 2]

Runs `ukweb calibrate` (ukweb.calibrate.calibrate) `rounds` times in the profile's regime, each
writing to a scratch file (params/calibration.yaml is left alone unless --keep names it), and
prints each share, its steps and the largest relative difference between two shares. About 2
minutes per round.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from ukweb import calibrate
from ukweb.paths import PARAMS


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-f", "--params", type=Path, default=PARAMS / "paper.yaml")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--keep", type=Path, default=None,
                    help="also write the last calibration there (e.g. params/calibration.yaml)")
    args = ap.parse_args()
    shares = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            last = i == args.rounds - 1
            out = args.keep if last and args.keep else Path(tmp) / f"cal{i}.yaml"
            rec = calibrate.calibrate(args.params, out)
            shares.append(rec["cpu_share"])
            steps = ", ".join(f"{s['cpu_share']:.4f}: {s['replies_per_s']:.0f}/s "
                              f"{s['cpu_us_per_reply']:.1f} µs" for s in rec["steps"])
            print(f"round {i + 1}: share {rec['cpu_share']:.4f} ({steps})")
    spread = max(shares) / min(shares) - 1
    verdict = "agree" if spread <= 0.05 else "DO NOT agree"
    print(f"largest difference {100 * spread:.1f} % (goal <= 5 %): calibrations {verdict}")
    return 0 if spread <= 0.05 else 1


if __name__ == "__main__":
    raise SystemExit(main())
