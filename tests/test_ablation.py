"""ukweb.ablation's per-point readings of ktux's module counters (issue 16 item 6)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from ukweb import ablation


def _status(requests: dict, actions: dict, rounds: int, cpu: float, worker: float) -> dict:
    return {"total": {"module": {"requests": requests, "actions": actions, "accept_rounds": rounds,
                                 "cpu_s": cpu, "worker_cpu_s": worker}}}


def test_module_counts_and_cpu_share_over_a_point(tmp_path: Path) -> None:
    zero = {"dyn_get": 0, "post": 0, "cad_get": 0}
    before = _status(zero, zero, 0, 1.0, 10.0)
    after = _status({"dyn_get": 100, "post": 20, "cad_get": 10},
                    {"dyn_get": 416, "post": 103, "cad_get": 40}, 390, 3.0, 20.0)
    (tmp_path / "server-status.json").write_text(json.dumps({"before": before, "after": after}))
    counts = ablation.module_counts(tmp_path)
    assert counts["actions_per_dyn_get"] == 4.16 and counts["actions_per_post"] == 5.15
    assert counts["accept_rounds_per_request"] == 3.0  # 390 rounds over 130 requests
    assert ablation.module_cpu(tmp_path)["module_cpu_of_worker_pct"] == 20.0  # 2 s of 10 s


def test_a_point_without_module_counters_reads_as_missing(tmp_path: Path) -> None:
    (tmp_path / "server-status.json").write_text(json.dumps({"before": {"total": {}}, "after": {"total": {}}}))
    assert all(math.isnan(v) for v in ablation.module_counts(tmp_path).values())
    assert math.isnan(ablation.module_cpu(tmp_path)["module_cpu_of_worker_pct"])
    assert all(math.isnan(v) for v in ablation.module_counts(tmp_path / "absent").values())
