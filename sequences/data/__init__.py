"""Sequence data: text corpora (load_text, Vocabulary, StreamBatcher) and synthetic long-range tasks."""
