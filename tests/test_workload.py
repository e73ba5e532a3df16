"""ukweb.workload against the SPECweb99 spec (§1-§3) and the paper's file-set sizes (F1-F3)."""

from __future__ import annotations

import collections
import csv

import pytest
from scipy import stats

from ukweb import paths, workload
from ukweb.workload import Deck, ParkMiller, zipf_pick, zipf_table


@pytest.mark.parametrize(
    "conns,dirs", [(10, 31), (50, 57), (100, 90), (200, 156), (500, 352), (1000, 680), (2000, 1336)]
)
def test_ndirs_matches_spec_table(conns: int, dirs: int) -> None:
    assert workload.ndirs(conns) == dirs


def test_file_sizes_truncate_as_in_spec_table() -> None:
    class0 = [workload.file_size(0, n) for n in range(9)]
    assert class0 == [102, 204, 307, 409, 512, 614, 716, 819, 921]
    sums = [sum(workload.file_size(c, n) for n in range(9)) for c in range(4)]
    assert sums == [4604, 46080, 460800, 4608000]
    assert workload.DIR_BYTES == 5_119_484
    assert workload.DIR_BYTES / 2**20 == pytest.approx(4.88, abs=0.005)  # manager's constant


def test_fileset_bytes_at_500_connections_is_1_80_gb() -> None:
    assert workload.fileset_bytes(workload.ndirs(500)) / 1e9 == pytest.approx(1.80, abs=0.005)


def _paper_fileset_claims() -> list[dict]:
    with open(paths.PAPER / "claims.csv", newline="") as f:
        return [row for row in csv.DictReader(f) if row["metric"] == "fileset_gb"]


def test_claims_f1_f3_file_set_sizes_agree_within_0_1() -> None:
    claims = _paper_fileset_claims()
    assert [c["id"] for c in claims] == ["F1", "F2", "F3"]
    for claim in claims:
        gib = workload.fileset_gib(int(claim["at_connections"]))
        assert abs(gib - float(claim["paper_value"])) <= 0.1, claim["id"]


