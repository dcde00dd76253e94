"""Edges of fwdlearn.registry (found by mutation testing): names with spaces or capitals, lower-case registries,
lazy entries, did-you-mean, lazy exports."""

import math

import pytest


def test_a_registry_refuses_names_with_spaces_or_capitals_naming_the_fix():
    from fwdlearn.registry import Registry

    plain, lower = Registry("toy"), Registry("cell", lower_case=True)
    with pytest.raises(ValueError, match=r"^a toy's name must be a non-blank string without surrounding spaces; got "
                                         r"' Toy ': use 'Toy'$"):
        plain.register(" Toy ", 1)
    with pytest.raises(ValueError, match=r"^a cell's name must be a non-blank string without surrounding spaces and in "
                                         r"lower case; got 'Leaky': use 'leaky'$"):
        lower.register("Leaky", 1)
    with pytest.raises(ValueError, match=r"^a toy's name must be a non-blank string without surrounding spaces; got "
                                         r"'  '$"):
        plain.register("  ", 1)
    with pytest.raises(ValueError, match=r"got 3$"):
        plain.register(3, 1)
    plain.register("Toy", 1)
    assert plain.get("Toy") == 1 and "toy" not in plain and "Toy" in plain  # (not lower_case: the case counts)


def test_a_registry_checks_entries_in_both_forms_and_the_decorator_returns_its_target():
    from fwdlearn.registry import Registry

    seen = []
    registry = Registry("toy", check=lambda name, obj: seen.append((name, obj)))
    assert registry.register("one", 1) == 1

    @registry.register("two")
    def two():
        return 2

    assert seen == [("one", 1), ("two", two)] and two() == 2 and registry.get("two") is two
    refusing = Registry("toy", check=lambda name, obj: (_ for _ in ()).throw(TypeError(f"no {name}")))
    for register in (lambda: refusing.register("x", 1), lambda: refusing.register("x")(1)):
        with pytest.raises(TypeError, match="^no x$"):
            register()
    assert refusing.names() == []


def test_a_lower_case_registry_finds_and_removes_a_name_in_any_case_and_says_it_as_given():
    from fwdlearn.registry import Registry

    registry = Registry("cell", {"tanh": 1, "gru": 2, "lstm": 3}, lower_case=True)
    assert registry.names() == ["tanh", "gru", "lstm"] and list(registry) == ["tanh", "gru", "lstm"]
    assert registry.get("GRU") == 2 and "LSTM" in registry
    with pytest.raises(ValueError, match=r"^unknown cell 'Bogus'; choose one of tanh, gru, lstm$"):
        registry.get("Bogus")
    with pytest.raises(ValueError, match=r"^unknown cell 'LSMT'; choose one of tanh, gru, lstm \(did you mean "
                                         r"'lstm'\?\)$"):
        registry.get("LSMT")
    registry.unregister("TANH")
    assert registry.names() == ["gru", "lstm"] and len(registry) == 2
    assert repr(registry) == "Registry('cell': gru, lstm)"


def test_a_registry_imports_a_lazy_entry_on_first_use_and_keeps_it(monkeypatch):
    import sys
    import types

    from fwdlearn.registry import Registry

    module = types.ModuleType("m21_entries")
    module.Toy = object()
    monkeypatch.setitem(sys.modules, "m21_entries", module)
    registry = Registry("toy", {"toy": "m21_entries:Toy"})
    first = registry.get("toy")
    assert first is module.Toy
    monkeypatch.delitem(sys.modules, "m21_entries")  # (the entry read: no second import)
    assert registry.get("toy") is first


def test_did_you_mean_prefers_the_same_word_in_other_capitals_or_spaces_and_says_nothing_for_itself():
    from fwdlearn.registry import did_you_mean, unknown

    assert did_you_mean(" gru ", ["tanh", "gru"]) == " (did you mean 'gru'?)"
    assert did_you_mean("   a   ", ["a", "b"]) == " (did you mean 'a'?)"  # (too far for difflib with its spaces)
    assert did_you_mean("GRU", ["Gru", "gru"]) == " (did you mean 'Gru'?)"  # (the first of the same word)
    assert did_you_mean("gru", ["tanh", "gru"]) == ""
    assert did_you_mean("lsmt", ["tanh", "gru", "lstm"]) == " (did you mean 'lstm'?)"
    assert did_you_mean("xyz", ["tanh", "gru", "lstm"]) == ""
    assert did_you_mean(3, ["3"]) == "" and did_you_mean(None, ["none"]) == ""
    assert unknown("cell", "Tanh", ["tanh", "gru"]) == ("unknown cell 'Tanh'; choose one of tanh, gru (did you mean "
                                                        "'tanh'?)")
    assert unknown("cell", 3, ["tanh"]) == "unknown cell 3; choose one of tanh"


def test_instance_entry_refuses_a_class_but_takes_a_callable_instance():
    from fwdlearn.registry import instance_entry

    check = instance_entry("CELLS", "cell")
    check("f", len)
    check("g", lambda x: x)
    with pytest.raises(TypeError, match=r"^a cell is registered as an instance, not as its class: "
                                        r"CELLS\.register\('d', dict\(\)\) \(the decorator form registers the class "
                                        r"itself\)$"):
        check("d", dict)


def test_lazy_exports_import_on_first_use_keep_the_value_and_list_every_name(monkeypatch):
    import sys
    import types

    from fwdlearn.registry import lazy_exports

    package = types.ModuleType("m21_package")
    package.own = 1
    monkeypatch.setitem(sys.modules, "m21_package", package)
    getattr_, dir_ = lazy_exports("m21_package", {"pi": "math"})
    assert "pi" not in package.__dict__ and "own" in dir_() and "pi" in dir_()
    assert dir_() == sorted(dir_())
    assert getattr_("pi") == math.pi and package.__dict__["pi"] == math.pi  # (kept: the next read does not import)
    with pytest.raises(AttributeError, match=r"^module 'm21_package' has no attribute 'tau'$"):
        getattr_("tau")
