"""fwdlearn: train graph and sequence models without end-to-end backpropagation.

The rule core has two mechanisms:

* :mod:`fwdlearn.local` -- local objectives (each layer has its own loss);
* :mod:`fwdlearn.feedback` -- synthetic feedback (DFA across depth, DSF across time).

Domain packages :mod:`fwdlearn.graphs` and :mod:`fwdlearn.sequences` adapt them to
data; :mod:`fwdlearn.diagnostics` measures influence, alignment and cost.
"""

__version__ = "0.1.0"
