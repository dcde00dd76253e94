"""docs/core-api.md names the core's public API: every name it gives under a module is there and in that module's
``__all__`` (``from fwdlearn.errors import *`` gave neither ``check_seed`` nor ``check_representable``), and every
``__all__`` of the core names only what exists. The calls it writes out, ``name(arg, key=default)``, name the
parameters the code has, with the defaults the code has (``format_value(v)`` was ``format_value(value)``)."""

import ast
import dataclasses
import importlib
import inspect
import re
from pathlib import Path

import pytest

#: module -> the public names docs/core-api.md gives under it
DOCUMENTED = {
    "fwdlearn.local": "goodness ff_probability ff_loss symba_loss prototype_logits prototype_cross_entropy",
    "fwdlearn.feedback": "feedback_matrix make_feedback diagonal_feedback spectral_radius DirectFeedback FeedbackProbe "
                         "FEEDBACK_MAKERS reverse_scan time_feedback",
    "fwdlearn.rules": "BP DFA Local Shallow BPTT TBPTT FTBPTT DSF Rule parse_rule ALIASES vocabulary register_depth_rule "
                      "register_time_rule register_alias FEEDBACK_KINDS DFA_FEEDBACKS DSF_FEEDBACKS",
    "fwdlearn.schedules": "end_to_end_step layerwise_forward LocalOptimizers local_step greedy_layerwise LayerJob",
    "fwdlearn.optim": "OptimizerSettings make_optimizer make_scheduler lr_factor load_scheduler",
    "fwdlearn.fit": "seed_everything rng_state set_rng_state progress evaluating training_mode keeps_mode frozen check_finite non_finite_entry "
                    "Trainer FitResult DivergenceError NonFiniteLossError TrainingInterrupted Stateful "
                    "load_optimizer_state Carried Checkpointing load_device load_torch read_checkpoint "
                    "is_checkpoint tensor_fingerprint compact_repr NUMPY_FIX check_fingerprint "
                    "CheckpointMismatch AnotherKindOfRun",
    "fwdlearn.registry": "Registry lazy_exports did_you_mean unknown",
    "fwdlearn.metrics": "masked_accuracy roc_auc average_ranks",
    "fwdlearn.records": "RunRecord refuse_overwrite finite_json to_jsonable plain_json json_text write_json "
                        "library_versions read_record SavedRecord",
    "fwdlearn.errors": "UsageError InputError DivergenceError NonFiniteLossError TrainingInterrupted exit_status "
                       "check_range check_int check_finite_tensor is_integer check_bool check_seed check_representable "
                       "reading alike_on_every_process found_by_every_process warn FwdlearnWarning check_not_meta "
                       "on_meta check_model_values OncePerCause",
    "fwdlearn.files": "atomic_write atomic_write_all finish_renames check_writable remove_stale_tmp refuse_overwrite "
                      "writing save_torch describe_os_error removed_on_failure remove_quietly",
    "fwdlearn.model_files": "save_model load_model ModelFile FILE_KINDS what_file",
    "fwdlearn.runs": "RunOptions run_outputs RunPaths resolve_device start_run fresh_stem check_plot_format "
                     "resumable_checkpoint record_files",
    "fwdlearn.config": "add_dataclass_arguments validate_config dataclass_from_args flag_name as_flags",
    "fwdlearn.data": "data_dir cache_dir data_path DataNotFoundError require_data_dir loader_log "
                     "weights_only_loads",
    "fwdlearn.diagnostics.influence": "distance_totals influence_curve influence_range DEAD_SEED jacobian_l1 "
                                      "refuse_inference_mode",
    "fwdlearn.diagnostics.alignment": "cosine angle_degrees per_sample_cosine gradient_alignment Alignment "
                                      "feedback_alignment",
    "fwdlearn.diagnostics.plots": "plot_alignment plot_influence_curves plot_speedups",
    "fwdlearn.diagnostics.cost": "measure_cost Cost saved_bytes CostReport WithCost",
    "fwdlearn.distributed": "init_from_env is_distributed rank world_size shard_bounds gather_rows raise_together",
    "fwdlearn.cli": "ENTRY_POINTS Entry Command main",
    "fwdlearn.reporting": "write_results result_texts result_paths markdown_table format_value mean_std "
                          "invoked_command invoked_as describe_resume ratio ratio_row",
    "fwdlearn.bench": "BenchRun run_parts shown apart ROUNDING distinct_names check_rules_build",
}


