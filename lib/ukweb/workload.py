"""SPECweb99 workload model: file-set size, access distribution and request mixes.

Everything here follows `shared/spec/specweb99.md` (cited as §N). The random generator and
the Zipf table are the SPEC ones (§2) because the C load generator uses the same generator and
its tests compare their draws against these.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# --- §1: file set -------------------------------------------------------------------------

USER_LINE_SPEED = 400_000  # bit/s per simultaneous connection (§5.2)
USER_SPEED_LIMIT = 320_000  # bit/s a conforming connection must beat (§5.3)
BITS_PER_REPLY = 122_000  # the manager's average reply size in bits (§1.2)
CLASS_BASE = (1024, 10240, 102400, 1024000)  # §1.3
CLASSES = len(CLASS_BASE)
FILES_PER_CLASS = 9  # class%d_0 .. class%d_8
FILES_PER_DIR = CLASSES * FILES_PER_CLASS

# --- §2: access distribution --------------------------------------------------------------

CLASS_SHARES = (0.35, 0.50, 0.14, 0.01)
FILE_ORDER = (4, 3, 5, 2, 6, 1, 7, 8, 0)  # Zipf rank -> file index (rank 0 is class?_4)
ZIPF_EXPONENT = 1.0
DECK_SIZE = 1000  # S11's MAX_DECK

# --- §3 and the paper's workloads ---------------------------------------------------------

REQUEST_TYPES = ("static", "dyn_get", "cad_get", "post", "cgi_get")
DYNAMIC_TYPES = REQUEST_TYPES[1:]
# The paper's split of dynamic requests: SPECweb99's default without CGI (paper §5, Fig. 3).
PAPER_DYNAMIC_SPLIT = {"dyn_get": 0.42, "cad_get": 0.42, "post": 0.16}
WORKLOADS = ("static", "dynamic", "mix30", "mix50", "mix80")  # figure order (Figs. 2-6)


def _require_int(name: str, value: object, minimum: int) -> int:
    """A clear ValueError for anything that is not an int >= minimum (bools excluded)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def ndirs(connections: int) -> int:
    """Directories in the file set for a load of `connections` (§1.2, the manager's formula)."""
    _require_int("connections", connections, 1)
    return int(25 + ((USER_LINE_SPEED / BITS_PER_REPLY) * connections) / 5.0)


def file_size(cls: int, num: int) -> int:
    """Size in bytes of file classC_N, truncating as both SPEC-derived ports do (§1.3) [I]."""
    if not 0 <= _require_int("class", cls, 0) < CLASSES:
        raise ValueError(f"class must be 0..{CLASSES - 1}, got {cls}")
    if not 0 <= _require_int("file number", num, 0) < FILES_PER_CLASS:
        raise ValueError(f"file number must be 0..{FILES_PER_CLASS - 1}, got {num}")
    return CLASS_BASE[cls] * (num + 1) // 10


DIR_BYTES = sum(file_size(c, n) for c in range(CLASSES) for n in range(FILES_PER_CLASS))


def fileset_bytes(dirs: int) -> int:
    """Total bytes of a file set of `dirs` directories (5,119,484 bytes each)."""
    return _require_int("dirs", dirs, 1) * DIR_BYTES


def fileset_gib(connections: int) -> float:
    """File-set size for a load, in the paper's 'GB' (GiB: the manager's 4.88 MiB per dir)."""
    return fileset_bytes(ndirs(connections)) / 2**30


def file_path(dir_: int, cls: int, num: int) -> str:
    """The relative name `file_set/dirNNNNN/classC_F` used in headers and URLs (§1.1)."""
    file_size(cls, num)  # validates cls and num
    if not 0 <= _require_int("dir", dir_, 0) <= 99999:
        raise ValueError(f"dir must be 0..99999, got {dir_}")
    return f"file_set/dir{dir_:05d}/class{cls}_{num}"


