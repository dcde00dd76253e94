"""Sequence models without BPTT (DSF) or BP through depth (DFA), and lag-wise influence."""
from .influence import lag_influence
from .datasets import (AddingProblem, CopyTask, Corpus, DelayedRecall, SequenceTask, StreamBatcher, Vocabulary,
                       load_text, make_task, random_windows)
from .recurrent import RecurrentLM
from .training_modes import TrainingMode, parse_training
