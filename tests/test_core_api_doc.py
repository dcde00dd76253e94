"""docs/core-api.md names the core's public API: every name it gives under a module is there and in that module's
``__all__`` (``from fwdlearn.errors import *`` gave neither ``check_seed`` nor ``check_representable``), and every
``__all__`` of the core names only what exists."""

import importlib

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
    "fwdlearn.fit": "seed_everything progress evaluating training_mode keeps_mode frozen check_finite non_finite_entry "
                    "Trainer FitResult DivergenceError NonFiniteLossError TrainingInterrupted Stateful "
                    "load_optimizer_state Carried Checkpointing load_device load_torch read_checkpoint "
                    "tensor_fingerprint",
    "fwdlearn.registry": "Registry lazy_exports",
    "fwdlearn.metrics": "masked_accuracy roc_auc average_ranks",
    "fwdlearn.records": "RunRecord refuse_overwrite finite_json to_jsonable plain_json write_json library_versions",
    "fwdlearn.errors": "UsageError InputError DivergenceError NonFiniteLossError TrainingInterrupted exit_status "
                       "check_range check_int check_finite_tensor is_integer check_bool check_seed check_representable "
                       "reading alike_on_every_process found_by_every_process warn FwdlearnWarning",
    "fwdlearn.files": "atomic_write check_writable remove_stale_tmp refuse_overwrite",
    "fwdlearn.model_files": "save_model load_model ModelFile FILE_KINDS what_file",
    "fwdlearn.runs": "RunOptions run_outputs RunPaths resolve_device start_run fresh_stem check_plot_format "
                     "resumable_checkpoint",
    "fwdlearn.config": "add_dataclass_arguments validate_config dataclass_from_args flag_name as_flags",
    "fwdlearn.data": "data_dir cache_dir data_path DataNotFoundError require_data_dir loader_log",
    "fwdlearn.diagnostics.influence": "distance_totals influence_curve influence_range DEAD_SEED jacobian_l1",
    "fwdlearn.diagnostics.alignment": "cosine angle_degrees per_sample_cosine gradient_alignment Alignment "
                                      "feedback_alignment",
    "fwdlearn.diagnostics.plots": "plot_alignment plot_influence_curves plot_speedups",
    "fwdlearn.diagnostics.cost": "measure_cost Cost saved_bytes CostReport WithCost",
    "fwdlearn.distributed": "init_from_env is_distributed rank world_size shard_bounds gather_rows raise_together",
    "fwdlearn.cli": "ENTRY_POINTS Entry Command main",
    "fwdlearn.reporting": "write_results result_paths markdown_table format_value mean_std invoked_command ratio "
                          "ratio_row",
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
