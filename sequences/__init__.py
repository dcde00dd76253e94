"""Sequence models without backprop through time (DSF) or through depth (DFA, local read-outs), and lag-wise influence.

Layout: :mod:`~fwdlearn.sequences.data` (text corpora, synthetic tasks), :mod:`~fwdlearn.sequences.nn`
(the language models and how each time rule gets its state gradient), :mod:`~fwdlearn.sequences.training`
(fit, evaluate), :mod:`~fwdlearn.sequences.influence`, :mod:`~fwdlearn.sequences.alignment`,
:mod:`~fwdlearn.sequences.registries` (the cells, model kinds and model names, listable without torch) and
:mod:`~fwdlearn.sequences.cli` (the ``fwdlearn seq|bench|influence`` commands).

The public names below are imported on first use, so ``import fwdlearn.sequences`` stays fast.
"""

from fwdlearn.registry import lazy_exports

_EXPORTS = {
    "load_text": "fwdlearn.sequences.data.text",
    "Corpus": "fwdlearn.sequences.data.text",
    "Vocabulary": "fwdlearn.sequences.data.text",
    "StreamBatcher": "fwdlearn.sequences.data.text",
    "random_windows": "fwdlearn.sequences.data.text",
    "SequenceTask": "fwdlearn.sequences.data.tasks",
    "DelayedRecall": "fwdlearn.sequences.data.tasks",
    "CopyTask": "fwdlearn.sequences.data.tasks",
    "AddingProblem": "fwdlearn.sequences.data.tasks",
    "make_task": "fwdlearn.sequences.data.tasks",
    "LanguageModel": "fwdlearn.sequences.nn.language_model",
    "load_language_model": "fwdlearn.sequences.nn.language_model",
    "RecurrentLM": "fwdlearn.sequences.nn.recurrent",
    "CausalConvLM": "fwdlearn.sequences.nn.conv",
    "TransformerLM": "fwdlearn.sequences.nn.transformer",
    "lag_influence": "fwdlearn.sequences.influence",
    "FitReport": "fwdlearn.sequences.training",  # (what a model's fit returns, as fwdlearn.graphs.FitReport)
}
__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
