r"""Text corpora for language models: loading, vocabularies and batching.

* :func:`load_text` reads a corpus through Hugging Face ``datasets`` (the ``text``
  builder on local files, cached under :func:`fwdlearn.data.cache_dir`) and returns a
  :class:`Corpus`: token-id tensors per split and a :class:`Vocabulary` that
  round-trips (``decode(encode(s)) == s``) and is saved with checkpoints.
* :class:`StreamBatcher` cuts a token stream into :math:`B` parallel streams and walks
  them in windows of :math:`T` tokens, so the hidden state can be carried from one
  batch to the next; :func:`random_windows` draws independent windows.
(Synthetic long-range tasks live in :mod:`fwdlearn.sequences.data.tasks`.)

Language-model batches are next-token pairs: for a window :math:`w_{s}, \dots, w_{s+T}`
the input is :math:`x_t = w_{s+t}` and the target :math:`y_t = w_{s+t+1}`,
:math:`t = 0..T-1`.
"""

from __future__ import annotations

import codecs
import errno
import glob
import hashlib
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from fwdlearn.data import DataNotFoundError, cache_dir, data_dir, data_path
from fwdlearn.errors import UsageError, check_int, check_not_meta, check_range, is_integer
from fwdlearn.files import NO_ROOM, taking_turns
from fwdlearn.fit import generator_device

__all__ = [
    "Vocabulary",
    "Corpus",
    "load_text",
    "read_corpus",
    "corpus_files",
    "check_splits",
    "KNOWN_CORPORA",
    "StreamBatcher",
    "random_windows",
]

KNOWN_CORPORA = ("tinyshakespeare", "wikitext-2")
EOS = "<eos>"
#: WikiText's token for the words it replaced (a word-level prompt may spell an unknown word with it)
UNKNOWN_WORD = "<unk>"


# --------------------------------------------------------------------------- vocabulary


class Vocabulary:
    r"""A bijection between tokens (characters or words) and ids ``0..V-1``.

    Characters decode by concatenation, words by joining with a space (``<eos>`` becomes
    a newline), so ``decode(encode(text)) == text`` for character vocabularies and for
    word text that is whitespace-normalised with one line per ``<eos>``.
    """

    def __init__(self, tokens: Sequence[str], level: str = "char") -> None:
        if level not in ("char", "word"):
            raise ValueError(f"level must be 'char' or 'word', got {level!r}")
        if len(set(tokens)) != len(tokens):
            raise ValueError("Vocabulary tokens must be unique")
        if not tokens:
            raise ValueError("Vocabulary needs at least one token; the text is empty")
        self.tokens = list(tokens)
        self.level = level
        self.index = {t: i for i, t in enumerate(self.tokens)}

    @classmethod
    def build(cls, texts: str | Sequence[str], level: str = "char") -> "Vocabulary":
        """The sorted set of tokens of ``texts`` (texts, or one text)."""
        symbols: set[str] = set()
        for text in [texts] if isinstance(texts, str) else texts:  # (one text was read as texts of one character
            # each: at word level a vocabulary of its characters)
            symbols.update(tokenize(text, level))
        return cls(sorted(symbols), level)

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, text: str | Sequence[str], open_end: bool = False) -> Tensor:
        """Token ids (``int64``) of ``text`` (a string, tokenised at this level, or a token list); ``open_end``: see
        :func:`tokenize`."""
        pieces = tokenize(text, self.level, open_end) if isinstance(text, str) else list(text)
        unknown = self._unknown(pieces)
        if unknown:  # (every one named: the first alone took one fix per token)
            raise ValueError(f"{self.name_unknown(unknown)}; build the vocabulary from text that contains them")
        return torch.tensor([self.index[p] for p in pieces], dtype=torch.long)

    def unknown(self, text: str | Sequence[str], open_end: bool = False) -> list[str]:
        """The distinct tokens of ``text`` (read as :meth:`encode` reads it) that the vocabulary lacks, sorted."""
        return self._unknown(tokenize(text, self.level, open_end) if isinstance(text, str) else list(text))

    def _unknown(self, pieces: list[str]) -> list[str]:
        return sorted({p for p in pieces if p not in self.index}, key=str)

    def name_unknown(self, unknown: Sequence[str]) -> str:
        """``"token 'x' is not in the vocabulary (V char tokens)"`` for :meth:`unknown`'s tokens (up to 20 named)."""
        named = ", ".join(map(repr, unknown[:20])) + (f" and {len(unknown) - 20} more" if len(unknown) > 20 else "")
        return (f"{'token' if len(unknown) == 1 else 'tokens'} {named} {'is' if len(unknown) == 1 else 'are'} not in "
                f"the vocabulary ({len(self)} {self.level} tokens)")

    def decode(self, ids: Tensor | Sequence[int]) -> str:
        """The text of ``ids``: one sequence of integer ids (a 1-D tensor or a list; one id alone is its token's text;
        decode a batch row by row)."""
        if isinstance(ids, Tensor) and ids.dim() > 1:  # (a [1, T] batch: "unhashable type: 'list'")
            raise ValueError(f"decode reads one sequence of ids; got a tensor of shape {tuple(ids.shape)}: decode "
                             "each row (vocab.decode(ids[0]))")
        check_not_meta("ids", ids, "decode reads the ids", "decode ids made on the CPU or a GPU")  # (torch's
        # "Cannot copy out of meta tensor" named nothing)
        ids = ids.reshape(-1).tolist() if isinstance(ids, Tensor) else [ids] if is_integer(ids) else list(ids)  # (one
        # id alone, as a 0-d tensor of it: "'int' object is not iterable")
        plain = all(type(i) is int for i in ids)  # (the common case, checked at C speed; else one by one)
        if not plain:
            if any(not is_integer(i) and (isinstance(i, (list, tuple)) or getattr(i, "ndim", 0) > 0) for i in ids):
                raise ValueError("decode reads one sequence of ids; got a nested sequence: decode each row "
                                 "(vocab.decode(ids[0]))")
            other = [i for i in ids if not is_integer(i)]
            if other:  # (0.0 and True were said to lie outside [0, V - 1])
                raise TypeError(f"decode reads integer token ids; got {other[0]!r} ({type(other[0]).__name__}): "
                                "pass the ids as ints (ids.long() for a float tensor of whole numbers)")
        outside = [] if plain and (not ids or (min(ids) >= 0 and max(ids) < len(self))) else \
            sorted({i for i in ids if not 0 <= i < len(self)}, key=str)
        if outside:  # (a negative id decoded as a token from the end of the list)
            raise ValueError(f"ids {outside[:10]} are outside this vocabulary's [0, {len(self) - 1}]: decode ids the "
                             "vocabulary encoded (or a model of its size drew)")
        pieces = [self.tokens[i] for i in ids]
        if self.level == "char":
            return "".join(pieces)
        text = " ".join(pieces)
        return text.replace(f" {EOS} ", "\n").replace(f" {EOS}", "\n").replace(f"{EOS} ", "\n").replace(EOS, "\n")

    def state_dict(self) -> dict[str, Any]:
        """``{"tokens", "level"}``: what a saved model keeps of its vocabulary (:meth:`from_state_dict` reads it)."""
        return {"tokens": list(self.tokens), "level": self.level}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> "Vocabulary":
        """The vocabulary :meth:`state_dict` describes."""
        return cls(state["tokens"], state["level"])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.tokens == other.tokens and self.level == other.level

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} {self.level} tokens)"


