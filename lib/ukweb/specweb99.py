"""The SPECweb99 dynamic-content semantics in Python: the oracle (spec §4 and §6.3).

The C servers' module and the load generator are tested against these functions byte for
byte, so every value a server would take from its environment (SERVER_SOFTWARE, REMOTE_ADDR,
SCRIPT_NAME, the clock, the process id) is an explicit argument here.
"""

from __future__ import annotations

import dataclasses
import fcntl
import functools
import http
import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import BinaryIO

from ukweb.workload import CLASSES, FILES_PER_CLASS, REQUEST_TYPES, file_path, file_size

log = logging.getLogger(__name__)

# --- §4.6: tables generated at Reset ------------------------------------------------------

MAX_ADS = 360
USER_ID_BASE = 10000
USER_RECORD = 15  # "%5d %8X\n"
AD_RECORD = 39  # "%5d %8X %8X %3d %10d\n"
MAX_CAD_WEIGHT = 75  # minmatch of ordinary ads: never reachable (§4.5)
ALWAYS_MATCH_WEIGHTS = 0x3FFFF
ONE_LEAP_YEAR = 31_622_400
DEFAULT_PTTIME = 1800
EXPIRED_RUN = 24  # ads per expired range (§4.6)
USER_INTEREST2 = (0x200, 0x100, 0x80, 0x40, 0x20, 0x10, 0x8, 0x4, 0x2, 0x1)
# cadgen99's literal port swaps indices 4 and 5 relative to upfgen99 (spec §9 item 10).
AD_INTEREST2 = (0x200, 0x100, 0x80, 0x40, 0x10, 0x20, 0x8, 0x4, 0x2, 0x1)

# --- §4.2 / §4.5 / §4.7: formats ----------------------------------------------------------

WRAPPER_TITLE = "SPECweb99 Dynamic GET & POST Test"
WRAPPER_TAIL = b"\n</pre>\n</body></html>\n"
CAD_TAG = b'<!WEB99CAD><IMG SRC="/file_set/dirNNNNN/classX_Y"><!/WEB99CAD>'
CAD_SEARCH = CAD_TAG[:34]  # '<!WEB99CAD><IMG SRC="/file_set/dir'
CAD_DIR_AT, CAD_CLASS_AT, CAD_FILE_AT = 34, 45, 47
POST_HEADER = 11  # "%10d\n"
POST_RECORD = 139
POST_RECORD_FMT = "%10d %10d %10d %5d %2d %2d %10d %-60.60s %10d %10d\n"
COMMAND_PREFIX = "command/"


class SpecError(ValueError):
    """A request or parameter that violates SPECweb99; `kind` is the error word of the logs."""

    def __init__(self, message: str, kind: str = "malformed", status: int = 400) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status


