"""Edges of fwdlearn.model_files (found by mutation testing): what_file's verdict on each kind of file, the refusals of
save_model / load_model by their exact messages, and the dtypes a model comes back in (the optimizer settings' and
schedules' edges are in test_core_optim_edges.py)."""

import math
import re

import pytest
import torch

from fwdlearn.errors import InputError
from fwdlearn.model_files import ModelFile, load_model, save_model, what_file


class _Tiny(ModelFile, torch.nn.Module):
    """A model file of one's own: a linear layer, a saved buffer and one that is not saved (``persistent=False``)."""

    FILE_KIND = "tiny-test"
    FILE_HINT = "_Tiny.save writes one"

    def __init__(self, d: int = 3) -> None:
        super().__init__()
        self.d = d
        self.lin = torch.nn.Linear(d, d)
        self.register_buffer("scale", torch.ones(d))
        self.register_buffer("shift", torch.zeros(d), persistent=False)

    def config_dict(self):
        return {"d": self.d}


def _tiny_file(tmp_path, name="m.pt", dtype=None):
    torch.manual_seed(0)
    model = _Tiny() if dtype is None else _Tiny().to(dtype)
    return model, model.save(tmp_path / name)


# what_file ------------------------------------------------------------------------------------------------------------

_CHECKPOINT = dict.fromkeys(["step", "state", "best_state", "best_value", "bad_checks", "best", "best_step", "history"])
_LM_STATE = {"kind": "recurrent", "config": {}, "model": {}}


@pytest.mark.parametrize("loaded, verdict", [
    ({"kind": "forward-gnn", "config": {}, "model": {}},
     "it is a ForwardGNN graph model file, read by fwdlearn.graphs.ForwardGNN.load"),
    ({"kind": "forward-gnn", "config": {}}, ""),  # (no weights: not a model file of that kind)
    ({"kind": "forward-gnn", "model": {}}, ""),  # (no config)
    ({**_CHECKPOINT, "fingerprint": {"model": {"method": "bp"}}},
     "it is a graph train checkpoint, a run's training state (fwdlearn graph train --resume continues it), not a model "
     "file (ForwardGNN.save writes one)"),
    ({**_CHECKPOINT, "fingerprint": {"model": {"kind": "recurrent"}}},  # (a model fingerprint naming no graph method)
     "it is a training checkpoint (a fitting run's state), not a model file"),
    ({**_CHECKPOINT, "best_state": _LM_STATE}, "it is a seq train checkpoint, whose best state is read by "
     "fwdlearn.sequences.load_language_model and fwdlearn influence seq --checkpoints"),
    ({**_CHECKPOINT, "state": _LM_STATE}, "it is a seq train checkpoint, whose best state is read by "
     "fwdlearn.sequences.load_language_model and fwdlearn influence seq --checkpoints"),
    ({**_CHECKPOINT, "best_state": {"kind": "recurrent", "model": {}}},  # (a state without a config builds nothing)
     "it is a training checkpoint (a fitting run's state), not a model file"),
    ({}, ""),  # (an empty dict is no state_dict of a model)
    ({"w": torch.zeros(1), "step": 3}, ""),  # (a dict with a tensor among other entries)
    ([torch.zeros(1)], ""),
])
def test_what_file_names_each_kind_of_file_and_nothing_else(loaded, verdict):
    assert what_file(loaded) == verdict


# save_model -----------------------------------------------------------------------------------------------------------