def tokenize(text: str, level: str, open_end: bool = False) -> list[str]:
    """Characters, or words with ``<eos>`` at the end of every line (the WikiText convention); with ``open_end`` a
    last line without its newline stays open (a prompt to continue), without ``<eos>``."""
    if level == "char":
        return list(text)
    if level == "word":
        out: list[str] = []
        for line in text.split("\n"):
            out.extend(line.split())
            out.append(EOS)
        if text.endswith("\n") or open_end:
            out.pop()  # the final newline ends the last line (no empty line after it), or the last line is open
        return out
    raise ValueError(f"level must be 'char' or 'word', got {level!r}")


# --------------------------------------------------------------------------- corpora


@dataclass
class Corpus:
    """Token ids per split and their vocabulary.

    Attributes:
        name: what was loaded.
        splits: ``{"train": ids, "validation": ids, "test": ids}`` (those available), 1-D ``int64``.
        vocab: the :class:`Vocabulary` (built from every loaded split, so every id decodes).
        level: ``"char"`` or ``"word"``.
        files: the files read.
        fingerprint: sha256 of the files' bytes and of how they were cut into tokens and splits (level,
            limit, train fraction): equal fingerprints mean equal token streams.
    """

    name: str
    splits: dict[str, Tensor]
    vocab: Vocabulary
    level: str = "char"
    files: list[str] = field(default_factory=list)
    fingerprint: str = ""

    @property
    def vocab_size(self) -> int:
        """The number of tokens of :attr:`vocab` (what a model of this corpus is built with)."""
        return len(self.vocab)

    def split(self, name: str) -> Tensor:
        """The token ids of split ``name``, with a clear error when it is missing."""
        if name not in self.splits:
            ordered = _ordered(self.splits)
            example = (f" (e.g. --train-split {ordered[0]} --valid-split {ordered[1]}: train on one, select the model "
                       f"on another; in Python, corpus.split({ordered[0]!r}) and corpus.split({ordered[1]!r}))"
                       if len(ordered) > 1 else f" (in Python, corpus.split({ordered[0]!r}))")
            raise UsageError(f"corpus {self.name!r} has no {name!r} split; available: {', '.join(ordered)}. "
                             f"Pick one of those{example}")
        return self.splits[name]

    @property
    def train(self) -> Tensor:
        """``split("train")``."""
        return self.split("train")

    @property
    def validation(self) -> Tensor:
        """``split("validation")``."""
        return self.split("validation")

    @property
    def test(self) -> Tensor:
        """``split("test")`` (a corpus without one, Tiny Shakespeare's: the error naming the splits it has)."""
        return self.split("test")

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={v.numel():,}" for k, v in self.splits.items())
        return f"Corpus({self.name!r}, {self.level}, vocab={self.vocab_size}, {sizes})"


