"""libFuzzer harnesses: every parser the package has (`make fuzz` runs them for longer).

- servers/fuzz/site_fuzz.c: the request path both servers share. It answers each input as
  userver and as ktux would and aborts when a promise to the client breaks (a prefix of a
  complete request must wait for more, a parse error is a 4xx that closes, a file body stays
  inside the docroot, both servers agree, no descriptor leaks).
- servers/fuzz/postlog_fuzz.c: the post log through appends, Resets and crashes at any byte of
  a write: every acknowledged record survives recovery, numbered 1, 2, ... without a gap.
- loadgen/fuzz/response_fuzz.c: loadgen's response parser against an independent reading of
  the framing rules, fed whole, byte by byte and in pieces.
- loadgen/fuzz/validate_fuzz.c: loadgen's validator on correct and edited replies: a correct
  reply is accepted, an accepted one is valid, nothing read past the bytes the parser kept.

Here each replays its committed corpus (seeds and regressions: inputs that once broke a rule)
and fuzzes for a short while.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from ukweb import paths

SERVERS = paths.REPO / "servers"
LOADGEN = paths.REPO / "loadgen"
SEEDS = SERVERS / "fuzz" / "corpus"
FUZZ_SECONDS = 20
SHORT_SECONDS = 4  # each of the other harnesses; `make fuzz` runs them for FUZZ_SECONDS

pytestmark = pytest.mark.skipif(shutil.which("clang") is None,
                                reason="clang is not installed (make setup installs it as root)")


@pytest.fixture(scope="module")
def site_fuzz(tmp_path_factory) -> Path:
    build = tmp_path_factory.mktemp("fuzzbuild")
    subprocess.run(["make", "-s", "-C", str(SERVERS), "fuzz", f"BUILD={build}"], check=True,
                   capture_output=True, text=True)
    return build / "fuzz" / "site_fuzz"


def _run(binary: Path, *args: str, cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    # TMPDIR: the harness's docroot goes under the test's directory (an abort leaves it there)
    return subprocess.run([str(binary), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "TMPDIR": str(cwd)})


def test_every_seed_keeps_every_rule(site_fuzz: Path, tmp_path: Path):
    seeds = sorted(SEEDS.iterdir())
    assert {"line-at-limit", "reset-post-fetch", "escape-attempts"} <= {s.name for s in seeds}
    done = _run(site_fuzz, *map(str, seeds), cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("Executed ") == len(seeds)


# The parser before the fix the "line-at-limit" seed records: a request line of exactly
# HTTP_MAX_REQUEST_LINE bytes, read up to its CR, was answered 414.
BEFORE_FIX = "537ea66"


def test_the_harness_catches_the_bug_its_regression_seed_records(tmp_path: Path):
    old = subprocess.run(["git", "-C", str(paths.REPO), "show", f"{BEFORE_FIX}:servers/common/http.c"],
                         capture_output=True, text=True)
    if old.returncode != 0:
        pytest.skip(f"no git history with commit {BEFORE_FIX} here: {old.stderr.strip()}")
    tree = tmp_path / "servers"
    shutil.copytree(SERVERS, tree, ignore=shutil.ignore_patterns("corpus"))
    (tree / "common" / "http.c").write_text(old.stdout)
    subprocess.run(["make", "-s", "-C", str(tree), "fuzz", f"BUILD={tmp_path / 'build'}"],
                   check=True, capture_output=True, text=True)
    done = _run(tmp_path / "build" / "fuzz" / "site_fuzz", str(SEEDS / "line-at-limit"),
                cwd=tmp_path, timeout=60)
    assert done.returncode != 0 and "rule broken" in done.stderr, done.stderr[-2000:]
    assert "HTTP_INCOMPLETE" in done.stderr  # the prefix rule


def test_fuzzing_finds_no_broken_rule(site_fuzz: Path, tmp_path: Path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    done = _run(site_fuzz, f"-max_total_time={FUZZ_SECONDS}", "-seed=1", "-max_len=16384",
                f"-dict={SERVERS / 'fuzz' / 'http.dict'}", f"-artifact_prefix={tmp_path}/",
                str(corpus), str(SEEDS), cwd=tmp_path, timeout=FUZZ_SECONDS + 120)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = int(re.search(r"Done (\d+) runs", done.stderr).group(1))
    assert runs > 10_000, done.stderr[-1000:]
    assert not list(tmp_path.glob("crash-*")) and not list(tmp_path.glob("leak-*"))


# The other harnesses: name -> (its committed corpus, seeds that must be there, libFuzzer flags)
HARNESSES = {
    "postlog_fuzz": (SERVERS / "fuzz" / "postlog_corpus",
                     {"torn-mid-record-reopen", "torn-whole-record-stays", "crash-in-reset",
                      "wide-field-fails"}, []),
    "response_fuzz": (LOADGEN / "fuzz" / "response_corpus",
                      {"regress-two-lengths", "regress-nul-in-cookie", "header-at-limit", "chunked"},
                      [f"-dict={LOADGEN / 'fuzz' / 'response.dict'}"]),
    "validate_fuzz": (LOADGEN / "fuzz" / "validate_corpus",
                      {"cad-get-correct-reset", "post-correct", "post-raw-correct", "static-correct",
                       "regress-cookie-wraps", "regress-cookie-cut"},
                      [f"-dict={LOADGEN / 'fuzz' / 'response.dict'}"]),
}


@pytest.fixture(scope="module")
def harnesses(site_fuzz: Path, tmp_path_factory) -> dict[str, Path]:
    build = tmp_path_factory.mktemp("loadgenfuzzbuild")
    subprocess.run(["make", "-s", "-C", str(LOADGEN), "fuzz", f"BUILD={build}"], check=True,
                   capture_output=True, text=True)
    return {"postlog_fuzz": site_fuzz.parent / "postlog_fuzz",
            "response_fuzz": build / "fuzz" / "response_fuzz",
            "validate_fuzz": build / "fuzz" / "validate_fuzz"}


@pytest.fixture
def scratch(tmp_path: Path):
    """The harness's TMPDIR: tmpfs when there is one (the post log is rewritten thousands of
    times a second, some inputs with fdatasync), removed afterwards."""
    shm = Path("/dev/shm")
    where = Path(tempfile.mkdtemp(prefix="ukweb-test-fuzz-", dir=shm)) if os.access(shm, os.W_OK) \
        else tmp_path / "scratch"
    where.mkdir(exist_ok=True)
    yield where
    shutil.rmtree(where, ignore_errors=True)


def _run_in(binary: Path, *args: str, cwd: Path, scratch: Path, timeout: float):
    return subprocess.run([str(binary), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "TMPDIR": str(scratch)})


@pytest.mark.parametrize("name", sorted(HARNESSES))
def test_every_seed_and_regression_keeps_every_rule(name, harnesses, tmp_path, scratch):
    corpus, required, _ = HARNESSES[name]
    inputs = sorted(corpus.iterdir())
    assert required <= {i.name for i in inputs}
    done = _run_in(harnesses[name], *map(str, inputs), cwd=tmp_path, scratch=scratch, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("Executed ") == len(inputs)


@pytest.mark.parametrize("name", sorted(HARNESSES))
def test_short_fuzzing_finds_no_broken_rule(name, harnesses, tmp_path, scratch):
    corpus, _, flags = HARNESSES[name]
    new = tmp_path / "corpus"
    new.mkdir()
    done = _run_in(harnesses[name], f"-max_total_time={SHORT_SECONDS}", "-seed=1",
                   "-max_len=4096", *flags, f"-artifact_prefix={tmp_path}/", str(new), str(corpus),
                   cwd=tmp_path, scratch=scratch, timeout=SHORT_SECONDS + 60)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = int(re.search(r"Done (\d+) runs", done.stderr).group(1))
    assert runs > 1_000, done.stderr[-1000:]
    assert not list(tmp_path.glob("crash-*")) and not list(tmp_path.glob("leak-*"))


# loadgen's sources before the fixes their regression inputs record: the response parser
# accepted two Content-Lengths that disagree (the last one won) and a NUL in the header section
# (a cookie read up to it); the validator read a cookie's numbers with sscanf's %d (4294977296
# became 10000) and cut a cookie to 127 bytes before checking it.
LOADGEN_BEFORE_FIX = {
    "response_fuzz": ("e99bd84", "http_client.c", ("regress-two-lengths", "regress-nul-in-cookie")),
    "validate_fuzz": ("e1fda22", "validate.c", ("regress-cookie-wraps", "regress-cookie-cut")),
}


@pytest.mark.parametrize("name", sorted(LOADGEN_BEFORE_FIX))
def test_the_harness_catches_the_bugs_its_regressions_record(name, tmp_path: Path):
    commit, source, regressions = LOADGEN_BEFORE_FIX[name]
    old = subprocess.run(["git", "-C", str(paths.REPO), "show", f"{commit}:loadgen/{source}"],
                         capture_output=True, text=True)
    if old.returncode != 0:
        pytest.skip(f"no git history with commit {commit} here: {old.stderr.strip()}")
    tree = tmp_path / "loadgen"  # with servers/common beside it: loadgen includes its core
    shutil.copytree(LOADGEN, tree, ignore=shutil.ignore_patterns("*_corpus"))
    shutil.copytree(SERVERS / "common", tmp_path / "servers" / "common")
    (tree / source).write_text(old.stdout)
    subprocess.run(["make", "-s", "-C", str(tree), f"BUILD={tmp_path / 'build'}",
                    str(tmp_path / "build" / "fuzz" / name)],
                   check=True, capture_output=True, text=True)
    corpus = HARNESSES[name][0]
    for regression in regressions:
        done = _run(tmp_path / "build" / "fuzz" / name, str(corpus / regression), cwd=tmp_path,
                    timeout=60)
        assert done.returncode != 0 and "rule broken" in done.stderr, (regression, done.stderr[-2000:])


def test_the_postlog_harness_catches_a_recovery_that_keeps_a_torn_tail(tmp_path: Path, scratch):
    """A mutant post log that counts records from the header and never cuts a torn tail."""
    tree = tmp_path / "servers"
    shutil.copytree(SERVERS, tree, ignore=shutil.ignore_patterns("corpus", "*_corpus"))
    source = (tree / "common" / "postlog.c").read_text()
    cut = "if (st.st_size != want && ftruncate(p->fd, want) < 0)"
    if cut not in source:
        pytest.skip("servers/common/postlog.c no longer cuts a torn tail with that line")
    (tree / "common" / "postlog.c").write_text(source.replace(cut, "if (st.st_size != want && 0)"))
    subprocess.run(["make", "-s", "-C", str(tree), f"BUILD={tmp_path / 'build'}",
                    str(tmp_path / "build" / "fuzz" / "postlog_fuzz")],
                   check=True, capture_output=True, text=True)
    done = _run_in(tmp_path / "build" / "fuzz" / "postlog_fuzz",
                   str(SERVERS / "fuzz" / "postlog_corpus" / "torn-mid-record-reopen"),
                   cwd=tmp_path, scratch=scratch, timeout=60)
    assert done.returncode != 0 and "rule broken" in done.stderr, done.stderr[-2000:]