def test_a_blank_path_a_folder_and_an_existing_file_are_refused_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = _Tiny()
    with pytest.raises(ValueError, match=r"^the model file's path is empty; give one \(e\.g\. runs/model\.pt\)$"):
        model.save("   ")
    folder = str(tmp_path / "new") + "/"  # (a folder not made yet, named by its trailing slash)
    with pytest.raises(IsADirectoryError, match=rf"^{re.escape(folder)} is a folder; give the model file's path "
                                                rf"\(e\.g\. {re.escape(str(tmp_path / 'new' / 'model.pt'))}\)$"):
        model.save(folder)
    (tmp_path / "home" / "d").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(IsADirectoryError, match=r"^~/d is a folder"):
        model.save("~/d")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]
    path = model.save(tmp_path / "m.pt")
    with pytest.raises(FileExistsError, match=rf"^{re.escape(str(path))} already exists; choose another output path "
                                              r"or pass overwrite=True to replace it$"):
        save_model(model, path, "tiny-test", model.config_dict())
    with torch.no_grad():
        model.lin.bias.fill_(7.0)
    assert model.save(path, overwrite=True) == path
    assert torch.equal(_Tiny.load(path).lin.bias, torch.full((3,), 7.0))


def test_the_extra_entries_are_written_with_the_bundle(tmp_path):
    model = _Tiny()
    bundle = torch.load(save_model(model, tmp_path / "m.pt", "tiny-test", {"d": 3}, step=5, note="x"),
                        weights_only=True)
    assert list(bundle) == ["kind", "config", "model", "step", "note"]
    assert (bundle["kind"], bundle["config"], bundle["step"], bundle["note"]) == ("tiny-test", {"d": 3}, 5, "x")


def test_a_diverged_complex_weight_and_an_inf_entry_of_a_model_without_named_parameters_are_refused(tmp_path):
    """Every entry of a model that names no parameters is taken as a weight: an infinity there is a divergence."""
    class Plain:
        def __init__(self, value):
            self.value = value

        def state_dict(self):
            return {"w": self.value}

    with pytest.raises(ValueError, match=r"^the model's w holds NaN or inf values \(training diverged\)"):
        save_model(Plain(torch.tensor([1.0, math.inf])), tmp_path / "p.pt", "plain", {})
    complex_model = torch.nn.Module()
    complex_model.z = torch.nn.Parameter(torch.tensor([1 + 1j, complex(math.nan, 0)]))
    with pytest.raises(ValueError, match=r"^the model's z holds NaN or inf values \(training diverged\)"):
        save_model(complex_model, tmp_path / "z.pt", "plain", {})
    assert not list(tmp_path.iterdir())
    save_model(Plain(torch.tensor([1.0, 2.0])), tmp_path / "p.pt", "plain", {})  # a finite one is written
    assert torch.equal(torch.load(tmp_path / "p.pt", weights_only=True)["model"]["w"], torch.tensor([1.0, 2.0]))


# load_model -----------------------------------------------------------------------------------------------------------

def test_a_folder_a_missing_file_and_a_bad_device_are_refused_by_type_and_message(tmp_path):
    with pytest.raises(IsADirectoryError, match=rf"^{re.escape(str(tmp_path))} is a folder; give the model file's path "
                                                rf"\(e\.g\. {re.escape(str(tmp_path / 'model.pt'))}\)$"):
        _Tiny.load(tmp_path)
    with pytest.raises(FileNotFoundError, match=rf"^no model file at {re.escape(str(tmp_path / 'none.pt'))}$"):
        _Tiny.load(tmp_path / "none.pt")
    _, path = _tiny_file(tmp_path)
    with pytest.raises(ValueError, match=r"^map_location='bogus' is not a device; give 'cpu', 'cuda', 'cuda:N'"):
        _Tiny.load(path, map_location="bogus")


@pytest.mark.parametrize("bundle", [
    {"kind": "tiny-test", "config": [3], "model": {}},  # (a config that is not a dict)
    {"kind": "tiny-test", "config": {"d": 3}},  # (no weights)
    {"kind": "other-test", "config": {"d": 3}, "model": {}},  # (another kind)
])
def test_a_file_that_is_not_the_loaders_kind_is_refused_with_its_hint(tmp_path, bundle):
    torch.save(bundle, tmp_path / "x.pt")
    with pytest.raises(InputError, match=rf"^{re.escape(str(tmp_path / 'x.pt'))} is not a _Tiny model file "
                                         r"\(_Tiny\.save writes one\)$"):
        _Tiny.load(tmp_path / "x.pt")