_SPLIT_NAMES = {"train": "train", "valid": "validation", "validation": "validation", "val": "validation",
                "dev": "validation", "test": "test"}  # (dev: as HF datasets reads a file's split from its name)
#: the suffixes of a corpus folder's split files ("": none); other files (test_results.json, train.py) are not text
_TEXT_SUFFIXES = (".txt", ".tokens", ".raw", "")


def _ordered(splits: Sequence[str]) -> list[str]:
    """``splits`` in the order train, validation, test (then any other)."""
    usual = ("train", "validation", "test")
    return sorted(splits, key=lambda s: usual.index(s) if s in usual else len(usual))


def check_splits(corpus: Corpus, train_split: str, valid_split: str,
                 flags: tuple[str, str] = ("train_split", "valid_split")) -> None:
    """Refuse a training or validation split the corpus lacks, and one split named for both (the model would be
    selected on its own training text). The fix names only splits the corpus has; ``flags``: how the caller
    spells the two settings (``("--train-split", "--valid-split")`` for a command)."""
    available = _ordered(corpus.splits)
    train = train_split if train_split in available else available[0]
    valid = valid_split if valid_split in available and valid_split != train else \
        next((s for s in available if s != train), None)
    files = [Path(f) for f in corpus.files]
    # (more files than splits, or a file that is not this split's own: load_text's split= left the others out, and
    # the fix offered was to add a split file to the corpus folder, of a single text file too)
    if valid is None and (len(files) > 1 or len(files) == 1 and _split_of(files[0].name) != available[0]):
        fix = (f"it holds the {available[0]} split only (load_text's split= left the others out), and training "
               "needs a second one to select the model on: load the corpus without split= (every split kept)")
    elif valid is None:  # a folder of one split file
        fix = (f"it holds the {available[0]} split only, and training needs a second one to select the model on: "
               "add one to the corpus folder (train.txt, valid.txt or test.txt), or point to a single text file, "
               "which is split 90/10")
    else:
        spell = (lambda flag, split: f"{flag} {split}") if flags[0].startswith("--") else \
            (lambda flag, split: f"{flag}={split!r}")
        fix = "pass " + " ".join(spell(flag, new) for flag, old, new in zip(flags, (train_split, valid_split),
                                                                            (train, valid)) if new != old)
    for flag, split in zip(flags, (train_split, valid_split)):
        if split not in corpus.splits:
            raise UsageError(f"{flag} {split}: corpus {corpus.name!r} has no {split!r} split (it has "
                             f"{', '.join(available)}); {fix}")
    if train_split == valid_split:
        raise UsageError(f"{flags[0]} and {flags[1]} both name {train_split!r}: the model would be selected on its "
                         f"own training text; {fix}")


