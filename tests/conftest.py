"""Shared fixtures: the venv's bin on PATH, so `ukweb` and friends resolve to this checkout."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