# --- §2: the SPEC random generator and Zipf -----------------------------------------------

PM_MODULUS = 2_147_483_647  # 2^31 - 1
PM_MULTIPLIER = 16807
PM_Q = 127773  # PM_MODULUS // PM_MULTIPLIER (Schrage)
PM_R = 2836  # PM_MODULUS % PM_MULTIPLIER


class ParkMiller:
    """SPEC's `laddis_c_rnd.c` minimal-standard generator (Park & Miller 1988, Schrage's method).

    `random()` returns val / (2^31 - 1) as a C double [I: the C# port casts to float first;
    loadgen and this class both use double so their Zipf draws agree exactly].
    """

    def __init__(self, seed: int) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 < seed < PM_MODULUS:
            raise ValueError(f"seed must be an integer in 1..{PM_MODULUS - 1}, got {seed!r}")
        self.val = seed

    def nrandom(self) -> int:
        """Advance and return the state, an integer in 1..2^31-2 (`Spec_nrandom`)."""
        hi, lo = divmod(self.val, PM_Q)
        test = PM_MULTIPLIER * lo - PM_R * hi
        self.val = test if test > 0 else test + PM_MODULUS
        return self.val

    def random(self) -> float:
        """Advance and return a float in (0, 1) (`Spec_random`)."""
        return self.nrandom() / PM_MODULUS


def zipf_table(n: int, z: float = ZIPF_EXPONENT) -> list[float]:
    """SPEC's `spec_zipf_setup` table: table[i] = 1 - cum(i)/sum, table[0] = 1, table[n] = 0."""
    _require_int("zipf size", n, 1)
    weights = [(1.0 / i) ** z for i in range(1, n + 1)]
    total = math.fsum(weights)  # exact order does not matter for n <= 100000 at double precision
    table, cum = [1.0], 0.0
    for w in weights[:-1]:
        cum += w
        table.append(1.0 - cum / total)
    table.append(0.0)
    return table


def zipf_pick(table: list[float], r: float) -> int:
    """SPEC's `spec_zipf` for a given uniform r: the first i with r >= table[i], minus one."""
    i = 0
    while r < table[i]:
        i += 1
    return i - 1


def zipf_probabilities(n: int, z: float = ZIPF_EXPONENT) -> list[float]:
    """P(rank k) = (1/(k+1))^z / sum: what `zipf_pick` yields for uniform r."""
    weights = [(1.0 / i) ** z for i in range(1, n + 1)]
    total = math.fsum(weights)
    return [w / total for w in weights]


def file_probabilities() -> list[float]:
    """P(file index n) within a class, after mapping Zipf ranks through FILE_ORDER (§2)."""
    by_rank = zipf_probabilities(FILES_PER_CLASS)
    probs = [0.0] * FILES_PER_CLASS
    for rank, num in enumerate(FILE_ORDER):
        probs[num] = by_rank[rank]
    return probs


@dataclass(frozen=True)
class DeckEntry:
    """One request descriptor of the client's deck (§2): what to fetch and how."""

    cls: int
    num: int
    dir: int
    type: str