def _resolve(name_or_path: str) -> tuple[str, dict[str, Path], bool]:
    """``(name, {split: file}, split_90_10)`` for a known name, a file or a folder."""
    if not str(name_or_path).strip():  # (Path("") is ".": it read the current folder)
        raise ValueError(f"no corpus given ({str(name_or_path)!r}): pass a known name ({', '.join(KNOWN_CORPORA)}) or "
                         "a path to a text file / folder of .txt files")
    if name_or_path == "tinyshakespeare":
        path = data_path("tinyshakespeare", "input.txt", what="tinyshakespeare",
                         how="Copy karpathy/char-rnn's data/tinyshakespeare/input.txt there.")
        return name_or_path, {"full": path}, True
    if name_or_path in ("wikitext-2", "wikitext2"):
        folder = data_path("wikitext-2", what="wikitext-2",
                           how="Copy valid.txt and test.txt of pytorch/examples word_language_model/data/wikitext-2.")
        files = _split_files(folder)  # (as any corpus folder: valid.txt, or the release's wiki.valid.tokens)
        if not files:
            raise DataNotFoundError(f"wikitext-2: no train, valid or test file (train.txt, valid.txt, test.txt or the "
                                    f"release's wiki.train.tokens, wiki.valid.tokens, wiki.test.tokens) in {folder}")
        return "wikitext-2", files, False
    path = Path(name_or_path).expanduser()
    if not path.exists():
        hint = f" (FWDLEARN_DATA_DIR is {data_dir()})" if data_dir() else " (FWDLEARN_DATA_DIR is not set)"
        raise ValueError(f"unknown corpus {name_or_path!r}: not one of {', '.join(KNOWN_CORPORA)} and not an existing "
                         f"file or folder{hint}. Pass a known name or a path to a text file / folder of .txt files")
    if path.is_file():
        return path.name, {"full": path}, True
    if not path.is_dir():  # (a pipe, --data <(...), is read twice: once for its fingerprint, once for its text)
        raise ValueError(f"{path} is neither a file nor a folder (a pipe or a device); save the text to a file and "
                         "pass its path")
    files = _split_files(path)
    if not files:
        texts = sorted(f for f in path.iterdir() if f.is_file() and f.suffix.lower() == ".txt"
                       and not f.name.startswith("."))
        if not texts:
            raise ValueError(f"folder {path} holds no train/valid/test text files (.txt, .tokens, .raw or no suffix) "
                             "and no .txt files; point to a text file")
        if len(texts) > 1:
            raise ValueError(f"folder {path} holds {len(texts)} .txt files ({', '.join(f.name for f in texts[:4])}"
                             f"{', ...' if len(texts) > 4 else ''}) and none is named as a split; name them train / "
                             "valid / test (e.g. train.txt, wiki.valid.tokens) or point to one file")
        return path.name, {"full": texts[0]}, True
    return path.name, files, False


def _split_files(folder: Path) -> dict[str, Path]:
    """``{split: file}`` of a corpus folder's split files (see :func:`_split_of`; suffix ``.txt``, ``.tokens``,
    ``.raw`` or none; hidden, editor and backup files left out), in the order train, validation, test. A split
    file that cannot be read (a broken link, a pipe) is refused by name: skipped, the folder lacked that split and
    the fix offered was to train on another one."""
    files: dict[str, Path] = {}
    for f in sorted(folder.iterdir()):
        if f.name.startswith(".") or f.name.endswith(("~", ".swp", ".bak")):
            continue  # hidden, editor and backup files
        split = _split_of(f.name)
        if split is None or f.suffix.lower() not in _TEXT_SUFFIXES or f.is_dir():
            continue
        if not f.is_file():
            what = (f"a link to {f.readlink()}, which does not exist" if f.is_symlink() and not f.exists() else
                    "not a regular file (a pipe or a device)")
            raise ValueError(f"{f}, the {split} split of folder {folder}, is {what}; point it at the text file, or "
                             "remove it")
        if split in files:
            raise ValueError(f"folder {folder} holds two {split} files, {files[split].name} and {f.name}; keep one "
                             "(or point to a single text file)")
        files[split] = f
    return {split: files[split] for split in _ordered(files)}


def _split_of(filename: str) -> str | None:
    """The split a file of a corpus folder holds: ``train``, ``valid`` / ``validation`` / ``val`` / ``dev`` or
    ``test`` as a word of its name (words separated by ``.``, ``_``, ``-`` or spaces: ``train.txt``,
    ``wiki.valid.tokens``, ``test_part.txt``, ``dev.txt``); ``None`` otherwise."""
    words = re.split(r"[._\-\s]+", filename.lower())
    found = {_SPLIT_NAMES[w] for w in words if w in _SPLIT_NAMES}
    return found.pop() if len(found) == 1 else None


def _fingerprint(files: dict[str, Path]) -> str:
    """sha256 over every file's bytes (in split order); checks on the way that each one is UTF-8 text."""
    digest = hashlib.sha256()
    for key, path in files.items():
        decoder = codecs.getincrementaldecoder("utf-8")()
        digest.update(f"{key}\0{path.stat().st_size}\0".encode())
        offset = 0  # bytes before the block
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
                pending = len(decoder.getstate()[0])  # bytes of a character cut by the previous block's end
                try:
                    decoder.decode(block)
                except UnicodeDecodeError as error:  # (error.start counts in the pending bytes + the block)
                    at = offset - pending + error.start
                    raise ValueError(f"{path} is not UTF-8 text ({error.reason} at byte {at:,}); a corpus must be a "
                                     "UTF-8 text file") from None
                offset += len(block)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise ValueError(f"{path} is not UTF-8 text (it ends inside a character); a corpus must be a UTF-8 "
                             "text file") from None
    return digest.hexdigest()


