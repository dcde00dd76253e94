"""Graph learning without backpropagation (ForwardGNN) and hop-wise influence."""
from .influence import hop_influence
