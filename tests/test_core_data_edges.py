"""Edges of fwdlearn.data (found by mutation testing): the data and cache folder variables, their refusals, the
loaders' log and the weights-only switches."""

import pytest


def test_the_data_folder_variable_is_stripped_expanded_and_made_absolute(monkeypatch, tmp_path):
    from fwdlearn.data import data_dir

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    for value, expected in [("  ", None), ("", None), (f" {tmp_path}/d ", tmp_path / "d"), ("~/d", tmp_path / "d"),
                            ("rel/d", tmp_path / "rel" / "d")]:
        monkeypatch.setenv("FWDLEARN_DATA_DIR", value)
        assert data_dir() == expected, value


def test_require_data_dir_names_what_needs_it_and_a_variable_naming_a_file(monkeypatch, tmp_path):
    from fwdlearn.data import DataNotFoundError, data_path, require_data_dir

    monkeypatch.setenv("FWDLEARN_DATA_DIR", " ")
    with pytest.raises(DataNotFoundError, match=r"^real data needs a local data folder, but FWDLEARN_DATA_DIR is not "
                                                r"set\. Set FWDLEARN_DATA_DIR=/path/to/data \(the folder that holds "
                                                r"e\.g\. Planetoid/, tinyshakespeare/, roads/\)\.$"):
        require_data_dir()
    with pytest.raises(DataNotFoundError, match=r"^demo data needs a local data folder"):
        data_path("x.txt", what="demo data")
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("FWDLEARN_DATA_DIR", str(tmp_path / "file"))
    with pytest.raises(DataNotFoundError, match=rf"^FWDLEARN_DATA_DIR points to {tmp_path}/file, which is not a "
                                                r"folder\. Fix the variable\.$"):
        require_data_dir()
    monkeypatch.setenv("FWDLEARN_DATA_DIR", str(tmp_path))
    (tmp_path / "Cora" / "raw").mkdir(parents=True)
    assert data_path("Cora", "raw", what="demo data") == tmp_path / "Cora" / "raw"  # (a folder is a path found too)
    with pytest.raises(DataNotFoundError, match=rf"^demo data: expected {tmp_path}/y, which does not exist\.$"):
        data_path("y", what="demo data")


def test_the_cache_folder_variable_is_stripped_and_expanded_and_a_file_there_is_refused(monkeypatch, tmp_path):
    from fwdlearn.data import cache_dir, cache_root
    from fwdlearn.errors import UsageError

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("FWDLEARN_CACHE_DIR", " ")
    assert cache_root() == tmp_path / ".cache" / "fwdlearn"
    monkeypatch.setenv("FWDLEARN_CACHE_DIR", "~/c ")
    assert cache_root() == tmp_path / "c" and cache_dir("x") == tmp_path / "c" / "x"
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("FWDLEARN_CACHE_DIR", str(tmp_path / "file"))
    with pytest.raises(UsageError, match=rf"^cannot create the cache folder {tmp_path}/file \(File exists\); point "
                                         r"FWDLEARN_CACHE_DIR at a writable folder$"):
        cache_dir()


def test_a_cache_folder_that_is_not_writable_is_refused(monkeypatch, tmp_path):
    import os

    from fwdlearn import data
    from fwdlearn.errors import UsageError

    monkeypatch.setenv("FWDLEARN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(data.os, "access", lambda path, mode: False)  # (root may write to a folder of mode 0o555)
    with pytest.raises(UsageError, match=rf"^the cache folder {tmp_path}/x is not writable; point FWDLEARN_CACHE_DIR "
                                         r"at a writable folder$"):
        data.cache_dir("x")
    assert os.path.isdir(tmp_path / "x")


def test_loader_log_drops_stderr_only_when_quiet(capsys):
    import sys

    from fwdlearn.data import loader_log

    with loader_log(True):
        print("Processing...", file=sys.stderr)
    with loader_log(False):
        print("Done!", file=sys.stderr)
    assert capsys.readouterr().err == "Done!\n"


def test_weights_only_loads_sets_one_switch_unsets_the_other_and_restores_both(monkeypatch):
    import os

    from fwdlearn.data import weights_only_loads

    monkeypatch.delenv("TORCH_FORCE_WEIGHTS_ONLY_LOAD", raising=False)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with weights_only_loads():
        assert os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] == "1"
        assert "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD" not in os.environ
    assert "TORCH_FORCE_WEIGHTS_ONLY_LOAD" not in os.environ and os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] == "1"