def _read_documents(files: dict[str, Path]) -> tuple[dict[str, str], str]:
    """Each file's full text, read with the HF ``text`` builder (one document per file), and the files'
    fingerprint. HF's cache is keyed on the content (a folder per fingerprint), so a file edited in place
    is never served stale, whatever its modification time. HF reads ``data_files`` as glob patterns, so each
    path is given escaped (``glob.escape``): ``shakes[1].txt`` or ``q?.txt`` is that file, not ``shakes1.txt``
    or every ``q<x>.txt``; a path HF would rewrite is given through a link (see :func:`_hf_data_file`). Files are
    decoded as ``utf-8-sig``: a leading byte-order mark (which some editors write) is dropped, not read as a
    character; Windows (``\\r\\n``) and old Mac (``\\r``) line ends are read as ``\\n``. HF's progress bars are
    silenced while it reads, and left as they were (they stayed off for the caller's own ``datasets`` use). A build
    in the cache that cannot be read (an arrow file cut short or emptied, a ``dataset_info.json`` that is not JSON or
    describes other columns: damaged since it was written) is removed and the files read again, once, by one process at
    a time (:func:`_rebuild`)."""
    import datasets

    fingerprint = _fingerprint(files)
    cache = cache_dir("hf-datasets", fingerprint[:16])
    built = any(entry.name != _LINKS for entry in cache.iterdir())  # (before the links _hf_data_file may make)
    data_files = {k: _hf_data_file(k, v, fingerprint) for k, v in files.items()}
    bars_off = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    logging = datasets.logging
    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        try:
            texts = _load_documents(datasets, data_files, cache)
        except Exception as error:  # (a damaged build was reported as the corpus's problem, where it was named at
            if not built or _no_room(error):  # all: "cannot read c.txt as a text corpus (TypeError: can only join
                raise  # an iterable); a corpus must be a UTF-8 text file", or Arrow's "Expected to read 152 metadata
            texts = _rebuild(datasets, data_files, cache)  # bytes, but only read 44"; every later read failed alike)
    except OSError as error:  # HF's "Not enough disk space. Needed: ..." (no errno), Arrow's full disk: the cache's
        if not _no_room(error):  # problem, not the corpus's
            raise
        full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(cache))
        full.fwdlearn_writing = True  # type: ignore[attr-defined]
        raise full from error
    finally:
        logging.set_verbosity(level)
        if not bars_off:
            datasets.enable_progress_bars()
    return texts, fingerprint


#: the folder of :func:`_hf_data_file`'s links in a corpus's cache folder (not HF's build, which may be removed)
_LINKS = "links"


def _load_documents(datasets: Any, data_files: dict[str, str], cache: Path) -> dict[str, str]:
    """Each file's text, read by HF's ``text`` builder (from its build in ``cache`` when there is one)."""
    ds = datasets.load_dataset("text", data_files=data_files, sample_by="document", encoding="utf-8-sig",
                               cache_dir=str(cache))
    return {k: "".join(ds[k]["text"]) for k in data_files}


def _rebuild(datasets: Any, data_files: dict[str, str], cache: Path) -> dict[str, str]:
    """:func:`_load_documents` after the build in ``cache`` could not be read: one process at a time (a lock beside
    ``cache``, :func:`~fwdlearn.files.taking_turns`), it loads again and, when the build is still damaged, removes it
    (:func:`_remove_build`) and builds it again. A process that found the same damage meanwhile waits its turn and
    then loads the build the first one made: removing it while the first one built it again deleted that build's
    half-written files (HF's ``<build>.incomplete`` folder and its locks), and the first one failed with
    ``DatasetGenerationError`` (``FileNotFoundError: ... .incomplete/text-full-00000-00000-of-NNNNN.arrow``)."""
    with taking_turns(cache.parent / f".{cache.name}.lock"):  # (outside what _remove_build removes)
        try:
            return _load_documents(datasets, data_files, cache)
        except Exception as error:
            if _no_room(error):
                raise
        _remove_build(cache)
        return _load_documents(datasets, data_files, cache)


def _no_room(error: BaseException) -> bool:
    """Whether ``error`` is a full disk: an ``OSError`` of :data:`~fwdlearn.files.NO_ROOM`, or HF's "Not enough disk
    space" and Arrow's "No space left" (no errno)."""
    return isinstance(error, OSError) and (error.errno in NO_ROOM or any(
        sign in str(error) for sign in ("Not enough disk space", "No space left")))


