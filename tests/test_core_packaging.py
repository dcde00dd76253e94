"""A regular (non-editable) install maps graphs/ and sequences/ into the fwdlearn namespace."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_regular_install_gives_namespaced_domain_packages(tmp_path):
    target, source = tmp_path / "site", tmp_path / "source"  # (built from a copy: pip leaves build/ in its source)
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "runs",
                                                                 "__pycache__", ".pytest_cache"))
    build = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(target),
         str(source)], capture_output=True, text=True, timeout=300,
    )
    if build.returncode != 0 and re.search(r"No module named '(setuptools|wheel)'", build.stderr):
        pytest.skip(f"pip cannot build here: {build.stderr.strip().splitlines()[-1]}")
    assert build.returncode == 0, build.stderr
    code = "import fwdlearn.graphs, fwdlearn.sequences, fwdlearn.diagnostics as d; print(fwdlearn.graphs.__file__)"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(target / "fwdlearn" / "graphs" / "__init__.py")