@dataclasses.dataclass(frozen=True)
class ResetParams:
    """The parameters of `command/Reset` (§4.8)."""

    maxload: int
    pttime: int
    maxthread: int
    exp1: int
    exp2: int
    urlroot: str = "/file_set/"

    def __post_init__(self) -> None:
        for name in ("maxload", "pttime", "maxthread", "exp1", "exp2"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise SpecError(f"Reset: {name} must be an integer >= 0, got {value!r}")
        if self.maxload < 1:
            raise SpecError("Reset: maxload must be >= 1")
        if not (self.exp1 < MAX_ADS and self.exp2 < MAX_ADS):
            raise SpecError(f"Reset: exp must be two ad ids in 0..{MAX_ADS - 1}")
        if not self.urlroot.endswith("/") or " " in self.urlroot:
            raise SpecError(f"Reset: urlroot must end with '/' and hold no spaces: {self.urlroot!r}")

    def query(self) -> str:
        """The query string of the Reset request."""
        return (
            f"command/Reset&maxload={self.maxload}&pttime={self.pttime}"
            f"&maxthread={self.maxthread}&exp={self.exp1},{self.exp2}&urlroot={self.urlroot}"
        )

    @classmethod
    def parse(cls, query: str) -> ResetParams:
        """Parse a Reset query (with or without the `command/Reset` prefix)."""
        m = re.fullmatch(
            r"(?:command/Reset)?&maxload=(\d+)&pttime=(\d+)&maxthread=(\d+)"
            r"&exp=(\d+),(\d+)&urlroot=(\S+)",
            query,
        )
        if not m:
            raise SpecError(f"Reset: malformed query {query!r}")
        nums = [int(g) for g in m.groups()[:5]]
        return cls(*nums, urlroot=m.group(6))

    @property
    def effective_pttime(self) -> int:
        """cadgen99 treats pttime 0 as 1800 s."""
        return self.pttime or DEFAULT_PTTIME

    @classmethod
    def for_run(
        cls, max_connections: int, run_seconds: int, now: float | None = None
    ) -> ResetParams:
        """Reset parameters the way the manager derives them (§4.8).

        maxthread [I]: the manager sends num_clients x per-client load in ops/s; with one
        client that is int(400000/122000 x connections), the load of the largest point.
        """
        if max_connections < 1 or run_seconds < 0:
            raise SpecError("for_run: need max_connections >= 1 and run_seconds >= 0")
        t = int(time.time() if now is None else now) % MAX_ADS
        t2 = t + 100
        exp1, exp2 = (t2 - MAX_ADS, t) if t2 > MAX_ADS - 1 else (t, t2)
        maxthread = int(400000 / 122000 * max_connections)
        return cls(max_connections, int(run_seconds), maxthread, exp1, exp2)


def _demographics(k: int, interest2: tuple[int, ...]) -> int:
    """The demographics bit set of upfgen99/cadgen99 for the mixed key k (§4.6)."""
    c4, c3, c2 = k & 0xF, (k >> 4) & 0xF, (k >> 8) & 0xF
    gender = 0x20000000 if k % 2 else 0x10000000
    age = (0x08000000, 0x04000000, 0x02000000, 0x01000000)[k % 4]
    region = (0x00800000, 0x00400000, 0x00200000, 0x00100000)[(c4 + c2) % 4]
    interest1 = 0x80000 >> ((c4 + c3) % 10)
    return gender | age | region | interest1 | interest2[c4 % 10]


def _key(j: int) -> int:
    k = (j * 10000) % 12301
    return k or 12300


def user_demographics(maxload: int, maxthread: int) -> list[int]:
    """Demographics of each user index, max(maxload, maxthread) users (§4.6)."""
    count = max(maxload, maxthread)
    return [_demographics(_key(j % MAX_ADS), USER_INTEREST2) for j in range(count)]


def user_personality(maxload: int, maxthread: int) -> bytes:
    """The bytes of User.Personality as upfgen99 writes them (§4.6)."""
    dems = user_demographics(maxload, maxthread)
    # the printf formats of the SPEC tools, kept verbatim
    return "".join("%5d %8X\n" % (j, d) for j, d in enumerate(dems)).encode()  # noqa: UP031


@dataclasses.dataclass(frozen=True)
class Ad:
    """One Custom.Ads record."""

    demographics: int
    weightings: int
    minmatch: int
    expires: int


def always_match_ads(maxthread: int) -> list[int]:
    """The ids of the ads that match every user: every 24th from maxthread mod 24 (§4.6)."""
    return list(range((maxthread + 24) % 24, MAX_ADS, 24))


def expired_ads(exp1: int, exp2: int) -> set[int]:
    """The 2 x 24 ad ids whose expiry lies a year in the past (§4.6), wrapping past 359."""
    return {(e + i) % MAX_ADS for e in (exp1, exp2) for i in range(EXPIRED_RUN)}


def ad_table(pttime: int, maxthread: int, exp1: int, exp2: int, now: int) -> list[Ad]:
    """The 360 ads of Custom.Ads generated at time `now` (§4.6)."""
    ts = int(now) + 2 * (pttime or DEFAULT_PTTIME)
    always, expired = set(always_match_ads(maxthread)), expired_ads(exp1, exp2)
    ads = []
    for j in range(MAX_ADS):
        k = _key(j)
        dem = _demographics(k, AD_INTEREST2)
        weights = (k * k) % 1048576 or 0x27104
        minmatch = MAX_CAD_WEIGHT
        if j in always:
            dem, weights, minmatch = dem | 0x3FF, ALWAYS_MATCH_WEIGHTS, 1
        expires = ts - ONE_LEAP_YEAR if j in expired else ts
        ads.append(Ad(dem, weights, minmatch, expires))
    return ads


def custom_ads(pttime: int, maxthread: int, exp1: int, exp2: int, now: int) -> bytes:
    """The bytes of Custom.Ads as cadgen99 writes them at time `now` (§4.6)."""
    ads = ad_table(pttime, maxthread, exp1, exp2, now)
    return "".join(
        "%5d %8X %8X %3d %10d\n"  # noqa: UP031 (cadgen99's printf format, verbatim)
        % (j, a.demographics, a.weightings, a.minmatch, a.expires)
        for j, a in enumerate(ads)
    ).encode()


def parse_user_personality(data: bytes) -> list[int]:
    """User.Personality back into demographics; SpecError on any malformed record."""
    if len(data) % USER_RECORD:
        raise SpecError(f"User.Personality: size {len(data)} is not a multiple of 15")
    dems = []
    for j, line in enumerate(data.decode("ascii").splitlines()):
        fields = line.split()
        if len(fields) != 2 or int(fields[0]) != j:
            raise SpecError(f"User.Personality: bad record {j}: {line!r}")
        dems.append(int(fields[1], 16))
    return dems


def parse_custom_ads(data: bytes) -> list[Ad]:
    """Custom.Ads back into Ad records; SpecError on any malformed record."""
    if len(data) != MAX_ADS * AD_RECORD:
        raise SpecError(f"Custom.Ads: {len(data)} bytes, expected {MAX_ADS * AD_RECORD}")
    ads = []
    for j, line in enumerate(data.decode("ascii").splitlines()):
        f = line.split()
        if len(f) != 5 or int(f[0]) != j:
            raise SpecError(f"Custom.Ads: bad record {j}: {line!r}")
        ads.append(Ad(int(f[1], 16), int(f[2], 16), int(f[3]), int(f[4])))
    return ads


# --- §4.5: the ad search ------------------------------------------------------------------


def ad_weight(user_dem: int, ad: Ad) -> int:
    """Weight of an ad for a user: the ad's nibble for each matching demographic field."""
    c, wt = user_dem & ad.demographics, ad.weightings
    w = 0
    for mask, shift in ((0x30000000, 16), (0x0F000000, 12), (0x00F00000, 8), (0x000FFC00, 4)):
        if c & mask:
            w += (wt >> shift) & 0xF
    if c & 0x000003FF:
        w += wt & 0xF
    return w


def find_ad(user_dem: int, last_ad: int, ads: list[Ad]) -> tuple[int, int]:
    """The first ad after `last_ad` whose weight reaches its minmatch (§4.5 step 4).

    The ads are weighed in the order L+1, ..., 359, 0, ..., L: "stopping when back at L" read
    as S1's do-while, so `last_ad` itself is weighed last. When nothing matches the answer is
    `last_ad` with its own weight (the last one computed). data/specweb99/ad_conformance.csv
    holds the cases, the C core (servers/common/sw99core.c) answers the same table.
    """
    if not 0 <= last_ad < MAX_ADS:
        raise SpecError(f"last_ad must be in 0..{MAX_ADS - 1}, got {last_ad}", kind="cookie")
    for ad in [*range(last_ad + 1, MAX_ADS), *range(0, last_ad + 1)]:
        w = ad_weight(user_dem, ads[ad])
        if w >= ads[ad].minmatch:
            return ad, w
    return last_ad, w  # nothing matched: the scan ended on last_ad, with its weight


def ad_expired(ad: Ad, now: float) -> int:
    """Expired (§4.5 step 5): 1 once `now` (whole seconds) is past the ad's expiry time.

    The one expiry rule: within 2 x pttime of the Reset it is 1 exactly for the two expired
    ranges; after that, for every ad.
    """
    return int(int(now) > ad.expires)


@functools.lru_cache(maxsize=16)
def _tables(reset: ResetParams, reset_at: int) -> tuple[tuple[int, ...], tuple[Ad, ...]]:
    users = user_demographics(reset.maxload, reset.maxthread)
    ads = ad_table(reset.pttime, reset.maxthread, reset.exp1, reset.exp2, reset_at)
    return tuple(users), tuple(ads)


def predict_ad(
    user_id: int, last_ad: int, reset: ResetParams, now: float, *, reset_at: float | None = None
) -> tuple[int, int, int]:
    """(Ad_id, Ad_weight, Expired) a correct server answers to a CAD GET at time `now`.

    `reset_at` is when the tables were generated; by default `now`, i.e. the request comes
    within 2 x pttime of the Reset, so Expired is 1 exactly for the two expired ranges.
    """
    users, ads = _tables(reset, int(now if reset_at is None else reset_at))
    idx = user_id - USER_ID_BASE
    if not 0 <= idx < len(users):
        raise SpecError(f"user_id {user_id} outside 10000..{9999 + len(users)}", kind="cookie")
    ad, w = find_ad(users[idx], last_ad, list(ads))
    return ad, w, ad_expired(ads[ad], now)


def ad_path(ad: int) -> bytes:
    """`dirNNNNN/classX_Y` of an ad id, the text substituted into CAD tags."""
    return b"dir%05d/class%d_%d" % (ad // 36, (ad % 36) // 9, ad % 9)


def substitute_ads(data: bytes, ad: int) -> bytes:
    """Replace the body of every CAD tag with the ad's path (§4.5 step 7)."""
    out, body, start = bytearray(data), ad_path(ad), 0
    while (at := data.find(CAD_TAG, start)) >= 0:
        out[at + CAD_DIR_AT - 3 : at + CAD_DIR_AT - 3 + len(body)] = body
        start = at + len(CAD_TAG)
    return bytes(out)


# --- §4.2: the wrapper --------------------------------------------------------------------


def wrapper_head(query: str, *, server_software: str, remote_addr: str, script_name: str) -> bytes:
    """The wrapper up to and including `<pre>\\n`."""
    return (
        f"<html>\n<head><title>{WRAPPER_TITLE}</title></head>\n<body>\n"
        f"<p>SERVER_SOFTWARE = {server_software}\n<p>REMOTE_ADDR = {remote_addr}\n"
        f"<p>SCRIPT_NAME = {script_name}\n<p>QUERY_STRING = {query}\n<pre>\n"
    ).encode("latin-1")


def wrapper(
    query: str, body: bytes, *, server_software: str, remote_addr: str, script_name: str
) -> bytes:
    """The HTML body of every dynamic response: head, the (substituted) file, tail."""
    head = wrapper_head(
        query, server_software=server_software, remote_addr=remote_addr, script_name=script_name
    )
    return head + body + WRAPPER_TAIL


# --- §4.7: the post log -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PostRecord:
    """One post.log record."""

    number: int
    time: int
    pid: int
    dir: int
    cls: int
    num: int
    client: int
    filename: str
    user_id: int

    def format(self) -> bytes:
        """The 139-byte record."""
        rec = POST_RECORD_FMT % (
            self.number, self.time, self.pid, self.dir, self.cls, self.num, self.client,
            self.filename, self.pid, self.user_id,
        )
        return rec.encode("latin-1")


def post_log_header(count: int) -> bytes:
    """The 11-byte count header."""
    return b"%10d\n" % count


def parse_post_log(data: bytes) -> list[PostRecord]:
    """Records of a post log (file or Fetch `<pre>` contents), checked as the manager does."""
    text = data.decode("latin-1")
    lines = text.splitlines()
    if not lines or not lines[0].strip().isdigit():
        raise SpecError("post log: missing the count line", kind="content")
    records = [_parse_post_record(line) for line in lines[1:] if line.strip()]
    if int(lines[0]) != len(records):
        raise SpecError(f"post log: count {lines[0].strip()} != {len(records)} records")
    numbers = [r.number for r in records]
    if numbers != sorted(set(numbers)):
        raise SpecError("post log: record numbers are not strictly increasing", kind="content")
    return records


def _parse_post_record(line: str) -> PostRecord:
    f = line.split()
    if len(f) != 10 or f[2] != f[8]:
        raise SpecError(f"post log: bad record {line!r}", kind="content")
    n, t, pid, d, c, num, client = (int(x) for x in f[:7])
    return PostRecord(n, t, pid, d, c, num, client, f[7], int(f[9]))


def fetch_records(body: bytes) -> list[PostRecord]:
    """The post-log records in a Fetch response body (the manager's parse, §4.8)."""
    at = body.find(b"<pre>\n")
    end = body.rfind(b"\n</pre>")
    if at < 0 or end < at:
        raise SpecError("Fetch: no <pre> block", kind="content")
    return parse_post_log(body[at + 6 : end])


class PostLog:
    """The shared post log: every append is atomic across threads (lock) and processes (flock)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def reset(self) -> None:
        """Truncate to an empty log with a zero count."""
        with self._lock, open(self.path, "wb") as f:
            f.write(post_log_header(0))
            os.fsync(f.fileno())

    def append(self, record: PostRecord) -> PostRecord:
        """Write `record` with the next number at 11 + 139 N and bump the count; fsync'd."""
        with self._lock, self._open("r+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            header = f.read(POST_HEADER)
            if len(header) != POST_HEADER or not header.strip().isdigit():
                raise SpecError(f"post log {self.path} has no count header", status=500)
            count = int(header)
            numbered = dataclasses.replace(record, number=count + 1)
            f.seek(POST_HEADER + POST_RECORD * count)
            f.write(numbered.format())
            f.seek(0)
            f.write(post_log_header(count + 1))
            f.flush()
            os.fsync(f.fileno())
            return numbered

    def read(self) -> bytes:
        """The log's bytes (the Fetch payload)."""
        with self._open("rb") as f:
            return f.read()

    def _open(self, mode: str) -> BinaryIO:
        try:
            return open(self.path, mode)
        except FileNotFoundError:
            raise SpecError(f"no post log at {self.path}: send Reset first", status=500) from None


# --- requests as the client sends them (§4.1, §4.7) ---------------------------------------

SCRIPT = "/specweb99"
CGI_SCRIPT = "/cgi-bin/specweb99"


@dataclasses.dataclass(frozen=True)
class Request:
    """One SPECweb99 request: its type and the file it names, plus the CAD/POST cookie."""

    type: str
    dir: int
    cls: int
    num: int
    user_id: int = USER_ID_BASE
    last_ad: int = 0
    client: int = 0
    prefix: str = ""  # URL root of file_set, e.g. "" or "/specweb99"

    def __post_init__(self) -> None:
        if self.type not in REQUEST_TYPES:
            raise SpecError(f"unknown request type {self.type!r}; known: {REQUEST_TYPES}")
        file_path(self.dir, self.cls, self.num)  # validates the numbers

    @property
    def name(self) -> str:
        """`file_set/dirNNNNN/classC_F`: what the file's header line names."""
        return file_path(self.dir, self.cls, self.num)

    @property
    def size(self) -> int:
        return file_size(self.cls, self.num)

    def query(self) -> str:
        """The QUERY_STRING the server must echo.

        [I] "" for POST: the client's POST URL is unknown (§4.7); we POST to the bare script
        URL, so S1 would echo its empty query string.
        """
        if self.type in ("static", "post"):
            return ""
        return f"{self.prefix}/{self.name}"

    def target(self) -> str:
        """The request-target of the request line."""
        if self.type == "static":
            return f"{self.prefix}/{self.name}"
        if self.type == "post":
            return SCRIPT
        return f"{CGI_SCRIPT if self.type == 'cgi_get' else SCRIPT}?{self.query()}"

    def cookie(self) -> str | None:
        if self.type not in ("cad_get", "post"):
            return None
        return f"my_cookie=user_id={self.user_id}&last_ad={self.last_ad}"

    def post_body(self) -> bytes:
        """The client's POST body format (§4.7)."""
        return (
            f"urlroot={self.prefix}/file_set/&dir={self.dir:05d}&class={self.cls}"
            f"&num={self.num}&client={self.client}"
        ).encode()

    def http(self, host: str = "127.0.0.1") -> bytes:
        """The raw HTTP/1.1 keep-alive request [I: header order]."""
        method = "POST" if self.type == "post" else "GET"
        lines = [f"{method} {self.target()} HTTP/1.1", f"Host: {host}", "Accept: */*"]
        if (cookie := self.cookie()) is not None:
            lines.append(f"Cookie: {cookie}")
        body = self.post_body() if self.type == "post" else b""
        if body:
            lines += ["Content-type: application/x-www-form-urlencoded",
                      f"Content-Length: {len(body)}"]
        lines.append("Connection: Keep-Alive")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def parse_cookie(value: str) -> tuple[int, int]:
    """(user_id, last_ad) of `my_cookie=user_id=U&last_ad=L`."""
    m = re.fullmatch(r"\s*my_cookie=user_id=(\d+)&last_ad=(\d+)\s*", value)
    if not m:
        raise SpecError(f"bad cookie {value!r}", kind="cookie")
    return int(m.group(1)), int(m.group(2))


def parse_post_body(body: bytes) -> dict[str, str]:
    """The POST form fields, in any order (§4.7); SpecError when one is missing or bad."""
    fields = dict(p.split("=", 1) for p in body.decode("latin-1").split("&") if "=" in p)
    missing = {"urlroot", "dir", "class", "num", "client"} - set(fields)
    if missing:
        raise SpecError(f"POST body lacks {sorted(missing)}")
    for key in ("dir", "class", "num", "client"):
        if not fields[key].isdigit():
            raise SpecError(f"POST field {key}={fields[key]!r} is not a number")
    return fields


# --- §6.3: judging a response as the client does ------------------------------------------


def validate(
    req: Request,
    status: int,
    headers: dict[str, str],
    body: bytes,
    reset: ResetParams | None,
    *,
    now: float | None = None,
) -> str | None:
    """The error word for one response to `req` (None when the client counts it good).

    Checks, in the client's order: status, Content-Length, the wrapper and echoed query
    (dynamic), the file's size line, body length, cookies, and with `reset` the exact Ad_id,
    Ad_weight and Expired predicted by §4.5 [I: the real client checks only ranges].
    """
    h = {k.lower(): v for k, v in headers.items()}
    if status != 200:
        return "status"
    if h.get("content-length", "").strip() != str(len(body)):
        return "length"
    payload = body
    if req.type != "static":
        error, payload = _unwrap(req, body)
        if error:
            return error
    error = _check_file(req, payload)
    if error:
        return error
    if req.type == "post" and h.get("set-cookie", "").strip() != f"my_cookie={req.user_id}":
        return "cookie"
    if req.type == "cad_get":
        return _check_cad(req, h.get("set-cookie", ""), payload, reset, now)
    return None


def _unwrap(req: Request, body: bytes) -> tuple[str | None, bytes]:
    """(error, file bytes) of a wrapped dynamic response."""
    if b"<html>" not in body or b"<p>QUERY_STRING" not in body:
        return "content", b""
    at = body.find(b"<pre>\n")
    if at < 0 or not body.endswith(WRAPPER_TAIL):
        return "content", b""
    m = re.search(rb"<p>QUERY_STRING = ([^\n]*)\n", body[:at + 1])
    if not m or m.group(1).decode("latin-1") != req.query():
        return "query", b""
    return None, body[at + 6 : len(body) - len(WRAPPER_TAIL)]


def _check_file(req: Request, payload: bytes) -> str | None:
    """The first line must be `%9d %s` naming the expected size and file; size must match."""
    line = payload.split(b"\n", 1)[0].decode("latin-1", "replace").split()
    if len(line) != 2 or not line[0].isdigit():
        return "content"
    if line[1] != req.name:
        return "content"
    if int(line[0]) != req.size or len(payload) != req.size:
        return "size"
    return None


def _check_cad(
    req: Request, set_cookie: str, payload: bytes, reset: ResetParams | None, now: float | None
) -> str | None:
    m = re.fullmatch(r"\s*found_cookie=Ad_id=(-?\d+)&Ad_weight=(\d+)&Expired=(\d)\s*", set_cookie)
    if not m:
        return "cookie"
    ad, weight, expired = (int(g) for g in m.groups())
    if not 0 <= ad < MAX_ADS or weight > 15 * 5:
        return "ad"
    if reset is not None:
        t = time.time() if now is None else now
        try:
            predicted = predict_ad(req.user_id, req.last_ad, reset, t)
        except SpecError as e:  # the request itself named an unknown user or ad
            return e.kind
        if (ad, weight, expired) != predicted:
            return "ad"
    if req.cls in (1, 2) and CAD_TAG in payload:
        return "content"  # tags must have been substituted
    if req.cls in (1, 2) and ad_path(ad) not in payload:
        return "content"
    return None


# --- the oracle: a SPECweb99 server's state in Python -------------------------------------


@dataclasses.dataclass(frozen=True)
class Response:
    """One HTTP response: status, headers in order, body."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def http(self, *, keep_alive: bool = True) -> bytes:
        """The response bytes, HTTP/1.1."""
        reason = http.HTTPStatus(self.status).phrase
        lines = [f"HTTP/1.1 {self.status} {reason}", *(f"{k}: {v}" for k, v in self.headers)]
        lines.append("Connection: " + ("Keep-Alive" if keep_alive else "close"))
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


class Oracle:
    """A SPECweb99 server's behaviour: Reset, Fetch, static, standard/CGI/CAD GET and POST.

    Files live where the C servers keep them: User.Personality and Custom.Ads in `state_dir`,
    the post log at `post_log` (default `state_dir/post.log`). Tables are read back from the
    files after Reset, so the oracle exercises the same round trip as the servers.
    Errors [I]: 4xx/5xx with a one-line text body (§4.9's recommendation), not S1's 200.
    """

    def __init__(
        self, docroot: Path, state_dir: Path, *, post_log: Path | None = None,
        server_software: str = "ukweb-oracle", pid: int | None = None,
    ) -> None:
        self.docroot = Path(docroot).resolve()
        self.state_dir = Path(state_dir)
        self.post_log = PostLog(post_log or self.state_dir / "post.log")
        self.server_software = server_software
        self.pid = os.getpid() if pid is None else pid
        self.reset_params: ResetParams | None = None
        self._users: list[int] = []
        self._ads: list[Ad] = []

    # housekeeping (§4.8)

    def reset(self, params: ResetParams, now: float) -> None:
        """Regenerate both tables, truncate the post log, reload."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        _write_atomic(self.state_dir / "User.Personality",
                      user_personality(params.maxload, params.maxthread))
        _write_atomic(self.state_dir / "Custom.Ads", custom_ads(
            params.pttime, params.maxthread, params.exp1, params.exp2, int(now)))
        self.post_log.reset()
        self._users = parse_user_personality((self.state_dir / "User.Personality").read_bytes())
        self._ads = parse_custom_ads((self.state_dir / "Custom.Ads").read_bytes())
        self.reset_params = params
        log.info("reset: %s", params.query())

    # request handling

    def handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes = b"", *,
        remote_addr: str, now: float | None = None, script_name: str | None = None,
    ) -> Response:
        """The response a correct server gives; never raises for a bad request."""
        now = time.time() if now is None else now
        path, _, query = target.partition("?")
        h = {k.lower(): v for k, v in headers.items()}
        env = {"server_software": self.server_software, "remote_addr": remote_addr,
               "script_name": script_name or path}
        try:
            if method not in ("GET", "POST"):
                raise SpecError(f"method {method} not allowed", status=405)
            if path not in (SCRIPT, CGI_SCRIPT):
                if method != "GET" or query:
                    raise SpecError(f"no dynamic handler at {path}", status=404)
                return self._static(path)
            if method == "POST":
                return self._post(h, body, query, env, now)
            if query.startswith(COMMAND_PREFIX):
                return self._command(query, env, now)
            if "cookie" in h:
                return self._cad(query, h["cookie"], env, now)
            return self._dynamic(query, self._read(query), env, ())
        except SpecError as e:
            return Response(e.status, (("Content-Type", "text/plain"),
                                       ("Content-Length", str(len(str(e)) + 1))),
                            f"{e}\n".encode("latin-1", "replace"))

    def _resolve(self, url_path: str) -> Path:
        """docroot + path, confined to docroot (no `..`, no symlink escape)."""
        if not url_path.startswith("/") or "\0" in url_path:
            raise SpecError(f"bad path {url_path!r}")
        path = (self.docroot / url_path.lstrip("/")).resolve()
        if path != self.docroot and self.docroot not in path.parents:
            raise SpecError(f"{url_path} is outside the document root", status=403)
        if not path.is_file():
            raise SpecError(f"{url_path} not found", status=404)
        return path

    def _read(self, url_path: str) -> bytes:
        return self._resolve(url_path).read_bytes()

    def _static(self, path: str) -> Response:
        data = self._read(path)
        return Response(200, (("Content-Type", "text/plain"),
                              ("Content-Length", str(len(data)))), data)

    def _dynamic(self, query: str, data: bytes, env: dict, extra: tuple) -> Response:
        body = wrapper(query, data, **env)
        return Response(200, (("Content-Type", "text/html"),
                              ("Content-Length", str(len(body))), *extra), body)

    def _cad(self, query: str, cookie: str, env: dict, now: float) -> Response:
        user_id, last_ad = parse_cookie(cookie)
        if self.reset_params is None:
            raise SpecError("CAD request before any Reset", status=500)
        idx = user_id - USER_ID_BASE
        if not 0 <= idx < len(self._users):
            raise SpecError(f"user_id {user_id} unknown", kind="cookie")
        ad, weight = find_ad(self._users[idx], last_ad, self._ads)
        expired = ad_expired(self._ads[ad], now)
        data = self._read(query)
        if re.search(r"class[12]", query):
            data = substitute_ads(data, ad)
        cookie_out = f"found_cookie=Ad_id={ad}&Ad_weight={weight}&Expired={expired}"
        return self._dynamic(query, data, env, (("Set-Cookie", cookie_out),))

    def _post(self, h: dict, body: bytes, query: str, env: dict, now: float) -> Response:
        if "cookie" not in h:
            raise SpecError("POST without my_cookie", kind="cookie")
        user_id, _ = parse_cookie(h["cookie"])
        f = parse_post_body(body)
        d, c, n = int(f["dir"]), int(f["class"]), int(f["num"])
        if not (0 <= c < CLASSES and 0 <= n < FILES_PER_CLASS):
            raise SpecError(f"POST names no file: class={c} num={n}")
        filename = f"{f['urlroot']}dir{d:05d}/class{c}_{n}"
        data = self._read(filename)  # before logging: a POST for a missing file is not logged
        self.post_log.append(PostRecord(0, int(now), self.pid, d, c, n, int(f["client"]),
                                        filename, user_id))
        return self._dynamic(query, data, env, (("Set-Cookie", f"my_cookie={user_id}"),))

    def _command(self, query: str, env: dict, now: float) -> Response:
        if query.startswith("command/Reset"):
            self.reset(ResetParams.parse(query), now)
            return self._dynamic(query, b"", env, ())
        if query == "command/Fetch":
            return self._dynamic(query, self.post_log.read(), env, ())
        raise SpecError(f"unknown command {query!r}")


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