def _remove_build(cache: Path) -> None:
    """Remove HF's build of a corpus from its cache folder ``cache``, every entry but the links (:data:`_LINKS`), so
    that it is built again from the files (by :func:`_rebuild`, holding the corpus's lock: one process at a time). A
    process reading it meanwhile keeps the files it opened."""
    import shutil

    for entry in cache.iterdir():
        if entry.name == _LINKS:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _hf_data_file(key: str, path: Path, fingerprint: str) -> str:
    """``path`` as a ``data_files`` entry of HF ``datasets``: absolute and glob-escaped. HF expands ``$NAME`` in a
    local path as an environment variable and reads ``::`` as its chain of URLs (``/data/$HOME.txt`` read
    ``/data/root.txt``, ``/data/a::b.txt`` was "Unable to find" though it exists), so such a path is given as a link
    to it of a plain name (``key``) in the cache folder of the files' ``fingerprint``."""
    absolute = str(path.absolute())
    if "$" not in absolute and "::" not in absolute:
        return glob.escape(absolute)
    link = cache_dir("hf-datasets", fingerprint[:16], _LINKS) / key
    staged = link.with_name(f".{key}.{os.getpid()}")  # (made beside it, then moved: processes reading at once)
    try:
        staged.unlink(missing_ok=True)
        staged.symlink_to(absolute)
        os.replace(staged, link)
    except OSError as error:
        raise ValueError(f"{path}: Hugging Face datasets, which reads corpora, takes '$NAME' in a path for an "
                         "environment variable and '::' for a chain of URLs, and no link to the file could be made "
                         f"in the cache ({error.strerror or error}); rename the file or folder without them") from None
    return glob.escape(str(link))


def load_text(name_or_path: str, level: str = "char", split: str | Sequence[str] | None = None,
              limit: int | None = None, train_fraction: float = 0.9) -> Corpus:
    r"""Load a text corpus as token ids.

    Args:
        name_or_path: ``"tinyshakespeare"`` (``<FWDLEARN_DATA_DIR>/tinyshakespeare/input.txt``, first 90%
            train, last 10% validation), ``"wikitext-2"`` (``<FWDLEARN_DATA_DIR>/wikitext-2`` read as a corpus
            folder: ``valid.txt`` / ``test.txt``, or the release's ``wiki.valid.tokens`` / ``wiki.test.tokens``, as
            the ``validation`` / ``test`` splits, and a train file if there is one), a text file (split 90/10 like
            tinyshakespeare) or a folder whose files name their split as a word (``train.txt``,
            ``wiki.valid.tokens``, ``test_part.txt``, ``dev.txt``; a folder of one plain ``.txt`` file is split
            90/10).
        level: ``"char"`` or ``"word"`` (words split on whitespace, ``<eos>`` per line).
        split: keep only this split (or these splits); default all available.
        limit: keep only the first ``limit`` characters of every file (quick tests); at word level only the whole
            words among them (the text is cut at the last whitespace, and a line cut short gets no ``<eos>``), so
            the tokens kept are the first tokens of the whole file.
        train_fraction: the train share of a single-file corpus (``0 < train_fraction < 1``, both splits
            non-empty), in tokens: the text is tokenised once and its tokens cut, so the train tokens followed by
            the validation tokens are the whole text's tokens (no word is cut in two, no ``<eos>`` is added).

    Returns:
        A :class:`Corpus`.
    """
    return _load_text(name_or_path, level, split, limit, train_fraction)


def _load_text(name_or_path: str, level: str = "char", split: str | Sequence[str] | None = None,
               limit: int | None = None, train_fraction: float = 0.9, limit_name: str = "limit") -> Corpus:
    """:func:`load_text`, its refusals of a ``limit`` too short naming it ``limit_name`` (``--limit`` for the
    commands, :func:`read_corpus`)."""
    if level not in ("char", "word"):
        raise ValueError(f"level must be 'char' or 'word', got {level!r}")
    if limit is not None:
        check_int("limit", limit, 1, " (characters read of every file; None: all)")
    check_range("train_fraction", train_fraction)
    if not 0 < train_fraction < 1:
        raise UsageError(f"train_fraction must lie strictly between 0 and 1 (the train share of a single-file corpus; "
                         f"the rest is the validation split), got {train_fraction}")
    name, files, split_single = _resolve(name_or_path)
    texts, fingerprint = _read_documents(files)
    tokens: dict[str, list[str]] = {}
    cut_short = {key: limit is not None and limit < len(text) for key, text in texts.items()}
    for key, text in texts.items():
        head = _head(text, limit, level)
        if not head.strip():
            raise ValueError(f"{files[key]} is empty; a corpus needs text" if not text else
                             f"{files[key]} is empty but for whitespace ({len(text):,} characters); a corpus needs text"
                             if not text.strip() else
                             f"{files[key]}: its first {limit} characters ({limit_name}) hold "
                             f"{'only whitespace' if level == 'char' else 'no whole word'}; raise {limit_name}")
        tokens[key] = tokenize(head, level, open_end=len(head) < len(text))  # a line cut short is not ended
    if split_single:
        whole = tokens.pop("full")
        cut = int(len(whole) * train_fraction)  # in tokens: at char level, in characters
        if not 0 < cut < len(whole):
            empty, fix = ("train", "raise") if cut == 0 else ("validation", "lower")
            more = f"raise {limit_name}" if cut_short["full"] else "give a longer text"  # (a limit cut the text short)
            if len(whole) < 2:  # (no train_fraction splits one token)
                where = (f"its first {limit} character{'s' * (limit != 1)} ({limit_name}) hold" if cut_short["full"]
                         else "it holds")
                raise UsageError(f"{files['full']}: {where} one {level} token, too few for a train and a validation "
                                 f"split; {more}")
            raise UsageError(f"train_fraction {train_fraction} of the {len(whole)} {level} tokens of {files['full']} "
                             f"leaves the {empty} split empty; {fix} train_fraction or {more}")
        tokens = {"train": whole[:cut], "validation": whole[cut:]}
    vocab = Vocabulary(sorted(set().union(*tokens.values())), level)
    splits = {k: vocab.encode(v) for k, v in tokens.items()}
    if split is not None:
        wanted = [split] if isinstance(split, str) else list(split)
        wanted = [_SPLIT_NAMES.get(w, w) for w in wanted]
        missing = [w for w in wanted if w not in splits]
        if missing or not wanted:  # (a ValueError: a KeyError's message is printed in quotes)
            what = f"corpus {name!r} has no split {missing[0]!r}" if missing else "split=[] keeps no split"
            raise ValueError(f"{what}; available: {', '.join(splits)}")
        splits = {w: splits[w] for w in wanted}
    identity = hashlib.sha256(f"{fingerprint}:{level}:{limit}:{train_fraction}:{sorted(splits)}".encode()).hexdigest()
    return Corpus(name, splits, vocab, level, [str(f) for f in files.values()], identity)


