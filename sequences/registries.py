"""The sequence package's registries of recurrent cells and model kinds, and the model names built from them, listable
without importing torch.

The built-in entries are ``"module:attribute"`` strings (:class:`~fwdlearn.registry.Registry`), imported on first
:meth:`~fwdlearn.registry.Registry.get`; so ``fwdlearn seq train --help`` lists the names, a registered entry
included, without loading torch.

* :data:`RECURRENT_CELLS`: cell name -> :class:`~fwdlearn.sequences.nn.cells.RecurrentCell` instance (``tanh``,
  ``gru``, ``lstm``, ``linear``). A new cell is one ``RecurrentCell`` subclass and
  ``RECURRENT_CELLS.register("name", MyCell())`` (an instance: a class is refused).
* :data:`LM_KINDS`: model kind (a config's ``kind``) -> :class:`~fwdlearn.sequences.nn.language_model.LanguageModel`
  class (``recurrent``, ``conv``, ``transformer``). The cells and the kinds share the model names, so a cell is not
  registered under another kind's name, nor a kind under a cell's (either would hide the other).
* :data:`MODEL_NAMES`: the names of ``fwdlearn seq train --model`` and
  :func:`~fwdlearn.sequences.nn.language_model.make_language_model`, read from both registries: every cell (a
  recurrent model of that cell), then every other model kind.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from fwdlearn.registry import Registry, instance_entry

__all__ = ["RECURRENT_CELLS", "LM_KINDS", "MODEL_NAMES"]

_RECURRENT = "recurrent"  # the kind a cell's name stands for
_CELL_ENTRY = instance_entry("RECURRENT_CELLS", "cell")


def _check_cell(name: str, cell: Any) -> None:
    """A cell is an instance, and its name is no other model kind's: ``--model conv`` would build a recurrent model of
    that cell, and the causal conv model could no longer be named."""
    _CELL_ENTRY(name, cell)
    if name != _RECURRENT and name in LM_KINDS:
        raise ValueError(f"the cell name {name!r} is already a language model kind's (LM_KINDS: "
                         f"{', '.join(LM_KINDS)}): the model name {name!r} would then mean the recurrent model of the "
                         f"cell and hide that kind (seq train --model {name}, make_language_model({name!r})); choose "
                         "another name")


def _check_kind(name: str, cls: Any) -> None:
    """A model kind's name is no cell's: the cell's recurrent model would hide it (see :data:`MODEL_NAMES`)."""
    if name in RECURRENT_CELLS:
        raise ValueError(f"the language model kind name {name!r} is already a cell's (RECURRENT_CELLS: "
                         f"{', '.join(RECURRENT_CELLS)}): the model name {name!r} would keep meaning the recurrent "
                         f"model of that cell and hide the kind (seq train --model {name}, "
                         f"make_language_model({name!r})); choose another name")


#: cell name -> :class:`~fwdlearn.sequences.nn.cells.RecurrentCell`
RECURRENT_CELLS = Registry("cell", {
    "tanh": "fwdlearn.sequences.nn.cells:TANH_CELL",
    "gru": "fwdlearn.sequences.nn.cells:GRU_CELL",
    "lstm": "fwdlearn.sequences.nn.cells:LSTM_CELL",
    "linear": "fwdlearn.sequences.nn.cells:LINEAR_CELL",
}, check=_check_cell)

#: model kind (``config.kind``) -> :class:`~fwdlearn.sequences.nn.language_model.LanguageModel` class
LM_KINDS = Registry("language model kind", {
    "recurrent": "fwdlearn.sequences.nn.recurrent:RecurrentLM",
    "conv": "fwdlearn.sequences.nn.conv:CausalConvLM",
    "transformer": "fwdlearn.sequences.nn.transformer:TransformerLM",
}, check=_check_kind)


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
