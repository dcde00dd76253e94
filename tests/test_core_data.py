"""Data resolution: clear errors naming the expected path and the fix."""

import pytest

from fwdlearn.data import DataNotFoundError, cache_dir, data_path
from fwdlearn.errors import UsageError


def test_missing_variable_and_missing_file(monkeypatch, tmp_path):
    monkeypatch.delenv("FWDLEARN_DATA_DIR", raising=False)
    with pytest.raises(DataNotFoundError, match="FWDLEARN_DATA_DIR is not set"):
        data_path("x.txt", what="demo data")
    monkeypatch.setenv("FWDLEARN_DATA_DIR", str(tmp_path))
    with pytest.raises(DataNotFoundError, match=rf"demo data: expected {tmp_path}/x.txt, which does not exist. Copy it there."):
        data_path("x.txt", what="demo data", how="Copy it there.")
    (tmp_path / "x.txt").write_text("hi")
    assert data_path("x.txt", what="demo data") == tmp_path / "x.txt"


def test_cache_dir_respects_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("FWDLEARN_CACHE_DIR", str(tmp_path / "c"))
    assert cache_dir("planetoid") == tmp_path / "c" / "planetoid" and (tmp_path / "c" / "planetoid").is_dir()
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("FWDLEARN_CACHE_DIR", str(tmp_path / "file"))  # a file where the folder should be
    with pytest.raises(UsageError, match=r"cannot create the cache folder .*; point FWDLEARN_CACHE_DIR at a writable"):
        cache_dir("planetoid")
