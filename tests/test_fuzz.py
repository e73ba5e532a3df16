"""libFuzzer on the request path both servers share (servers/fuzz/site_fuzz.c).

The harness answers each input as userver and as ktux would and aborts when a promise to the
client breaks (a prefix of a complete request must wait for more, a parse error is a 4xx that
closes, a file body stays inside the docroot, both servers agree, no descriptor leaks). Here
it replays the committed seeds, regressions included, and fuzzes for a short while; `make fuzz`
runs it for longer.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ukweb import paths

SERVERS = paths.REPO / "servers"
SEEDS = SERVERS / "fuzz" / "corpus"
FUZZ_SECONDS = 20

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