def _head(text: str, limit: int | None, level: str) -> str:
    """The first ``limit`` characters of ``text`` (all of it for ``None``); at word level cut back to the last
    whitespace among them, so no word is cut in two."""
    if limit is None or limit >= len(text):
        return text
    cut = limit
    if level == "word":
        while cut > 0 and not text[cut].isspace() and not text[cut - 1].isspace():
            cut -= 1
    return text[:cut]


# --------------------------------------------------------------------------- batching


def _check_ids(ids: Any, name: str = "ids") -> Tensor:
    """``ids`` when they are a 1-D tensor of integer token ids (a NumPy array or a list failed with "has no attribute
    'numel'"; float ids were cut into windows the model then refused)."""
    if not isinstance(ids, Tensor):
        raise TypeError(f"{name} must be a tensor of integer token ids; got {type(ids).__name__}: convert it with "
                        "torch.as_tensor(ids, dtype=torch.long)")
    if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer token ids; got {ids.dtype} ({name}.long() if they are whole "
                        "numbers)")
    if ids.dim() != 1:  # (a tokenizer's [1, N] input_ids: random_windows indexed its rows, "index 16 is out of bounds
        # for dimension 0 with size 1"; [N, 1] gave windows of shape [B, T, 1]; StreamBatcher interleaved the columns
        # of [N, 2] as one stream)
        raise ValueError(f"{name} must be one 1-D stream of token ids; got shape {tuple(ids.shape)}: flatten a stream "
                         f"({name}.flatten(), e.g. a tokenizer's [1, N] input_ids) or batch each row on its own")
    return ids


def _check_window_sizes(context, batch_size) -> None:
    """Refuse a ``context`` or ``batch_size`` that is not an integer (2.0 failed as a slice index, 5.0 in
    ``torch.randint``)."""
    for name, value in (("context", context), ("batch_size", batch_size)):
        if not is_integer(value):
            raise TypeError(f"{name} must be an int, got {value!r}")


def check_context(n_tokens: int, batch_size: int, context: int, what: str = "the data") -> None:
    """Refuse ``batch_size`` streams over ``n_tokens`` tokens too short for a window of ``context`` (+ 1 target)."""
    _check_window_sizes(context, batch_size)
    if context < 1 or batch_size < 1:
        raise ValueError(f"context and batch size must be >= 1, got context={context}, batch_size={batch_size}")
    if n_tokens // batch_size < context + 1:
        # (only the fixes there are: a context or a batch size of 1 was told to get smaller)
        fixes = [fix for fix, possible in (("a shorter --context", context > 1),
                                           ("a smaller --batch-size", batch_size > 1), ("more text", True)) if possible]
        raise ValueError(
            f"context {context} is longer than {what}: {n_tokens:,} tokens in {batch_size} "
            f"stream{'s' * (batch_size != 1)} give {n_tokens // batch_size:,} tokens per stream, and a window needs "
            f"context + 1 = {context + 1}. Use {' or '.join(filter(None, (', '.join(fixes[:-1]), fixes[-1])))}"
        )


