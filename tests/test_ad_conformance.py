"""The custom-ad rule (spec §4.5, §4.6) in C and in Python against one hand-written table.

data/specweb99/ad_conformance.csv (written by data/specweb99/make_ad_conformance.py from
hand-written cases) is answered by the C core the servers and loadgen link
(servers/common/sw99core.c, through build/sw99_conformance) and by the Python oracle
(ukweb.specweb99), which stays a separate implementation.
"""

from __future__ import annotations

import csv
import importlib.util
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ukweb import paths
from ukweb import specweb99 as sw

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "specweb99"
CSV = DATA / "ad_conformance.csv"


def _rows() -> list[dict[str, str]]:
    with open(CSV, newline="") as f:
        return list(csv.DictReader(f))


def _tool() -> Path:
    try:
        return paths.binary("sw99_conformance")
    except FileNotFoundError as exc:
        pytest.fail(f"sw99_conformance is not built (make build): {exc}")


def test_table_is_what_the_script_writes(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("make_ad_conformance",
                                                  DATA / "make_ad_conformance.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.write(tmp_path)
    assert (tmp_path / CSV.name).read_bytes() == CSV.read_bytes()
    for table in (tmp_path / "tables").iterdir():
        assert table.read_bytes() == (DATA / "tables" / table.name).read_bytes(), table.name


def test_table_reaches_the_no_match_edge() -> None:
    rows = _rows()
    edge = [r for r in rows if r["table"] == "file:nomatch"]
    assert len(edge) >= 5 and all(r["ad"] == r["last_ad"] for r in edge)
    # the edges of the wrap (L = 0 and L = 359) and an L that is the only match
    assert {"0", "359"} <= {r["last_ad"] for r in edge}
    assert any(r["table"] == "file:lastonly" and r["ad"] == r["last_ad"] == "200" for r in rows)
    assert {r["expired"] for r in rows} == {"0", "1"}


def _ads(table: str) -> list[sw.Ad]:
    if table.startswith("file:"):
        return sw.parse_custom_ads((DATA / "tables" / f"{table[5:]}.ads").read_bytes())
    maxthread, exp1, exp2, pttime, at = (int(x) for x in table.split(":")[1:])
    return sw.ad_table(pttime, maxthread, exp1, exp2, at)


@pytest.mark.parametrize("row", _rows(), ids=lambda r: r["case"])
def test_python_oracle_answers_the_table(row: dict[str, str]) -> None:
    dem, last, now = int(row["user_dem"], 16), int(row["last_ad"]), int(row["now"])
    want = (int(row["ad"]), int(row["weight"]), int(row["expired"]))
    ads = _ads(row["table"])
    ad, weight = sw.find_ad(dem, last, ads)
    assert (ad, weight, sw.ad_expired(ads[ad], now)) == want
    if row["user_id"]:  # a generated table: the whole prediction, users and Reset included
        maxthread, exp1, exp2, pttime, at = (int(x) for x in row["table"].split(":")[1:])
        reset = sw.ResetParams(maxload=20, pttime=pttime, maxthread=maxthread, exp1=exp1,
                               exp2=exp2)
        user = int(row["user_id"])
        assert sw.user_demographics(20, maxthread)[user - sw.USER_ID_BASE] == dem
        assert sw.predict_ad(user, last, reset, now, reset_at=at) == want


def test_c_core_answers_the_table() -> None:
    proc = subprocess.run([str(_tool()), str(CSV)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == f"{len(_rows())} rows, 0 mismatches"


def test_c_check_fails_on_a_wrong_row(tmp_path: Path) -> None:
    shutil.copytree(DATA / "tables", tmp_path / "tables")
    lines = CSV.read_text().splitlines(keepends=True)
    # the old Python answer for the no-match edge: last_ad 5 with the weight of ad 4
    assert lines[1].startswith("nomatch L=5") and lines[1].endswith(",5,15,1\n")
    lines[1] = lines[1][: -len(",5,15,1\n")] + ",5,10,1\n"
    (tmp_path / CSV.name).write_text("".join(lines))
    proc = subprocess.run([str(_tool()), str(tmp_path / CSV.name)], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 1
    assert "nomatch L=5" in proc.stdout and "1 mismatches" in proc.stdout


def test_one_ad_search_in_c() -> None:
    """The ad search and its weights are defined once in C: servers/common/sw99core.c."""
    sources = [p for d in ("servers", "loadgen", "emul") for p in (ROOT / d).rglob("*.[ch]")]
    definition = re.compile(r"^\w[^;{}\n]*\b(\w*find_ad\w*)\s*\([^;{}]*\)\s*\{", re.M)
    found = [(p.relative_to(ROOT).as_posix(), m.group(1))
             for p in sources for m in definition.finditer(p.read_text(errors="replace"))]
    assert found == [("servers/common/sw99core.c", "sw99_find_ad")]
    weighers = {p.relative_to(ROOT).as_posix() for p in sources
                if "0x30000000" in p.read_text(errors="replace")}  # the gender field's mask
    assert weighers == {"servers/common/sw99core.c"}
