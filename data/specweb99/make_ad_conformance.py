"""Write the custom-ad conformance table (ad_conformance.csv) and its hand-made ad tables.

    python3 data/specweb99/make_ad_conformance.py [OUT_DIR]   # default: this directory

Every expected answer below is written by hand from the spec (shared/spec/specweb99.md §4.5,
§4.6), never computed by an implementation: this script only lays the cases out. The C core
(servers/common/sw99core.c, through build/sw99_conformance) and the Python oracle
(ukweb.specweb99) are both tested against the CSV (tests/test_ad_conformance.py).

Rows: case, table, user_id, user_dem, last_ad, now -> ad, weight, expired.
- table `file:NAME` is tables/NAME.ads, a hand-made Custom.Ads (360 records "%5d %8X %8X %3d
  %10d\\n": id, demographics, weightings, minmatch, expires) written here from a default ad and
  a few overrides; `reset:MAXTHREAD:EXP1:EXP2:PTTIME:AT` is the table cadgen99 generates at
  time AT for those Reset parameters (§4.6).
- user_dem is the user's demographics (hex); with a user_id (generated tables only) it is
  upfgen99's record user_id - 10000, derived by hand below, and checked too.
- now is the request's time: Expired = now > the ad's expires (one rule, §4.5 step 5).

The no-match edge (§4.5: "For ad = L+1, L+2, ..., wrapping 359->0 and stopping when back at L",
and "If nothing matches, both implementations return the ad where the loop stopped (L) and the
last computed weight") is read as S1's do-while: L is weighed last. So with no match the answer
is (L, L's own weight), and an L that is the only matching ad is chosen with its weight.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

ADS = 360
NOW = 1_700_000_000
PAST, FUTURE = 1_000_000_000, 2_000_000_000
EVERYONE = 0x3FFFFFFF  # a demographics word with every field's bits set

# Weights by field: gender nibble at bit 16, age 12, region 8, interest1 4, interest2 0.
# Fields: gender 0x30000000, age 0x0F000000, region 0x00F00000, interest1 0x000FFC00,
# interest2 0x000003FF.  An ad's weight for a user: the nibble of every field they share.

# name -> (default ad, {id: ad}); an ad is (demographics, weightings, minmatch, expires).
TABLES: dict[str, tuple[tuple[int, int, int, int], dict[int, tuple[int, int, int, int]]]] = {
    # Nothing can match (minmatch 75 > 15 * 5): every search ends on last_ad. Neighbours carry
    # different weights so "L weighed last" differs from "the weight of L-1".
    "nomatch": ((EVERYONE, 0x11111, 75, PAST), {
        0: (EVERYONE, 0x55555, 75, FUTURE),
        4: (EVERYONE, 0x22222, 75, PAST),
        5: (EVERYONE, 0x33333, 75, PAST),
        358: (EVERYONE, 0x66666, 75, PAST),
        359: (EVERYONE, 0x44444, 75, PAST),
    }),
    # Only ad 200 can match (minmatch 1); it expires exactly at NOW.
    "lastonly": ((EVERYONE, 0x11111, 75, FUTURE), {
        200: (EVERYONE, 0x3FFFF, 1, NOW),
    }),
    # Thresholds (w >= minmatch) and one field at a time.
    "threshold": ((EVERYONE, 0x00000, 75, FUTURE), {
        10: (EVERYONE, 0x12345, 15, FUTURE),    # 1+2+3+4+5 = 15: matches exactly at 15
        11: (EVERYONE, 0x12345, 16, FUTURE),    # one short: never
        30: (0x10100000, 0xFFFFF, 1, FUTURE),   # male, one region bit
        40: (EVERYONE, 0x12345, 1, 1_600_000_000),  # each field its own weight; expired
    }),
}

# upfgen99 users, by hand (§4.6): k = (j * 10000) % 12301 (0 -> 12300), c4/c3/c2 its nibbles.
# j=0: k=12300=0x300C -> 0x10000000|0x08000000|0x00800000|0x20000|0x80 = 0x18820080
# j=1: k=10000=0x2710 -> 0x10000000|0x08000000|0x00100000|0x40000|0x200 = 0x18140200
# j=2: k=7699=0x1E13  -> 0x20000000|0x01000000|0x00400000|0x8000|0x40 = 0x21408040
# j=3: k=5398=0x1516  -> 0x10000000|0x02000000|0x00100000|0x1000|0x8 = 0x12101008
USERS = {10000: 0x18820080, 10001: 0x18140200, 10002: 0x21408040, 10003: 0x12101008}

# Generated tables: the always-match ads are the ids = maxthread mod 24 (demographics | 0x3FF,
# weightings 0x3FFFF, minmatch 1); their weight is 15 (interest2) + 15 per shared age, region,
# interest1 + 3 for a shared gender.  The ads by hand (cadgen99, k = (id * 10000) % 12301):
# ad 8:   k=6194=0x1832 -> male, age 0x02, region 0x20, interest1 0x4000
# ad 32:  k=174=0xAE    -> male, age 0x02, region 0x20, interest1 0x8000
# ad 104: k=6716=0x1A3C -> male, age 0x08, region 0x20, interest1 0x4000
# ad 0:   k=12300       -> male, age 0x08, region 0x80, interest1 0x20000
G656 = f"reset:656:20:120:300:{NOW}"  # always-match 8, 32, ...; expired 20..43, 120..143
G0 = f"reset:0:350:100:300:{NOW}"     # always-match 0, 24, ...; expired 350..13, 100..123

# (case, table, user_id or None, user_dem, last_ad, now, ad, weight, expired)
CASES = [
    # --- the no-match edge: (L, L's own weight) ---
    ("nomatch L=5 weighs 5 itself (not 4)", "file:nomatch", None, EVERYONE, 5, NOW, 5, 15, 1),
    ("nomatch L=4", "file:nomatch", None, EVERYONE, 4, NOW, 4, 10, 1),
    ("nomatch L=0 weighs 0 (not 359)", "file:nomatch", None, EVERYONE, 0, NOW, 0, 25, 0),
    ("nomatch L=359 weighs 359 (not 358)", "file:nomatch", None, EVERYONE, 359, NOW, 359, 20, 1),
    ("nomatch L=100 default ad", "file:nomatch", None, EVERYONE, 100, NOW, 100, 5, 1),
    ("nomatch gender-only user L=5", "file:nomatch", None, 0x10000000, 5, NOW, 5, 3, 1),
    ("nomatch gender-only user L=0", "file:nomatch", None, 0x20000000, 0, NOW, 0, 5, 0),
    ("nomatch user with no fields", "file:nomatch", None, 0x00000000, 7, NOW, 7, 0, 1),
    # --- one matching ad, reached from before, after the wrap, and as L itself ---
    ("lastonly from 199", "file:lastonly", None, EVERYONE, 199, NOW, 200, 63, 0),
    ("lastonly from 201 wraps", "file:lastonly", None, EVERYONE, 201, NOW, 200, 63, 0),
    ("lastonly L=200 matches itself last", "file:lastonly", None, EVERYONE, 200, NOW, 200, 63, 0),
    ("lastonly gender-only weight 3 >= 1", "file:lastonly", None, 0x20000000, 17, NOW, 200, 3, 0),
    ("lastonly expires at now+1", "file:lastonly", None, EVERYONE, 199, NOW + 1, 200, 63, 1),
    ("lastonly no-field user: no match", "file:lastonly", None, 0x00000000, 17, NOW, 17, 0, 0),
    ("lastonly no-field user L=200", "file:lastonly", None, 0x00000000, 200, NOW + 1, 200, 0, 1),
    # --- thresholds and fields ---
    ("threshold w == minmatch matches", "file:threshold", None, EVERYONE, 9, NOW, 10, 15, 0),
    ("threshold minmatch 16 skipped", "file:threshold", None, EVERYONE, 10, NOW, 30, 30, 0),
    ("threshold wraps to 10", "file:threshold", None, EVERYONE, 41, NOW, 10, 15, 0),
    ("threshold interests only: 10 short; 40", "file:threshold", None, 0x000FFFFF, 9, NOW, 40, 9, 1),
    ("threshold no-field user: no match", "file:threshold", None, 0x00000000, 9, NOW, 9, 0, 0),
    ("field gender", "file:threshold", None, 0x10000000, 39, NOW, 40, 1, 1),
    ("field age", "file:threshold", None, 0x01000000, 39, NOW, 40, 2, 1),
    ("field region", "file:threshold", None, 0x00100000, 35, NOW, 40, 3, 1),
    ("field interest1", "file:threshold", None, 0x00000400, 39, NOW, 40, 4, 1),
    ("field interest2", "file:threshold", None, 0x00000001, 39, NOW, 40, 5, 1),
    ("field region matches ad 30", "file:threshold", None, 0x20100000, 29, NOW, 30, 15, 0),
    ("field other gender misses ad 30", "file:threshold", None, 0x20000000, 29, NOW, 40, 1, 1),
    # --- generated tables (§4.6): the next always-match ad, hand-derived weights ---
    ("reset 656: user 3 after 30", G656, 10003, 0x12101008, 30, NOW, 32, 33, 1),
    ("reset 656: user 0 wraps to 8", G656, 10000, 0x18820080, 359, NOW, 8, 18, 0),
    ("reset 656: user 1 after 100", G656, 10001, 0x18140200, 100, NOW, 104, 33, 0),
    ("reset 656: at 2*pttime not expired", G656, 10001, 0x18140200, 100, NOW + 600, 104, 33, 0),
    ("reset 656: after 2*pttime expired", G656, 10001, 0x18140200, 100, NOW + 601, 104, 33, 1),
    ("reset 0: user 2 wraps to 0", G0, 10002, 0x21408040, 350, NOW, 0, 15, 1),
]

COLUMNS = ["case", "table", "user_id", "user_dem", "last_ad", "now", "ad", "weight", "expired"]


def table_bytes(default: tuple[int, int, int, int], overrides: dict) -> bytes:
    """The Custom.Ads bytes of a hand-made table (cadgen99's record format)."""
    ads = [overrides.get(j, default) for j in range(ADS)]
    return "".join("%5d %8X %8X %3d %10d\n" % (j, *ad) for j, ad in enumerate(ads)).encode()  # noqa: UP031


def write(out: Path) -> None:
    (out / "tables").mkdir(parents=True, exist_ok=True)
    for name, (default, overrides) in TABLES.items():
        (out / "tables" / f"{name}.ads").write_bytes(table_bytes(default, overrides))
    with open(out / "ad_conformance.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(COLUMNS)
        for case, table, uid, dem, last, now, ad, weight, expired in CASES:
            assert "," not in case and '"' not in case, case  # plain CSV for the C reader
            if uid is not None:
                assert USERS[uid] == dem, case
            w.writerow([case, table, "" if uid is None else uid, f"0x{dem:08X}", last, now,
                        ad, weight, expired])


if __name__ == "__main__":
    write(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent)