@pytest.mark.parametrize("module", sorted(DOCUMENTED))
def test_every_documented_name_is_exported(module):
    mod = importlib.import_module(module)
    names = DOCUMENTED[module].split()
    assert [name for name in names if not hasattr(mod, name)] == []
    assert [name for name in names if name not in mod.__all__] == [], f"{module}.__all__ lacks documented names"
    assert [name for name in mod.__all__ if not hasattr(mod, name)] == [], f"{module}.__all__ names missing objects"
    star: dict = {}
    exec(f"from {module} import *", star)  # (what a user's star import gets)
    assert set(names) <= set(star)


CORE_API = (Path(__file__).resolve().parents[1] / "docs" / "core-api.md").read_text()


def _documented_calls() -> list[tuple[str, str, str]]:
    """``(module, name, parameter list)`` of every ``name(...)`` that opens a code span in a section of core-api.md
    about a module of :data:`DOCUMENTED` (``## fwdlearn.fit — ...``), the name found in that module or a submodule
    that section covers (``fwdlearn.diagnostics``: ``influence``, ``cost``, ...)."""
    calls = []
    for section in re.split(r"^## ", CORE_API, flags=re.M)[1:]:
        heading = section.split()[0]
        modules = [m for m in DOCUMENTED if m == heading or m.startswith(heading + ".")]
        for span in re.findall(r"`([^`]+)`", section):
            match = re.match(r"[A-Za-z_][\w.]*\(", span)
            if not match:
                continue
            depth, end = 0, None
            for i in range(match.end() - 1, len(span)):  # the parenthesis that closes the call
                depth += {"(": 1, ")": -1}.get(span[i], 0)
                if depth == 0:
                    end = i
                    break
            if end is None:
                continue
            parts = span[:match.end() - 1].split(".")
            found = [(module, ".".join(parts[k:])) for k in range(len(parts)) for module in modules
                     if callable(_resolve(module, ".".join(parts[k:])))]  # (influence.jacobian_l1: its module)
            if found:
                calls.append((*found[0], span[match.end():end]))
    return calls


def _resolve(module: str, name: str):
    obj = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part, None)
    return obj


def _parameters(text: str) -> list[str]:
    """The top-level comma-separated items of a parameter list."""
    items, depth, item = [], 0, ""
    for char in text:
        depth += {"(": 1, "[": 1, "{": 1, ")": -1, "]": -1, "}": -1}.get(char, 0)
        if char == "," and depth == 0:
            items.append(item.strip())
            item = ""
        else:
            item += char
    return [item for item in [*items, item.strip()] if item]


def _default(obj, parameter: inspect.Parameter):
    """A parameter's default; a dataclass field's ``default_factory()`` for a factory."""
    if inspect.isclass(obj) and dataclasses.is_dataclass(obj):
        field = {f.name: f for f in dataclasses.fields(obj)}.get(parameter.name)
        if field is not None and field.default_factory is not dataclasses.MISSING:
            return field.default_factory()
    return parameter.default


def test_documented_signatures_match_the_code():
    calls = _documented_calls()
    assert len(calls) >= 60
    wrong = []
    for module, name, text in calls:
        obj = _resolve(module, name)
        try:
            parameters = inspect.signature(obj).parameters
        except (TypeError, ValueError):  # (a builtin without a signature)
            continue
        takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
        for item in _parameters(text):
            key, _, value = item.partition("=")
            key = key.split(":")[0].strip()
            if not re.fullmatch(r"[A-Za-z_]\w*", key):  # (*args, ..., an expression)
                continue
            if key not in parameters:
                if not takes_any:
                    wrong.append(f"{name}({key}): no such parameter in {module}")
                continue
            try:  # a literal default, or the first of several spellings (kind="uniform"|"gaussian")
                documented = ast.literal_eval(value.split("|")[0].strip()) if value else inspect.Parameter.empty
            except (ValueError, SyntaxError):
                continue
            actual = _default(obj, parameters[key])
            if documented is not inspect.Parameter.empty and documented != actual:
                wrong.append(f"{name}({key}={value.strip()}): the default in {module} is {actual!r}")
    assert wrong == [], "docs/core-api.md gives calls the code does not take"
