"""The oracle ukweb.specweb99 against spec §4 and §6.3: tables, ad search, wrapper, post log."""

from __future__ import annotations

import http.client
import multiprocessing
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from oracle_server import OracleServer

from ukweb import specweb99 as sw
from ukweb.fileset import generate
from ukweb.specweb99 import Oracle, PostLog, PostRecord, Request, ResetParams
from ukweb.workload import file_path, file_size

NOW = 1_700_000_000
RESET = ResetParams(maxload=200, pttime=300, maxthread=656, exp1=20, exp2=120)
ENV = {"server_software": "oracle-test", "remote_addr": "127.0.0.1", "script_name": "/specweb99"}


# --- §4.6 tables -------------------------------------------------------------------------


def test_custom_ads_record_matches_the_s1_sample() -> None:
    # "   54 24808100    97F61  75  952393980": ad 54, an ordinary (not always-match) ad
    data = sw.custom_ads(pttime=1800, maxthread=0, exp1=100, exp2=200, now=952393980 - 3600)
    assert len(data) == 360 * 39
    assert data[54 * 39 : 55 * 39] == b"   54 24808100    97F61  75  952393980\n"


def test_user_personality_records() -> None:
    data = sw.user_personality(maxload=3, maxthread=2)
    # k(0) = 12300 = 0x300C: gender 0x1, age 0x08, region 0x80, interest1 0x20000, interest2 0x80
    # k(1) = 10000 = 0x2710: gender 0x1, age 0x08, region 0x10, interest1 0x40000, interest2 0x200
    assert data == b"    0 18820080\n    1 18140200\n    2 21408040\n"
    assert len(sw.user_personality(maxload=10, maxthread=700)) == 700 * 15
    # users repeat every 360 records: record 360 has the demographics of record 0
    assert sw.user_personality(1, 0)[5:] == sw.user_personality(400, 0)[360 * 15 + 5 : 361 * 15]


def test_always_match_and_expired_ads() -> None:
    ads = sw.ad_table(RESET.pttime, RESET.maxthread, 350, 100, NOW)
    always = sw.always_match_ads(RESET.maxthread)
    assert always[0] == 656 % 24 and len(always) == 15 and always[1] - always[0] == 24
    for j, ad in enumerate(ads):
        matched = j in always
        assert (ad.minmatch, ad.weightings == 0x3FFFF) == ((1, True) if matched else (75, False))
        if matched:
            assert ad.demographics & 0x3FF == 0x3FF
    expired = {j for j, ad in enumerate(ads) if ad.expires < NOW}
    assert expired == set(range(350, 360)) | set(range(0, 14)) | set(range(100, 124))
    assert {ad.expires for ad in ads} == {NOW + 600, NOW + 600 - 31_622_400}


def test_pttime_zero_means_1800() -> None:
    ads = sw.ad_table(0, 0, 0, 100, NOW)
    assert max(ad.expires for ad in ads) == NOW + 3600


def test_tables_round_trip_through_their_parsers() -> None:
    users = sw.parse_user_personality(sw.user_personality(50, 30))
    assert users == sw.user_demographics(50, 30)
    ads = sw.parse_custom_ads(sw.custom_ads(300, 5, 1, 2, NOW))
    assert ads == sw.ad_table(300, 5, 1, 2, NOW)
    with pytest.raises(sw.SpecError):
        sw.parse_custom_ads(sw.custom_ads(300, 5, 1, 2, NOW)[:-1])


# --- §4.5 the ad search ------------------------------------------------------------------


def test_ordinary_ads_can_never_match() -> None:
    for ad in sw.ad_table(300, 7, 0, 100, NOW):
        if ad.minmatch == 75:
            nibbles = sum((ad.weightings >> s) & 0xF for s in (0, 4, 8, 12, 16))
            assert nibbles < 75


