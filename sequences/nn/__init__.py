"""Sequence models and how each time rule gets the state gradient (bptt, tbptt:k, ft-bptt, dsf)."""
