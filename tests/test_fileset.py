"""ukweb.fileset: exact file format (§1.4), determinism, resumption, refusal, verify, CLI."""

from __future__ import annotations

import hashlib
import subprocess
import time
from pathlib import Path

import pytest

from ukweb import fileset
from ukweb.fileset import FilesetError, FilesetUsageError, generate, verify
from ukweb.specweb99 import CAD_TAG
from ukweb.workload import DIR_BYTES, file_path, file_size


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-directory file set, generated once for the read-only tests."""
    return generate(tmp_path_factory.mktemp("fs"), dirs=3, seed=5, progress=False)


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(root.rglob("class*")):
        h.update(path.relative_to(root).as_posix().encode() + path.read_bytes())
    return h.hexdigest()


def test_every_size_and_header_of_a_directory(small: Path) -> None:
    for d in range(3):
        names = sorted(p.name for p in (small / f"dir{d:05d}").iterdir() if p.name != ".complete")
        assert names == sorted(f"class{c}_{n}" for c in range(4) for n in range(9))
        for c in range(4):
            for n in range(9):
                data = (small / f"dir{d:05d}" / f"class{c}_{n}").read_bytes()
                assert len(data) == file_size(c, n)
                first = data.split(b"\n", 1)[0] + b"\n"
                assert first == b"%9d %s\n" % (file_size(c, n), file_path(d, c, n).encode())
    assert sum(p.stat().st_size for p in small.rglob("class*")) == 3 * DIR_BYTES


def test_lines_markers_and_cad_tags(small: Path) -> None:
    for c in range(4):
        for n in range(9):
            data = (small / "dir00002" / f"class{c}_{n}").read_bytes()
            name = file_path(2, c, n).encode()
            body = data[data.index(b"\n") + 1 :]
            assert all(body[i] == 10 for i in range(63, len(body), 64))
            assert body.count(b"\n") == len(body) // 64
            markers = body[::4096]
            assert markers == bytes(name[i % len(name)] for i in range(len(markers)))
            tags = [i for i in range(len(body)) if body.startswith(CAD_TAG, i)] if c in (1, 2) else []
            assert body.count(CAD_TAG) == (0, 1, 2, 0)[c]
            assert all((t - 1) % 4096 == 0 for t in tags)  # right after a marker
            assert all(body[t + len(CAD_TAG)] == 10 for t in tags)  # tag + '\n' fills the line
            filler = bytes(b for i, b in enumerate(body) if i % 64 != 63)
            assert min(filler) >= 32 and max(filler) <= 126


def test_small_class1_file_matches_the_s3_sample_layout(small: Path) -> None:
    data = (small / "dir00000" / "class1_0").read_bytes()
    assert data.startswith(b"     1024 file_set/dir00000/class1_0\nf" + CAD_TAG + b"\n")


def test_generation_is_deterministic_from_the_seed(small: Path, tmp_path: Path) -> None:
    again = generate(tmp_path / "a", dirs=3, seed=5, progress=False)
    other = generate(tmp_path / "b", dirs=3, seed=6, progress=False)
    assert _digest(again) == _digest(small)
    assert _digest(other) != _digest(small)


def test_verify_accepts_a_generated_set_and_names_a_bad_file(tmp_path: Path) -> None:
    root = generate(tmp_path, dirs=2, seed=1, progress=False)
    verify(root)
    verify(tmp_path)  # the directory holding file_set/ works too
    victims = {
        "dir00001/class2_3": lambda b: b[:101] + b"\x00" + b[102:],  # bad filler byte
        "dir00000/class0_4": lambda b: b[:-1],  # short
        "dir00001/class3_0": lambda b: b.replace(b"   102400 file_set", b"   102401 file_set", 1),
        "dir00000/class1_5": lambda b: b.replace(CAD_TAG, b"<" * len(CAD_TAG)),
        "dir00000/class2_2": lambda b: b[:164] + b"x" + b[165:],  # newline at 37 + 64 + 63
    }
    for rel, corrupt in victims.items():
        path = root / rel
        good = path.read_bytes()
        path.write_bytes(corrupt(good))
        with pytest.raises(FilesetError, match=rel):
            verify(root)
        path.write_bytes(good)
    verify(root)


def test_interrupted_generation_is_completed_not_trusted(tmp_path: Path) -> None:
    root = generate(tmp_path, dirs=3, seed=2, progress=False)
    want = _digest(root)
    untouched = (root / "dir00000" / "class3_8").stat().st_ino
    # simulate a crash in dir00001: marker gone, one file truncated, one missing, a temp left
    (root / "dir00001" / ".complete").unlink()
    (root / "dir00001" / "class3_1").write_bytes(b"partial")
    (root / "dir00001" / "class0_0").unlink()
    (root / "dir00001" / ("class1_1" + fileset.TMP_SUFFIX)).write_bytes(b"junk")
    with pytest.raises(FilesetError, match="dir00001"):
        verify(root)
    generate(tmp_path, dirs=3, seed=2, progress=False)
    verify(root)
    assert _digest(root) == want
    assert (root / "dir00000" / "class3_8").stat().st_ino == untouched  # complete dir reused
    assert not list(root.rglob("*" + fileset.TMP_SUFFIX))


def test_growing_a_file_set_keeps_existing_dirs(tmp_path: Path) -> None:
    root = generate(tmp_path, dirs=2, seed=3, progress=False)
    inode = (root / "dir00001" / "class2_2").stat().st_ino
    generate(tmp_path, dirs=4, seed=3, progress=False)
    verify(root)
    assert fileset.read_manifest(root)["dirs"] == 4
    assert (root / "dir00001" / "class2_2").stat().st_ino == inode


def test_refuses_a_foreign_directory_and_deletes_nothing(tmp_path: Path) -> None:
    foreign = tmp_path / "file_set"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    with pytest.raises(FilesetUsageError, match="something else"):
        generate(tmp_path, dirs=1, progress=False)
    assert (foreign / "precious.txt").read_text() == "keep me"
    assert sorted(p.name for p in foreign.iterdir()) == ["precious.txt"]
    with pytest.raises(FilesetError, match="not a ukweb file set"):
        verify(foreign)


def test_refuses_another_seed(tmp_path: Path) -> None:
    generate(tmp_path, dirs=1, seed=1, progress=False)
    with pytest.raises(FilesetUsageError, match="seed 1"):
        generate(tmp_path, dirs=1, seed=2, progress=False)


@pytest.mark.parametrize(
    "kwargs", [{"connections": -5}, {"dirs": 0}, {}, {"connections": 10, "dirs": 3}, {"dirs": 1, "seed": -1}]
)
def test_generate_rejects_bad_parameters(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(FilesetUsageError):
        generate(tmp_path, progress=False, **kwargs)
    assert not (tmp_path / "file_set").exists()


def _ukweb(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ukweb", "fileset", *args], capture_output=True, text=True, timeout=120)


def test_cli_generate_and_verify(tmp_path: Path) -> None:
    done = _ukweb("--dirs", "2", "--out", str(tmp_path), "--seed", "4")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path / "file_set")
    ok = _ukweb("verify", str(tmp_path))
    assert ok.returncode == 0 and "ok" in ok.stdout
    (tmp_path / "file_set" / "dir00001" / "class0_0").write_bytes(b"x")
    bad = _ukweb("verify", str(tmp_path))
    assert bad.returncode == 1 and "dir00001/class0_0" in bad.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--connections", "-1", "--out", "X"],
        ["--connections", "ten", "--out", "X"],
        ["--connections", "10", "--dirs", "3", "--out", "X"],
        ["--dirs", "3"],
        ["verify"],
    ],
)
def test_cli_bad_arguments_exit_2_with_one_line(tmp_path: Path, args: list[str]) -> None:
    args = [str(tmp_path / a) if a == "X" else a for a in args]
    done = _ukweb(*args)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "X").exists()


def test_cli_foreign_out_exits_2(tmp_path: Path) -> None:
    (tmp_path / "file_set").mkdir()
    (tmp_path / "file_set" / "mine").write_text("x")
    done = _ukweb("--dirs", "1", "--out", str(tmp_path))
    assert done.returncode == 2 and "something else" in done.stderr
    assert (tmp_path / "file_set" / "mine").exists()


def test_killed_generation_resumes_to_a_valid_set(tmp_path: Path) -> None:
    proc = subprocess.Popen(["ukweb", "fileset", "--dirs", "12", "--out", str(tmp_path),
                             "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    root = tmp_path / "file_set"
    try:
        deadline = time.monotonic() + 60
        while not (root / "dir00002" / ".complete").exists() and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        proc.kill()  # SIGKILL: no cleanup at all
        proc.wait()
    assert proc.returncode == -9  # really interrupted, not finished
    assert len(list(root.glob("dir*/.complete"))) < 12
    done = _ukweb("--dirs", "12", "--out", str(tmp_path), "--no-progress")
    assert done.returncode == 0, done.stderr
    verify(root)
    assert _digest(root) == _digest(generate(tmp_path / "fresh", dirs=12, progress=False))
