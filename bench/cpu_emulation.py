"""The slow-CPU emulation against its model, each method measured side by side in one run.

    .venv/bin/python bench/cpu_emulation.py [--share 0.109] [--seconds 3] [--rounds 3] [--cpu 0]

One thread does X µs of CPU per request (47 µs here, the userver's static cost at full speed)
and blocks 8 ms every 20th request (a disk read). On a uniformly slow CPU of relative speed
`share` it would manage 1 / (X/share + B/K) requests/s: blocked time is lost. Printed for each
method (ukweb.cpuemul: thief, quota, none) with blocks and without (a pure-CPU loop): measured
and model requests/s and their ratio, the median over rounds. The method passes when both ratios
are within 10 % of 1; the CFS quota fails on the blocking loop (blocking is nearly free under
it), which is why the thief is the default.
"""

from __future__ import annotations

import argparse
import statistics

from ukweb import cpuemul


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--share", type=float, default=0.109, help="emulated CPU speed / this CPU's")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cpu", type=int, default=0)
    ap.add_argument("--methods", default="thief,quota,none")
    args = ap.parse_args()
    print(f"share {args.share}, X = 47 µs CPU/request, B = 8 ms block every K = 20 requests; "
          f"median of {args.rounds} rounds of {args.seconds:g} s")
    print(f"{'method':<7} {'loop':<9} {'measured/s':>11} {'model/s':>9} {'ratio':>6}  verdict")
    for method in args.methods.split(","):
        for every, loop in ((20, "blocking"), (0, "pure CPU")):
            runs = [cpuemul.microbench(method, args.share, args.cpu, args.seconds, every=every)
                    for _ in range(args.rounds)]
            measured = statistics.median(r["measured_per_s"] for r in runs)
            model = runs[0]["model_per_s"]
            ratio = measured / model
            verdict = "matches the model" if abs(ratio - 1) <= 0.10 else "DOES NOT match"
            print(f"{method:<7} {loop:<9} {measured:>11.0f} {model:>9.0f} {ratio:>6.2f}  {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
