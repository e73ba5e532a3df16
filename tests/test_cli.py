"""The `ukweb` command itself: --version names the package and the checkout it runs from."""

from __future__ import annotations

import subprocess

from ukweb import __version__, cli, paths


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(paths.REPO), *args], capture_output=True, text=True,
                          check=False).stdout.strip()


def test_version_names_package_and_commit():
    out = subprocess.run(["ukweb", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stderr == ""
    line = out.stdout.strip()
    assert line.startswith(f"ukweb {__version__} (git "), line
    head = _git("rev-parse", "HEAD")
    if not head:  # an exported tree without .git: nothing to name
        assert line.endswith("(git unknown)")
        return
    described = line.split("(git ", 1)[1].rstrip(")")
    # `git describe` gives the short commit (possibly after a tag), or the tag itself at HEAD.
    tags = _git("tag", "--points-at", "HEAD").split()
    assert described.removesuffix("-dirty").split("-g")[-1] in head or \
        described.removesuffix("-dirty") in tags, (described, head)
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    assert described.endswith("-dirty") == dirty


def test_version_outside_a_repository(monkeypatch, tmp_path):
    monkeypatch.setattr(paths, "REPO", tmp_path)
    assert cli.version() == f"ukweb {__version__} (git unknown)"
    assert cli.main(["-V"]) == 0