class StreamBatcher:
    r"""Contiguous-stream batching: :math:`B` parallel streams walked in windows of :math:`T`.

    The ids are trimmed to a multiple of :math:`B` and reshaped to ``[B, N]`` (stream
    :math:`b` is the :math:`b`-th contiguous slice), so window :math:`k+1` of stream
    :math:`b` continues exactly where window :math:`k` stopped and a recurrent model can
    carry its hidden state across batches. Iterating cycles forever; ``position`` (the
    next window's start) is part of :meth:`state_dict` so a resumed run continues.

    Yields ``(x, y, new_epoch)`` with ``x, y`` of shape ``[B, T]`` and ``new_epoch`` true when
    the walk has just wrapped around (the carried state should be reset).
    """

    def __init__(self, ids: Tensor, batch_size: int, context: int, what: str = "the data") -> None:
        _check_ids(ids)
        check_context(ids.numel(), batch_size, context, what)  # what: the ids' name in the error ("the train split")
        batch_size, context = int(batch_size), int(context)
        n = ids.numel() // batch_size
        self.streams = ids[: n * batch_size].reshape(batch_size, n)
        self.context = context
        self.position = 0
        self.epoch = 0

    @property
    def windows_per_epoch(self) -> int:
        """The whole windows of ``context`` tokens (and their targets) in each stream."""
        return (self.streams.shape[1] - 1) // self.context

    def __repr__(self) -> str:
        return (f"StreamBatcher(batch_size={self.streams.shape[0]}, context={self.context}, "
                f"stream_length={self.streams.shape[1]:,}, position={self.position}, epoch={self.epoch})")

    def next(self) -> tuple[Tensor, Tensor, bool]:
        """The next window ``(x, y, wrapped)``."""
        wrapped = False
        if self.position + self.context + 1 > self.streams.shape[1]:
            self.position, self.epoch, wrapped = 0, self.epoch + 1, True
        s = self.position
        x = self.streams[:, s: s + self.context]
        y = self.streams[:, s + 1: s + self.context + 1]
        self.position += self.context
        return x, y, wrapped or s == 0

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor, bool]]:
        while True:
            yield self.next()

    def epoch_windows(self) -> Iterator[tuple[Tensor, Tensor]]:
        """One pass over every window in order (for evaluation), independent of ``position``; the last one is
        shorter when the streams do not divide into windows, so every (input, target) pair of the streams is read
        once."""
        pairs = self.streams.shape[1] - 1
        for s in range(0, pairs, self.context):
            e = min(s + self.context, pairs)
            yield self.streams[:, s: e], self.streams[:, s + 1: e + 1]

    def state_dict(self) -> dict[str, int]:
        """``{"position", "epoch"}``: where the walk is (a checkpoint resumes it with :meth:`load_state_dict`)."""
        return {"position": self.position, "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue the walk where :meth:`state_dict` was taken."""
        self.position, self.epoch = int(state["position"]), int(state["epoch"])


def random_windows(ids: Tensor, batch_size: int, context: int,
                   generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """``batch_size`` windows at independent uniform offsets: ``(x, y)`` of shape ``[B, T]``, on the device of
    ``ids``; the offsets are drawn on ``generator``'s device (a seeded ``torch.Generator()``: the CPU, whatever the
    default device)."""
    _check_ids(ids)
    _check_window_sizes(context, batch_size)
    if ids.numel() < context + 1:
        raise ValueError(f"context {context} is longer than the data ({ids.numel():,} tokens; a window needs "
                         f"{context + 1}); use a shorter --context or more text")
    if context < 1 or batch_size < 1:
        raise ValueError(f"context and batch size must be >= 1, got context={context}, batch_size={batch_size}")
    starts = torch.randint(0, ids.numel() - context, (batch_size,), generator=generator,
                           device=generator_device(generator)).to(ids.device)
    offsets = torch.arange(context + 1, device=ids.device)
    windows = ids[starts[:, None] + offsets[None, :]]
    return windows[:, :-1], windows[:, 1:]


def corpus_files(name_or_path: str, missing_ok: bool = False) -> list[Path]:
    """The files :func:`load_text` reads for ``name_or_path`` (a known name, a file, or a folder's split files);
    the same errors as :func:`load_text` for a corpus that is not there, or with ``missing_ok`` none."""
    try:
        return list(_resolve(name_or_path)[1].values())
    except (OSError, ValueError):
        if missing_ok:
            return []
        raise


def read_corpus(name_or_path: str, **kwargs: Any) -> Corpus:
    """:func:`load_text` for the commands: a file that cannot be read as text is reported as one
    :class:`~fwdlearn.errors.InputError` naming it (instead of the reader's own exception), and a ``limit`` too short
    as the flag ``--limit`` (the commands' spelling of it)."""
    from fwdlearn.errors import reading

    with reading(name_or_path, "a text corpus", "a corpus must be a UTF-8 text file or a folder of them"):
        return _load_text(name_or_path, **kwargs, limit_name="--limit")