def test_only_always_match_ads_are_selected_next_after_last_ad() -> None:
    users = sw.user_demographics(360, 0)
    for maxthread in (0, 7, 656):
        ads = sw.ad_table(300, maxthread, 0, 100, NOW)
        always = sw.always_match_ads(maxthread)
        for u in range(0, 360, 7):
            for last in (*range(0, 360, 23), 359, always[0], always[-1]):
                ad, w = sw.find_ad(users[u], last, ads)
                assert ad == next((a for a in always if a > last), always[0])
                assert w in {15, 18, 30, 33, 45, 48, 63}


def test_predict_ad_reports_expired_exactly_for_the_two_ranges() -> None:
    expired = sw.expired_ads(RESET.exp1, RESET.exp2)
    seen = set()
    for last in range(360):
        ad, weight, exp = sw.predict_ad(10_000 + last % 200, last, RESET, NOW)
        assert exp == int(ad in expired)
        seen.add(exp)
    assert seen == {0, 1}
    # long after the Reset every ad has expired
    assert sw.predict_ad(10_005, 3, RESET, NOW + 10_000, reset_at=NOW)[2] == 1


@pytest.mark.parametrize("user,last", [(9_999, 0), (10_656, 0), (10_000, 360), (10_000, -1)])
def test_predict_ad_rejects_unknown_users_and_ads(user: int, last: int) -> None:
    with pytest.raises(sw.SpecError):
        sw.predict_ad(user, last, RESET, NOW)


def test_substitution_replaces_every_tag_body() -> None:
    data = b"x" + sw.CAD_TAG + b"\n" + b"y" * 100 + sw.CAD_TAG
    out = sw.substitute_ads(data, 359)
    assert len(out) == len(data)
    assert out.count(b'<IMG SRC="/file_set/dir00009/class3_8">') == 2
    assert sw.CAD_TAG not in out


# --- §4.2 wrapper and §4.8 reset parameters -----------------------------------------------


def test_wrapper_bytes() -> None:
    body = sw.wrapper("/file_set/dir00001/class0_0", b"FILE", **ENV)
    assert body == (
        b"<html>\n<head><title>SPECweb99 Dynamic GET & POST Test</title></head>\n<body>\n"
        b"<p>SERVER_SOFTWARE = oracle-test\n<p>REMOTE_ADDR = 127.0.0.1\n"
        b"<p>SCRIPT_NAME = /specweb99\n<p>QUERY_STRING = /file_set/dir00001/class0_0\n<pre>\n"
        b"FILE\n</pre>\n</body></html>\n"
    )


def test_reset_query_round_trip_and_manager_rules() -> None:
    q = RESET.query()
    assert q == "command/Reset&maxload=200&pttime=300&maxthread=656&exp=20,120&urlroot=/file_set/"
    assert ResetParams.parse(q) == RESET
    wrapped = ResetParams.for_run(1500, 400, now=360 * 5 + 300)  # t2 = 400 > 359 wraps
    assert (wrapped.exp1, wrapped.exp2, wrapped.maxload, wrapped.pttime) == (40, 300, 1500, 400)
    plain = ResetParams.for_run(1500, 400, now=360 * 5 + 10)
    assert (plain.exp1, plain.exp2) == (10, 110)
    with pytest.raises(sw.SpecError):
        ResetParams.parse("command/Reset&maxload=x")
    with pytest.raises(sw.SpecError):
        ResetParams(0, 1, 1, 1, 1)
    with pytest.raises(sw.SpecError):
        ResetParams(1, 1, 1, 360, 1)


# --- §4.7 post log ------------------------------------------------------------------------


def test_post_record_format_is_139_bytes() -> None:
    rec = PostRecord(1, NOW, 4242, 4, 1, 3, 2, "/file_set/dir00004/class1_3", 10_001)
    line = rec.format()
    assert len(line) == 139
    assert line == (
        b"         1 1700000000       4242     4  1  3          2 /file_set/dir00004/class1_3"
        + b" " * 33 + b"       4242      10001\n"
    )
    assert sw.post_log_header(0) == b"         0\n"