@pytest.mark.parametrize("bad", [0, -1, 1.5, "500", True, None])
def test_ndirs_rejects_bad_connections(bad: object) -> None:
    with pytest.raises(ValueError, match="connections"):
        workload.ndirs(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("cls,num", [(4, 0), (-1, 0), (0, 9), (0, -1)])
def test_file_size_rejects_out_of_range(cls: int, num: int) -> None:
    with pytest.raises(ValueError):
        workload.file_size(cls, num)


# --- the SPEC random generator -------------------------------------------------------------


def test_park_miller_known_values() -> None:
    rng = ParkMiller(1)
    assert [rng.nrandom() for _ in range(3)] == [16807, 282475249, 1622650073]
    rng = ParkMiller(1)
    for _ in range(9999):
        rng.nrandom()
    assert rng.nrandom() == 1_043_618_065  # Park & Miller's published check value


def test_park_miller_schrage_equals_direct_multiplication() -> None:
    rng = ParkMiller(2331 + 256 * 3)  # the manager's SRANDOM seed for client 3
    val = rng.val
    for _ in range(1000):
        val = 16807 * val % (2**31 - 1)
        assert rng.nrandom() == val


@pytest.mark.parametrize("bad", [0, 2**31 - 1, -5, 1.0])
def test_park_miller_rejects_bad_seed(bad: object) -> None:
    with pytest.raises(ValueError, match="seed"):
        ParkMiller(bad)  # type: ignore[arg-type]


def test_zipf_table_shape_and_pick() -> None:
    table = zipf_table(9)
    assert table[0] == 1.0 and table[9] == 0.0 and len(table) == 10
    assert all(a > b for a, b in zip(table, table[1:], strict=False))
    assert zipf_pick(table, 0.999999) == 0  # r near 1 is the most popular rank
    assert zipf_pick(table, 1e-9) == 8
    assert zipf_pick(table, table[1]) == 0 and zipf_pick(table, table[1] - 1e-12) == 1


def test_file_probabilities_match_spec() -> None:
    # §2's table prints files 0 and 8 transposed; FILE_ORDER maps rank 7 -> file 8 and
    # rank 8 -> file 0, which is also what its 14,727-byte mean body size requires.
    expected = [0.0393, 0.0589, 0.0884, 0.1767, 0.3535, 0.1178, 0.0707, 0.0505, 0.0442]
    assert workload.file_probabilities() == pytest.approx(expected, abs=5e-5)
    mean = sum(
        share * sum(p * workload.file_size(c, n) for n, p in enumerate(workload.file_probabilities()))
        for c, share in enumerate(workload.CLASS_SHARES)
    )
    assert mean == pytest.approx(14727, abs=1)


def _chi2_pvalue(observed: collections.Counter, probs: list[float]) -> float:
    n = sum(observed.values())
    obs = [observed.get(i, 0) for i in range(len(probs))]
    return stats.chisquare(obs, [p * n for p in probs]).pvalue


def test_zipf_draws_follow_the_distribution() -> None:
    rng = ParkMiller(2)
    for n in (9, 352):
        table = zipf_table(n)
        draws = collections.Counter(zipf_pick(table, rng.random()) for _ in range(100_000))
        assert _chi2_pvalue(draws, workload.zipf_probabilities(n)) > 1e-3
        assert draws[0] == max(draws.values())  # dir00000 / rank 0 is the most popular


def test_deck_has_exact_class_counts_and_zipf_files() -> None:
    deck = Deck(352, workload.mix("static"), seed=2)
    files: collections.Counter = collections.Counter()
    for _ in range(40):
        cards = deck.deal()
        assert collections.Counter(c.cls for c in cards) == {0: 350, 1: 500, 2: 140, 3: 10}
        assert {c.type for c in cards} == {"static"}
        assert all(0 <= c.dir < 352 for c in cards)
        files.update(c.num for c in cards)
    assert _chi2_pvalue(files, workload.file_probabilities()) > 1e-3


def test_deck_is_deterministic_and_shuffled() -> None:
    a = Deck(90, workload.mix("specweb99"), seed=7).deal()
    b = Deck(90, workload.mix("specweb99"), seed=7).deal()
    c = Deck(90, workload.mix("specweb99"), seed=8).deal()
    assert a == b and a != c
    assert [e.cls for e in a] != sorted(e.cls for e in a)


def test_deck_request_types_follow_the_mix() -> None:
    mix = workload.mix("specweb99")
    deck = Deck(100, mix, seed=11)
    types = collections.Counter(e.type for _ in range(50) for e in deck.deal())
    n = sum(types.values())
    for name, share in mix.shares.items():
        assert types[name] / n == pytest.approx(share, abs=4 * (share / n) ** 0.5 + 1e-9)


# --- mixes -------------------------------------------------------------------------------


def test_specweb99_mix_is_the_spec_default() -> None:
    shares = workload.mix("specweb99").shares
    assert shares == pytest.approx(
        {"static": 0.70, "dyn_get": 0.1245, "cad_get": 0.126, "post": 0.048, "cgi_get": 0.0015}
    )


@pytest.mark.parametrize("name,dyn", [("static", 0), ("dynamic", 1), ("mix30", 0.3),
                                      ("mix50", 0.5), ("mix80", 0.8)])
def test_paper_workloads_split_dynamic_42_42_16_without_cgi(name: str, dyn: float) -> None:
    m = workload.mix(name)
    assert workload.dynamic_share(name) == dyn
    assert m.shares["static"] == pytest.approx(1 - dyn)
    assert m.shares["dyn_get"] == pytest.approx(0.42 * dyn)
    assert m.shares["cad_get"] == pytest.approx(0.42 * dyn)
    assert m.shares["post"] == pytest.approx(0.16 * dyn)
    assert m.shares["cgi_get"] == 0
    assert sum(m.shares.values()) == pytest.approx(1)


def test_workloads_are_in_figure_order() -> None:
    assert workload.WORKLOADS == ("static", "dynamic", "mix30", "mix50", "mix80")
    assert set(workload.MIXES) == {*workload.WORKLOADS, "specweb99"}


def test_unknown_mix_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="mix30.*mix80|known mixes: specweb99"):
        workload.mix("mix40")


@pytest.mark.parametrize("shares", [{"static": 0.5}, {"static": 1.2, "post": -0.2},
                                    {"static": 0.5, "head": 0.5}])
def test_mix_rejects_bad_shares(shares: dict) -> None:
    with pytest.raises(ValueError):
        workload.Mix("bad", shares)


def test_mix_shares_arg_for_loadgen() -> None:
    assert workload.mix("mix50").shares_arg() == "0.5,0.21,0.21,0.08,0"