def test_load_model_without_a_kind_takes_any_kind_and_its_refusal_without_a_hint_adds_nothing(tmp_path):
    model, _ = _tiny_file(tmp_path)
    torch.save({**torch.load(tmp_path / "m.pt", weights_only=True), "kind": "renamed"}, tmp_path / "r.pt")
    loaded, bundle = load_model(tmp_path / "r.pt", "a tiny model", lambda b: _Tiny(**b["config"]))
    assert bundle["kind"] == "renamed" and torch.equal(loaded.lin.weight, model.lin.weight)
    torch.save({"w": 1}, tmp_path / "w.pt")
    with pytest.raises(InputError, match=rf"^{re.escape(str(tmp_path / 'w.pt'))} is not a tiny model file$"):
        load_model(tmp_path / "w.pt", "a tiny model", lambda b: _Tiny(**b["config"]))


def test_a_config_the_class_does_not_take_is_the_files_fault_and_says_how_to_fix_it(tmp_path):
    """A TypeError of the build (a setting this class does not take) is refused as the file's, as a ValueError is."""
    bundle = torch.load(_tiny_file(tmp_path)[1], weights_only=True)
    torch.save({**bundle, "config": {"d": 3, "extra": 1}}, tmp_path / "newer.pt")
    with pytest.raises(InputError, match=rf"^{re.escape(str(tmp_path / 'newer.pt'))}: .*unexpected keyword argument "
                                         r"'extra'; it was written by a kind registered in other code or by a fwdlearn "
                                         r"version this one cannot build: if it names a cell"):
        _Tiny.load(tmp_path / "newer.pt")


def test_weights_that_do_not_fit_are_refused_naming_the_kind_and_every_mismatch(tmp_path):
    bundle = torch.load(_tiny_file(tmp_path)[1], weights_only=True)
    model = {**bundle["model"], "lin.weight": torch.zeros(2, 3), "lin.bias": torch.zeros(2)}
    torch.save({**bundle, "model": model}, tmp_path / "edited.pt")
    with pytest.raises(InputError, match=rf"^the weights in {re.escape(str(tmp_path / 'edited.pt'))} do not fit the "
                                         r"tiny-test model its config describes \(Error\(s\) in loading state_dict for "
                                         r"_Tiny: size mismatch for lin\.weight: .* size mismatch for lin\.bias: .*\); "
                                         r"it was edited, or written by another fwdlearn version$"):
        _Tiny.load(tmp_path / "edited.pt")


def test_a_model_file_loads_on_the_device_asked_for(tmp_path):
    _, path = _tiny_file(tmp_path)
    loaded = _Tiny.load(path, map_location="meta")
    assert all(t.is_meta for t in [*loaded.parameters(), *loaded.buffers()])
    assert not loaded.training


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_a_model_of_one_dtype_comes_back_in_it_buffers_not_saved_included(tmp_path, dtype):
    model, path = _tiny_file(tmp_path, dtype=dtype)
    loaded = _Tiny.load(path)
    assert {t.dtype for t in [*loaded.parameters(), *loaded.buffers()]} == {dtype}
    assert torch.equal(loaded.lin.weight, model.lin.weight)


def test_a_model_of_mixed_dtypes_comes_back_with_each_tensor_in_its_own(tmp_path):
    """The saved buffer (bfloat16) of a model whose layer is float64 came back as the fresh build's float32."""
    torch.manual_seed(0)
    model = _Tiny()
    model.lin.double()
    model.scale = model.scale.bfloat16()
    loaded = _Tiny.load(model.save(tmp_path / "m.pt"))
    dtypes = {name: t.dtype for name, t in [*loaded.named_parameters(), *loaded.named_buffers()]}
    assert dtypes == {"lin.weight": torch.float64, "lin.bias": torch.float64, "scale": torch.bfloat16,
                      "shift": torch.float32}
    assert torch.equal(loaded.lin.weight, model.lin.weight)


# optim ----------------------------------------------------------------------------------------------------------------