def _append_many(path: str, worker: int) -> None:
    log = PostLog(Path(path))
    for i in range(40):
        log.append(PostRecord(0, NOW, 1000 + worker, i, 1, 2, worker, "/file_set/dir0/c", 10_000))


def test_post_log_appends_are_atomic_across_processes(tmp_path: Path) -> None:
    path = tmp_path / "post.log"
    PostLog(path).reset()
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append_many, args=(str(path), w)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    data = path.read_bytes()
    assert len(data) == 11 + 160 * 139
    records = sw.parse_post_log(data)
    assert [r.number for r in records] == list(range(1, 161))


# --- the oracle end to end ----------------------------------------------------------------


def _file(dir_: int, cls_: int, num: int) -> bytes:
    """A small file in the §1.4 format (64-byte lines, tag after the first marker)."""
    head = b"%9d %s\n" % (file_size(cls_, num), file_path(dir_, cls_, num).encode())
    body = bytearray(b"a" * (file_size(cls_, num) - len(head)))
    body[63::64] = b"\n" * len(body[63::64])
    if cls_ in (1, 2):
        body[1:64] = sw.CAD_TAG + b"\n"
    return head + bytes(body)


@pytest.fixture()
def oracle(tmp_path: Path) -> Oracle:
    for cls_, num in ((0, 0), (1, 2), (2, 0)):
        path = tmp_path / "docs" / file_path(3, cls_, num)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_file(3, cls_, num))
    (tmp_path / "secret").write_text("no")
    o = Oracle(tmp_path / "docs", tmp_path / "state", server_software="oracle-test", pid=77)
    resp = o.handle("GET", "/specweb99?" + RESET.query(), {}, remote_addr="127.0.0.1", now=NOW)
    assert resp.status == 200 and resp.body == sw.wrapper(RESET.query(), b"", **ENV)
    return o


def _ask(o: Oracle, req: Request, now: float = NOW) -> sw.Response:
    headers = {"Cookie": req.cookie()} if req.cookie() else {}
    method = "POST" if req.type == "post" else "GET"
    body = req.post_body() if req.type == "post" else b""
    return o.handle(method, req.target(), headers, body, remote_addr="127.0.0.1", now=now)


@pytest.mark.parametrize("type_", ["static", "dyn_get", "cgi_get", "cad_get", "post"])
def test_oracle_responses_validate(oracle: Oracle, type_: str) -> None:
    for cls_, num in ((0, 0), (1, 2), (2, 0)):
        req = Request(type_, 3, cls_, num, user_id=10_010, last_ad=5, client=1)
        resp = _ask(oracle, req)
        assert sw.validate(req, resp.status, dict(resp.headers), resp.body, RESET, now=NOW) is None


def test_oracle_standard_get_leaves_tags_cad_substitutes_them(oracle: Oracle) -> None:
    plain = _ask(oracle, Request("dyn_get", 3, 2, 0))
    assert plain.body.count(sw.CAD_TAG) == 1 and plain.header("Set-Cookie") is None
    req = Request("cad_get", 3, 2, 0, user_id=10_003, last_ad=30)
    cad = _ask(oracle, req)
    ad, weight, expired = sw.predict_ad(10_003, 30, RESET, NOW)
    assert ad == 32  # next always-match id after 30 with maxthread 656 (656 mod 24 = 8)
    assert cad.header("Set-Cookie") == f"found_cookie=Ad_id={ad}&Ad_weight={weight}&Expired={expired}"
    assert sw.CAD_TAG not in cad.body and sw.ad_path(ad) in cad.body
    assert len(cad.body) == len(plain.body)


def test_oracle_post_logs_and_fetch_returns_the_log(oracle: Oracle) -> None:
    for client in range(3):
        resp = _ask(oracle, Request("post", 3, 1, 2, user_id=10_004, client=client))
        assert resp.header("Set-Cookie") == "my_cookie=10004"
    fetch = oracle.handle("GET", "/specweb99?command/Fetch", {}, remote_addr="127.0.0.1", now=NOW)
    records = sw.fetch_records(fetch.body)
    assert [(r.number, r.client, r.pid, r.filename) for r in records] == [
        (n + 1, n, 77, "/file_set/dir00003/class1_2") for n in range(3)
    ]


