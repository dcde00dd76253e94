"""The sequence package's registries of recurrent cells and model kinds, and the model names built from them, listable
without importing torch.

The built-in entries are ``"module:attribute"`` strings (:class:`~fwdlearn.registry.Registry`), imported on first
:meth:`~fwdlearn.registry.Registry.get`; so ``fwdlearn seq train --help`` lists the names, a registered entry
included, without loading torch.

* :data:`RECURRENT_CELLS`: cell name -> :class:`~fwdlearn.sequences.nn.cells.RecurrentCell` instance (``tanh``,
  ``gru``, ``lstm``, ``linear``). A new cell is one ``RecurrentCell`` subclass and
  ``RECURRENT_CELLS.register("name", MyCell())``.
* :data:`LM_KINDS`: model kind (a config's ``kind``) -> :class:`~fwdlearn.sequences.nn.language_model.LanguageModel`
  class (``recurrent``, ``conv``, ``transformer``).
* :data:`MODEL_NAMES`: the names of ``fwdlearn seq train --model`` and
  :func:`~fwdlearn.sequences.nn.language_model.make_language_model`, read from both registries: every cell (a
  recurrent model of that cell), then every other model kind.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from fwdlearn.registry import Registry

__all__ = ["RECURRENT_CELLS", "LM_KINDS", "MODEL_NAMES"]

#: cell name -> :class:`~fwdlearn.sequences.nn.cells.RecurrentCell`
RECURRENT_CELLS = Registry("cell", {
    "tanh": "fwdlearn.sequences.nn.cells:TANH_CELL",
    "gru": "fwdlearn.sequences.nn.cells:GRU_CELL",
    "lstm": "fwdlearn.sequences.nn.cells:LSTM_CELL",
    "linear": "fwdlearn.sequences.nn.cells:LINEAR_CELL",
})

#: model kind (``config.kind``) -> :class:`~fwdlearn.sequences.nn.language_model.LanguageModel` class
LM_KINDS = Registry("language model kind", {
    "recurrent": "fwdlearn.sequences.nn.recurrent:RecurrentLM",
    "conv": "fwdlearn.sequences.nn.conv:CausalConvLM",
    "transformer": "fwdlearn.sequences.nn.transformer:TransformerLM",
})

_RECURRENT = "recurrent"  # the kind a cell's name stands for


class _ModelNames(Mapping):
    """Model name -> ``(kind, fixed options)``: a cell of :data:`RECURRENT_CELLS` -> ``("recurrent", {"cell": name})``,
    any other kind of :data:`LM_KINDS` -> ``(kind, {})``; read from the registries at each use."""

    def __getitem__(self, name: str) -> tuple[str, dict[str, Any]]:
        if name in RECURRENT_CELLS:
            return _RECURRENT, {"cell": name}
        if name in LM_KINDS and name != _RECURRENT:
            return name, {}
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        yield from RECURRENT_CELLS
        yield from (kind for kind in LM_KINDS if kind != _RECURRENT and kind not in RECURRENT_CELLS)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"MODEL_NAMES({', '.join(self)})"


#: the model names of ``fwdlearn seq train --model`` and ``make_language_model``: name -> (kind, fixed options)
MODEL_NAMES: Mapping[str, tuple[str, dict[str, Any]]] = _ModelNames()
