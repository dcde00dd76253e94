"""Sequence models without BPTT (DSF) or BP through depth (DFA), and lag-wise influence."""
from .influence import lag_influence