@pytest.mark.parametrize(
    "method,target,headers,body,status",
    [
        ("GET", "/file_set/dir00099/class0_0", {}, b"", 404),
        ("GET", "/file_set/../../secret", {}, b"", 403),
        ("GET", "/specweb99?/file_set/../../secret", {}, b"", 403),
        ("GET", "/specweb99?command/Nope", {}, b"", 400),
        ("DELETE", "/file_set/dir00003/class0_0", {}, b"", 405),
        ("GET", "/specweb99?/file_set/dir00003/class0_0", {"Cookie": "garbage"}, b"", 400),
        ("POST", "/specweb99", {"Cookie": "my_cookie=user_id=10001&last_ad=1"}, b"dir=1", 400),
        ("POST", "/specweb99", {}, b"urlroot=/file_set/&dir=3&class=0&num=0&client=1", 400),
    ],
)
def test_oracle_rejects_bad_requests(oracle: Oracle, method, target, headers, body, status) -> None:
    resp = oracle.handle(method, target, headers, body, remote_addr="127.0.0.1", now=NOW)
    assert resp.status == status
    assert resp.header("Content-Length") == str(len(resp.body))


def test_bad_post_is_not_logged(oracle: Oracle) -> None:
    _ask(oracle, Request("post", 3, 1, 2))
    missing = b"urlroot=/file_set/&dir=00099&class=0&num=0&client=1"
    resp = oracle.handle("POST", "/specweb99", {"Cookie": "my_cookie=user_id=10001&last_ad=1"},
                         missing, remote_addr="127.0.0.1", now=NOW)
    assert resp.status == 404
    assert len(sw.parse_post_log(oracle.post_log.read())) == 1


# --- §6.3 validation catches each kind of error --------------------------------------------


def _good(oracle: Oracle, req: Request) -> tuple[int, dict, bytes]:
    resp = _ask(oracle, req)
    return resp.status, dict(resp.headers), resp.body


def test_validate_catches_each_error_kind(oracle: Oracle) -> None:
    cad = Request("cad_get", 3, 1, 2, user_id=10_001, last_ad=0)
    status, headers, body = _good(oracle, cad)
    assert sw.validate(cad, status, headers, body, RESET, now=NOW) is None
    assert sw.validate(cad, 404, headers, body, RESET) == "status"
    assert sw.validate(cad, status, {**headers, "Content-Length": "1"}, body, RESET) == "length"
    other = body.replace(b"QUERY_STRING = /file_set/dir00003", b"QUERY_STRING = /file_set/dir00004")
    assert sw.validate(cad, status, headers, other, RESET) == "query"
    assert sw.validate(cad, status, headers, body.replace(b"<html>", b"<xml>!"), RESET) == "content"
    bad_ad = headers["Set-Cookie"].replace("Ad_id=8", "Ad_id=9")
    assert sw.validate(cad, status, {**headers, "Set-Cookie": bad_ad}, body, RESET, now=NOW) == "ad"
    assert sw.validate(cad, status, {**headers, "Set-Cookie": "x=1"}, body, RESET) == "cookie"
    std = Request("dyn_get", 3, 1, 2)
    s2, h2, b2 = _good(oracle, std)
    assert sw.validate(cad, s2, {**h2, "Set-Cookie": headers["Set-Cookie"]}, b2, RESET, now=NOW) \
        == "content"  # tag left unsubstituted
    static = Request("static", 3, 0, 0)
    s3, h3, b3 = _good(oracle, static)
    assert sw.validate(static, s3, h3, b3, None) is None
    wrong_size = b3.replace(b"      102", b"      103", 1)
    assert sw.validate(static, s3, h3, wrong_size, None) == "size"
    assert sw.validate(Request("static", 3, 0, 1), s3, h3, b3, None) == "content"
    post = Request("post", 3, 0, 0, user_id=10_002)
    s4, h4, b4 = _good(oracle, post)
    assert sw.validate(post, s4, {**h4, "Set-Cookie": "my_cookie=10003"}, b4, None) == "cookie"