class Deck:
    """The SPECweb99 client's deck of request descriptors (§2, after S11 `GenerateFileSpecs`).

    One ParkMiller state feeds the file Zipf, the directory Zipf, the type draw and the shuffle,
    in this order: per entry (classes in exact counts) file rank then directory; then [I] one
    `random()` per entry, in deck order, picks the request type from the mix's cumulative
    shares in REQUEST_TYPES order (independent of class, §2's recommendation); then the
    Fisher-Yates shuffle with `nrandom() % (N - i)`.
    """

    def __init__(self, dirs: int, mix_: Mix, seed: int = 1, size: int = DECK_SIZE) -> None:
        self.dirs = _require_int("dirs", dirs, 1)
        self.size = _require_int("deck size", size, 1)
        self.mix = mix_
        self.rng = ParkMiller(seed)
        self._dir_table = zipf_table(dirs)
        self._file_table = zipf_table(FILES_PER_CLASS)

    def _type_for(self, r: float) -> str:
        cum = 0.0
        for name in REQUEST_TYPES:
            cum += self.mix.shares[name]
            if r < cum:
                return name
        # r just below 1 can exceed a float sum of shares: the last type in the mix takes it
        return [t for t in REQUEST_TYPES if self.mix.shares[t] > 0][-1]

    def deal(self) -> list[DeckEntry]:
        """Generate and shuffle one deck of `size` entries."""
        drawn: list[tuple[int, int, int]] = []
        total = 0.0
        for cls, share in enumerate(CLASS_SHARES):
            total += share
            while len(drawn) < total * self.size:
                num = FILE_ORDER[zipf_pick(self._file_table, self.rng.random())]
                drawn.append((cls, num, zipf_pick(self._dir_table, self.rng.random())))
        deck = [DeckEntry(c, n, d, self._type_for(self.rng.random())) for c, n, d in drawn]
        count = len(deck)
        for i in range(count):
            pos = self.rng.nrandom() % (count - i)
            deck[count - i - 1], deck[pos] = deck[pos], deck[count - i - 1]
        return deck


# --- §3: request mixes --------------------------------------------------------------------


@dataclass(frozen=True)
class Mix:
    """A request-type mix: the share of each of REQUEST_TYPES, summing to 1."""

    name: str
    shares: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.shares) - set(REQUEST_TYPES)
        if unknown:
            raise ValueError(f"mix {self.name!r}: unknown request types {sorted(unknown)}")
        full = {t: float(self.shares.get(t, 0.0)) for t in REQUEST_TYPES}
        if any(s < 0 for s in full.values()) or not math.isclose(sum(full.values()), 1.0):
            raise ValueError(f"mix {self.name!r}: shares must be >= 0 and sum to 1, got {full}")
        object.__setattr__(self, "shares", full)

    @property
    def dynamic(self) -> float:
        """Share of dynamic requests (everything but static)."""
        return 1.0 - self.shares["static"]

    def shares_arg(self) -> str:
        """The loadgen `--mix-shares S,D,C,P,G` value."""
        return ",".join(f"{self.shares[t]:.6g}" for t in REQUEST_TYPES)


def paper_mix(name: str, dynamic: float) -> Mix:
    """The paper's workloads: `dynamic` share of requests split 42/42/16, the rest static."""
    if not 0.0 <= dynamic <= 1.0:
        raise ValueError(f"dynamic share must be in [0, 1], got {dynamic}")
    shares = {t: dynamic * s for t, s in PAPER_DYNAMIC_SPLIT.items()}
    return Mix(name, {"static": 1.0 - dynamic, **shares})


# SPECweb99's default (§3): 30 % dynamic, of which 16 % POST, 42 % CAD, 0.5 % CGI, rest GET.
SPECWEB99 = Mix(
    "specweb99",
    {"static": 0.70, "dyn_get": 0.1245, "cad_get": 0.126, "post": 0.048, "cgi_get": 0.0015},
)
_DYNAMIC_SHARE = {"static": 0.0, "dynamic": 1.0, "mix30": 0.3, "mix50": 0.5, "mix80": 0.8}
MIXES: dict[str, Mix] = {
    "specweb99": SPECWEB99,
    **{name: paper_mix(name, _DYNAMIC_SHARE[name]) for name in WORKLOADS},
}


def mix(name: str) -> Mix:
    """The named mix; ValueError naming the known mixes."""
    try:
        return MIXES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown mix {name!r}; known mixes: {', '.join(MIXES)}") from None


def dynamic_share(workload: str) -> float:
    """Share of dynamic requests of a workload (or any named mix): 0, 1, .3, .5, .8."""
    if isinstance(workload, str) and workload in _DYNAMIC_SHARE:
        return _DYNAMIC_SHARE[workload]
    return mix(workload).dynamic