def test_request_http_bytes() -> None:
    req = Request("cad_get", 12, 1, 3, user_id=10_001, last_ad=20)
    assert req.http("h") == (
        b"GET /specweb99?/file_set/dir00012/class1_3 HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n"
        b"Cookie: my_cookie=user_id=10001&last_ad=20\r\nConnection: Keep-Alive\r\n\r\n"
    )
    assert Request("cgi_get", 0, 0, 0).target() == "/cgi-bin/specweb99?/file_set/dir00000/class0_0"
    with pytest.raises(sw.SpecError):
        Request("head", 0, 0, 0)


# --- the oracle as a real HTTP server (tests/oracle_server.py) ----------------------------


@pytest.fixture(scope="module")
def docroot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("docroot")
    generate(out, dirs=2, seed=9, progress=False)
    return out


def _roundtrip(conn: http.client.HTTPConnection, req: Request) -> tuple[int, dict, bytes]:
    headers = {"Cookie": req.cookie()} if req.cookie() else {}
    if req.type == "post":
        headers["Content-type"] = "application/x-www-form-urlencoded"
        conn.request("POST", req.target(), body=req.post_body(), headers=headers)
    else:
        conn.request("GET", req.target(), headers=headers)
    resp = conn.getresponse()
    return resp.status, dict(resp.getheaders()), resp.read()


def test_oracle_server_keeps_alive_and_serves_valid_responses(docroot: Path, tmp_path: Path) -> None:
    reset = ResetParams.for_run(50, 600)
    with OracleServer(docroot, tmp_path / "state", reset=reset) as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        conn.connect()
        sock = conn.sock
        for i, type_ in enumerate(["static", "dyn_get", "cad_get", "post", "cgi_get"] * 3):
            req = Request(type_, i % 2, (i // 2) % 4, i % 9, user_id=10_000 + i, last_ad=i * 7)
            status, headers, body = _roundtrip(conn, req)
            assert sw.validate(req, status, headers, body, reset) is None, (req, status, body[:200])
        assert conn.sock is sock  # every request went over the same connection
        conn.request("GET", "/specweb99?command/Fetch")
        records = sw.fetch_records(conn.getresponse().read())
        assert [r.number for r in records] == [1, 2, 3]
        conn.close()


def test_oracle_server_cli_prints_listening_and_stops_on_sigterm(docroot: Path, tmp_path: Path) -> None:
    script = Path(__file__).with_name("oracle_server.py")
    proc = subprocess.Popen(
        [sys.executable, str(script), "--docroot", str(docroot), "--port", "0",
         "--state-dir", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("listening 127.0.0.1:"), proc.stderr.read()
        port = int(line.rsplit(":", 1)[1])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/specweb99?" + RESET.query())
        assert conn.getresponse().status == 200
        assert (tmp_path / "Custom.Ads").stat().st_size == 360 * 39
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    bad = subprocess.run([sys.executable, str(script), "--docroot", str(tmp_path / "nope"),
                          "--state-dir", str(tmp_path)], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


def test_post_and_fetch_before_reset_are_500_not_a_crash(tmp_path: Path) -> None:
    o = Oracle(tmp_path, tmp_path / "state")
    (tmp_path / "file_set/dir00000").mkdir(parents=True)
    (tmp_path / "file_set/dir00000/class0_0").write_bytes(_file(0, 0, 0))
    req = Request("post", 0, 0, 0)
    assert _ask(o, req).status == 500
    assert o.handle("GET", "/specweb99?command/Fetch", {}, remote_addr="::1").status == 500
    assert _ask(o, Request("cad_get", 0, 0, 0)).status == 500
