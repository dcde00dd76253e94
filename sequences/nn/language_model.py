r"""The language-model protocol every sequence model follows, and the registry of model kinds.

A language model maps token ids to next-token logits, carrying a state from one window to the next:

.. math::
    (\text{logits}_{1..T}, s_T) = f_\theta(w_{1..T}, s_0), \qquad
    \text{logits}_t \in \mathbb{R}^{V},

(``state`` is ``None`` for a model without one). It knows its :attr:`~LanguageModel.rule` (how credit
reaches its parameters, :mod:`fwdlearn.rules`) and its configuration as a dataclass
(:attr:`~LanguageModel.config`, with a ``kind`` naming the class in :data:`LM_KINDS`, defined in
:mod:`fwdlearn.sequences.registries` and importable from here), so that
:func:`~fwdlearn.sequences.training.fit_lm`, :func:`~fwdlearn.sequences.training.evaluate_lm`,
:meth:`~LanguageModel.generate`, checkpoints and ``fwdlearn seq train`` serve any of them. For
influence measurements it exposes the map from input embeddings to logits
(:meth:`~LanguageModel.embed`, :meth:`~LanguageModel.forward_from_embeddings`).

Adding a model kind: subclass :class:`LanguageModel`, give its config dataclass a ``kind``, and
register it (``LM_KINDS.register("kind", "module:Class")``). A saved model is built again by
:meth:`LanguageModel.from_config`: ``cls(**config)`` unless the class overrides it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fwdlearn.errors import (InputError, UsageError, check_bool, check_model_values, check_not_meta,
                             check_representable, check_seed, is_integer)
from fwdlearn.model_files import FILE_KINDS, load_model, save_model, what_file
from fwdlearn.optim import OptimizerSettings
from fwdlearn.registry import unknown
from fwdlearn.rules import Rule

from fwdlearn.sequences.registries import LM_KINDS, MODEL_NAMES

__all__ = ["LanguageModel", "LM_KINDS", "MODEL_NAMES", "make_language_model", "model_arguments", "model_sizes",
           "load_language_model", "check_norm_width"]



class LanguageModel(nn.Module):
    """Base class of the sequence models: the protocol, generation, saving and loading.

    Subclasses set ``self.config`` (a dataclass with ``kind`` and ``vocab_size``) and ``self.rule``, and
    implement :meth:`embed`, :meth:`forward_from_embeddings` and :meth:`forward`.
    """

    config: Any
    rule: Rule
    #: config entries that files of an older fwdlearn hold and this one no longer takes, left out when such a file is
    #: read (they changed no result: a removed speed option); any other entry :meth:`from_config` does not know is
    #: refused (:meth:`config_arguments`)
    RETIRED_SETTINGS: ClassVar[frozenset[str]] = frozenset()
    #: whether its stream is read through a LayerNorm by default (a width of 1 then sees nothing:
    #: :func:`check_norm_width`)
    NORMED: ClassVar[bool] = False

    @classmethod
    def check_width(cls, flag: str, width: int) -> None:
        """A command's check, before any work, of the width ``flag`` it builds this kind at with its other settings
        at their defaults: a stream read through a LayerNorm (:attr:`NORMED`) needs 2 channels or more
        (:func:`check_norm_width`). A kind with further needs (the transformer's heads) adds them."""
        if cls.NORMED:
            check_norm_width(flag, width)

    @classmethod
    def check_rule(cls, rule: Rule) -> None:
        """A command's check, before any work, that this kind trains by ``rule`` (a parsed
        :class:`~fwdlearn.rules.Rule`): ``ValueError`` naming the rules it does train by, as its constructor refuses
        the rule (default: any rule; a kind that trains by fewer overrides it)."""

    @classmethod
    def config_arguments(cls, config: dict[str, Any], config_class: type) -> dict[str, Any]:
        """The entries of a saved ``config`` that build the model again: the fields of ``config_class`` (its ``kind``
        and :attr:`RETIRED_SETTINGS` left out). ``ValueError`` naming any other entry: a setting of another (newer)
        fwdlearn, without which the model built would not be the one saved (one was dropped silently)."""
        names = {f.name for f in fields(config_class)} - {"kind"}
        unknown = {k: v for k, v in config.items() if k not in names and k != "kind" and k not in cls.RETIRED_SETTINGS}
        if unknown:
            raise ValueError(f"its config holds {', '.join(f'{k}={v!r}' for k, v in unknown.items())}, which "
                             f"{cls.__name__} does not take (its settings: {', '.join(sorted(names))})")
        return {k: v for k, v in config.items() if k in names}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "LanguageModel":
        """The model a saved config (:meth:`config_dict`) builds again, which :func:`load_language_model` calls:
        by default ``cls(**config)`` without its ``kind`` and :attr:`RETIRED_SETTINGS`, for a kind whose config's
        fields are its constructor's arguments (a class whose constructor takes others overrides it). ``ValueError``
        naming an entry the constructor does not take (a loaded model missing a setting would not be the one saved).
        """
        import inspect

        parameters = inspect.signature(cls.__init__).parameters
        given = {k: v for k, v in config.items() if k != "kind" and k not in cls.RETIRED_SETTINGS}
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
            names = set(parameters) - {"self"}
            unknown = {k: v for k, v in given.items() if k not in names}
            if unknown:
                raise ValueError(f"its config holds {', '.join(f'{k}={v!r}' for k, v in unknown.items())}, which "
                                 f"{cls.__name__} does not take (its settings: {', '.join(sorted(names))})")
        return cls(**given)

    # ------------------------------------------------------------------ protocol
    def forward(self, tokens: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        """``(logits [B, T, V], state)``; in ``train()`` mode with gradients on, the model's rule applies."""
        raise NotImplementedError

    def embed(self, tokens: Tensor) -> Tensor:
        """Token embeddings ``[B, T] -> [B, T, E]``."""
        raise NotImplementedError

    def forward_from_embeddings(self, emb: Tensor, state: Any = None) -> Tensor:
        """Logits ``[B, T, V]`` from embeddings, a causal map differentiable w.r.t. ``emb`` (evaluation path; in
        ``train()`` mode with gradients on, the model's rule applies, as in :meth:`forward`)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ training hooks (defaults)
    def training_loss(self, tokens: Tensor, targets: Tensor, state: Any = None,
                      loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None) -> tuple[Tensor, Any]:
        """``(loss, state)`` of one training window: ``loss_fn(logits, targets)`` (default: the mean next-token
        cross-entropy) plus whatever the model's rule adds (e.g. per-block losses under ``local:readout``).
        :func:`~fwdlearn.sequences.training.fit_lm` backpropagates it once
        (:func:`fwdlearn.schedules.end_to_end_step`)."""
        from fwdlearn.sequences.training import lm_loss

        logits, state = self(tokens, state)
        return (loss_fn or lm_loss)(logits, targets), state

    def optimizer_defaults(self) -> OptimizerSettings:
        """The optimizer and learning-rate schedule this model trains with unless told otherwise."""
        return OptimizerSettings("adamw", lr=2e-3)

    def clip_groups(self) -> list[list[nn.Parameter]]:
        """The trainable parameters, in the groups whose gradient norms
        :func:`~fwdlearn.sequences.training.fit_lm` clips one by one (default: one group; a layer-local rule gives
        one per block, so that no block's update depends on another block's loss)."""
        return [[p for p in self.parameters() if p.requires_grad]]

    def prepare_for_state(self, state: dict[str, Any]) -> None:
        """Shape the model's buffers as a saved file's ``state`` holds them, before it is loaded (default: nothing;
        a recurrent model's DSF feedback may have been replaced by one of the other shape, :meth:`set_feedback`)."""

    def feedback_alignment(self, tokens: Tensor, targets: Tensor, state: Any = None) -> dict[str, float]:
        """``{feedback point: mean per-token cosine between the DFA signal and the true gradient}`` on one window
        (:func:`fwdlearn.diagnostics.alignment.feedback_alignment`); models with feedback points implement it."""
        raise ValueError(f"a {self.config.kind} model trained by {self.rule} has no feedback points; the alignment "
                         "diagnostic needs a dfa rule (e.g. training='dfa')")

    @property
    def feedback_points(self) -> list[str]:
        """Names of the model's DFA feedback points (empty unless its rule is a ``dfa`` rule)."""
        return []

    @property
    def max_context(self) -> int | None:
        """The longest window the model reads at once (``None``: any; a transformer's learned positions)."""
        return None

    @property
    def vocab_size(self) -> int:
        """The number of token ids the embedding reads (``config.vocab_size``)."""
        return int(self.config.vocab_size)

    @property
    def out_size(self) -> int:
        """The width of the output per position (``vocab_size`` unless the model was built with ``out_size``)."""
        return int(getattr(self.config, "out_size", None) or self.vocab_size)

    def check_tokens(self, tokens: Tensor) -> Tensor:
        """``tokens`` as ids the embedding reads: a ``[batch, time]`` integer tensor, ``time >= 1``, every id in
        ``[0, vocab_size)``, not on the meta device; anything else is refused with the fix."""
        if not isinstance(tokens, Tensor):
            raise TypeError(f"tokens must be a [batch, time] tensor of integer ids; got {type(tokens).__name__}: "
                            "convert it with torch.tensor(tokens, dtype=torch.long)")
        if tokens.dtype.is_floating_point or tokens.dtype.is_complex or tokens.dtype == torch.bool:
            raise TypeError(f"tokens must be integer ids, got dtype {tokens.dtype}: pass ids as an integer tensor "
                            "(tokens.long() if these hold whole-number ids; text: encode it with the model's "
                            "vocabulary)")
        if tokens.dim() != 2:
            hint = ": add the batch dimension (tokens.unsqueeze(0))" if tokens.dim() == 1 else ""
            raise ValueError(f"tokens must be a [batch, time] tensor; got shape {tuple(tokens.shape)}{hint}")
        if tokens.shape[1] == 0:
            raise ValueError(f"tokens is an empty window (shape {tuple(tokens.shape)}); give at least one token")
        check_not_meta("tokens", tokens, "the model reads the ids")  # (torch's "Tensor.item() cannot be called on
        # meta tensors" named nothing)
        if tokens.numel():
            low, high = (int(v) for v in torch.aminmax(tokens))
            if low < 0 or high >= self.vocab_size:
                fix = (f", or build it with vocab_size >= {high + 1}" if high >= self.vocab_size else
                       " (a negative id is no token; padding marked -1 or -100 belongs in the targets only)")
                raise ValueError(f"token ids must lie in [0, {self.vocab_size - 1}] (the model's vocab_size is "
                                 f"{self.vocab_size}); got ids in [{low}, {high}]: encode with the vocabulary the "
                                 f"model was built for{fix}")
        return tokens if tokens.dtype in (torch.long, torch.int32) else tokens.long()

    def check_next_token_outputs(self, what: str) -> None:
        """Refuse a model whose outputs are not next-token logits over its vocabulary: one built with an ``out_size``
        below ``vocab_size`` (for a task's classes or a regression) cannot score or draw every next token (``what``:
        the use refused, e.g. ``"generate"``)."""
        if self.out_size < self.vocab_size:
            raise ValueError(f"this model gives {self.out_size} output{'s' if self.out_size > 1 else ''} per position "
                             f"(out_size={self.out_size}), fewer than its {self.vocab_size} tokens: {what} needs a "
                             "next-token logit for every token; build the model without out_size (it defaults to "
                             "vocab_size)")

    def check_embeddings(self, emb: Tensor, width: int) -> Tensor:
        """``emb`` as :meth:`forward_from_embeddings` reads it: ``[batch, time, width]``, ``time >= 1``, in the
        parameters' dtype (what :meth:`embed` returns)."""
        if not isinstance(emb, Tensor) or emb.dim() != 3 or emb.shape[-1] != width or emb.shape[1] == 0:
            found = tuple(emb.shape) if isinstance(emb, Tensor) else type(emb).__name__
            raise ValueError(f"embeddings must be [batch, time >= 1, {width}] (what embed(tokens) returns); got "
                             f"{found}")
        dtype = next(self.parameters()).dtype
        if emb.dtype != dtype:  # (torch's own error named no tensor; a lower precision passed and came back in it)
            raise TypeError(f"the embeddings are {emb.dtype} but the model's parameters are {dtype}: convert one of "
                            f"them (model.to({emb.dtype}) or emb.to({dtype}))")
        return emb

    @property
    def device(self) -> torch.device:
        """The device of the model's parameters (its first one's)."""
        return next(self.parameters()).device

    def config_dict(self) -> dict[str, Any]:
        """The configuration as a plain dict (what checkpoints store)."""
        return asdict(self.config)

    def extra_repr(self) -> str:
        """``print(model)``'s first line: the rule it trains by and its config (the module tree alone showed neither
        a recurrent model's rule through time nor DFA's feedback kind), as ``ForwardGNN``'s names its rule."""
        config = getattr(self, "config", None)
        settings = [f"{f.name}={getattr(config, f.name)!r}" for f in fields(config) if f.name not in ("kind", "training")
                    ] if config is not None and hasattr(config, "__dataclass_fields__") else []
        return ", ".join([f"rule={getattr(self, 'rule', '?')}", *settings])

    # ------------------------------------------------------------------ user API
    def fit(self, data, **kwargs: Any):
        """Train on a :class:`~fwdlearn.sequences.data.text.Corpus` (contiguous streams, carried state) or a
        :class:`~fwdlearn.sequences.data.tasks.SequenceTask`; see :func:`~fwdlearn.sequences.training.fit_lm`
        and :func:`~fwdlearn.sequences.training.fit_task` for the arguments."""
        from fwdlearn.sequences.data.tasks import SequenceTask
        from fwdlearn.sequences.training import fit_lm, fit_task

        return fit_task(self, data, **kwargs) if isinstance(data, SequenceTask) else fit_lm(self, data, **kwargs)

    def evaluate(self, data, **kwargs: Any) -> dict[str, float]:
        """``{"loss", "perplexity", "bpc"}`` on token ids (streams, state carried), or the task metric on a
        task; see :func:`~fwdlearn.sequences.training.evaluate_lm`."""
        from fwdlearn.sequences.data.tasks import SequenceTask
        from fwdlearn.sequences.training import evaluate_lm, evaluate_task

        if isinstance(data, SequenceTask):
            return evaluate_task(self, data, **kwargs)
        return evaluate_lm(self, data, **kwargs)

    @torch.no_grad()
    def generate(self, prompt: Tensor | str, steps: int, temperature: float = 1.0, vocab=None,
                 seed: int | None = None, greedy: bool = False, top_k: int | None = None) -> Tensor | str:
        r"""Sample ``steps`` tokens after ``prompt`` (ids ``[T]``, or text or a list of its tokens with ``vocab``);
        returns ids, or text (prompt included) when ``vocab`` is given. Each token is drawn from the softmax of the
        last logits :math:`z` divided by ``temperature`` :math:`\tau`; with ``top_k`` :math:`k`, only the :math:`k`
        largest logits are kept and renormalised:

        .. math::
            p(w) = \frac{\exp(z_w / \tau)\,[z_w \ge z_{(k)}]}{\sum_{v} \exp(z_v / \tau)\,[z_v \ge z_{(k)}]},

        :math:`z_{(k)}` the :math:`k`-th largest logit (a token tied with it is kept too, as Hugging Face's
        ``top_k`` does). ``top_k=None`` (the default) or a ``top_k`` not below the vocabulary's size keeps every
        token; ``top_k=1`` draws as ``greedy`` does; 0, a negative number or a non-integer is refused. ``seed``: the
        sampling generator's seed (``None``: drawn from torch's global generator, so ``torch.manual_seed`` makes the
        call reproducible); ``greedy``: the most likely token at every step instead (``temperature``, ``top_k`` and
        ``seed`` unused). A model built with an ``out_size`` below its ``vocab_size`` (a task's) is refused."""
        from fwdlearn.fit import evaluating
        from fwdlearn.sequences.data.text import UNKNOWN_WORD, Vocabulary

        if vocab is not None and not (hasattr(vocab, "encode") and hasattr(vocab, "decode")):
            raise TypeError(f"vocab must be the corpus's Vocabulary (corpus.vocab), got {type(vocab).__name__}")
        if seed is not None:
            seed = check_seed(seed)
        greedy = check_bool("greedy", greedy)  # (greedy="no" is true: it drew greedily in silence)
        check_model_values(self, "generating reads its values")  # (torch's "META device type not an accelerator")
        self.check_next_token_outputs("generate")  # (an out_size=1 model drew id 0 for ever)
        if isinstance(prompt, (bytes, bytearray)):  # (torch's "new(): invalid data type 'bytes'")
            raise TypeError("the prompt is bytes: give its text, prompt.decode('utf-8'), with vocab=, or token ids")
        tokens = isinstance(prompt, (list, tuple)) and bool(prompt) and all(isinstance(p, str) for p in prompt)
        if isinstance(prompt, str) or tokens:  # (a list of tokens, as vocab.encode takes: "too many dimensions 'str'")
            if vocab is None:
                raise ValueError(f"a text prompt{' (a list of tokens)' if tokens else ''} needs vocab= to encode it")
            unknown = vocab.unknown(prompt, open_end=True) if isinstance(vocab, Vocabulary) else []
            if unknown:  # (the vocabulary's own fix, to build it from other text, makes another model)
                raise ValueError(f"the prompt's {vocab.name_unknown(unknown)}: the model reads only the tokens it "
                                 f"was trained with; leave {'it' if len(unknown) == 1 else 'them'} out of the prompt"
                                 + (f", or write {UNKNOWN_WORD} for {'it' if len(unknown) == 1 else 'them'} (the "
                                    "vocabulary's unknown-word token)" if UNKNOWN_WORD in vocab.index else ""))
            ids = vocab.encode(prompt, open_end=True)  # a word prompt's last line goes on: no <eos> after it
            if ids.numel() == 0 and isinstance(prompt, str) and prompt:  # (whitespace at word level: "generate needs
                # a non-empty prompt", of a prompt that was not empty)
                raise ValueError(f"the prompt holds only whitespace ({len(prompt)} character"
                                 f"{'s' * (len(prompt) != 1)}), no word: a word-level vocabulary reads whitespace as "
                                 "the space between words; give at least one word, or start after a line's end: a "
                                 "prompt of '\\n' (seq sample: leave --prompt out)")
        else:
            try:  # (None: "Could not infer dtype of NoneType"; ["ROMEO", 3]: "too many dimensions 'str'")
                ids = torch.as_tensor(prompt)
            except (TypeError, ValueError, RuntimeError):
                raise TypeError(f"the prompt must be token ids (a list, array or tensor of ints, [T] or [1, T]), or "
                                f"text or a list of its tokens with vocab=; got {prompt!r:.80}"
                                + (": generate continues a prompt of at least one token (to start a text afresh, "
                                   "give the token that ends a line: '\\n' with vocab=)" if prompt is None else "")
                                ) from None
            if ids.numel() == 0:  # (before the dtype: an empty list is a float32 tensor)
                raise ValueError("generate needs a non-empty prompt")
            if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
                raise TypeError(f"the prompt must be integer token ids (or a str with vocab=), got dtype {ids.dtype}")
            if ids.dim() > 1 and ids.shape[0] != 1 or ids.dim() > 2:
                raise ValueError(f"generate continues one sequence: give the prompt ids as [T] (or [1, T]); got shape "
                                 f"{tuple(ids.shape)}")
            ids = self.check_tokens(ids.reshape(1, -1)).long().flatten()  # (a meta prompt: torch's copy error)
        if vocab is not None and len(vocab) > self.vocab_size:
            raise ValueError(f"vocab holds {len(vocab)} tokens but the model's vocab_size is {self.vocab_size}: pass "
                             "the vocabulary the model was trained with")
        drawn = len(vocab) if vocab is not None else self.vocab_size  # a larger model draws only the ids vocab has
        if ids.numel() == 0:
            raise ValueError("generate needs a non-empty prompt")
        if not is_integer(steps) or steps < 0:
            raise ValueError(f"steps (tokens to generate) must be an int >= 0, got {steps!r}")
        if top_k is not None and not is_integer(top_k):  # (2.5 or "40" failed in torch.topk, naming no argument)
            raise TypeError(f"top_k must be an int >= 1 (the most likely tokens kept) or None (keep every token), got "
                            f"{top_k!r}")
        if top_k is not None and top_k < 1:  # (0 kept nothing: every probability NaN, torch.multinomial's raw error)
            raise ValueError(f"top_k must be >= 1 (the most likely tokens kept; 1 is greedy) or None (keep every "
                             f"token), got {top_k}")
        if not greedy:
            try:  # (a str or None failed in a comparison or float(), naming no argument)
                value = float(temperature) if not isinstance(temperature, (str, bytes, bool)) else None
            except (TypeError, ValueError, RuntimeError):
                value = None
            if value is None:
                raise TypeError(f"temperature must be a number > 0 (or pass greedy=True), got {temperature!r}")
            temperature = value
        if not greedy and not (math.isfinite(float(temperature)) and temperature > 0):
            raise ValueError(f"temperature must be > 0 (or pass greedy=True), got {temperature}")
        if not greedy:  # (1e-46 is 0 in float32: every logit / 0 was NaN, torch.multinomial's raw error)
            check_representable("temperature", temperature)  # (float32's range: the logits are divided at least
            # in it, also for a float16 model)
        if vocab is not None and int(ids.max()) >= len(vocab):
            raise ValueError(f"the prompt holds id {int(ids.max())}, which the vocabulary ({len(vocab)} tokens) cannot "
                             "decode: give ids below its size")
        keep = int(top_k) if top_k is not None and top_k < drawn else None  # (k >= the vocabulary: no filter)
        greedy = greedy or keep == 1
        device = self.device
        gen = torch.Generator(device=device)
        if not greedy:  # no seed: one drawn from torch's global generator, so calls differ and torch.manual_seed
            gen.manual_seed(seed if seed is not None else int(torch.randint(0, 2 ** 62, ())))  # reproduces them
        out = []
        with evaluating(self):
            logits, state = self.prefill(ids.to(device).unsqueeze(0))
            for _ in range(steps):
                last = logits[0, -1, :drawn]
                if keep is not None and not greedy:  # the k largest logits (and any tied with the k-th) kept
                    last = last.masked_fill(last < torch.topk(last, keep).values[-1], -math.inf)
                # (shifted to a maximum of 0 first: a tiny temperature sends the others to -inf, not the lot to NaN)
                nxt = last.argmax() if greedy else torch.multinomial(F.softmax((last - last.max()) / temperature, -1),
                                                                    1, generator=gen)[0]
                out.append(int(nxt))
                if len(out) < steps:  # (the logits after the last token drawn are never read)
                    logits, state = self.next_logits(nxt.view(1, 1), state, ids.numel() + len(out))
        result = torch.cat([ids.cpu(), torch.tensor(out, dtype=torch.long)])
        return vocab.decode(result) if vocab is not None else result

    def prefill(self, tokens: Tensor) -> tuple[Tensor, Any]:
        """Logits of a prompt and the state generation continues from (default: :meth:`forward`)."""
        return self(tokens)

    def next_logits(self, token: Tensor, state: Any, length: int) -> tuple[Tensor, Any]:
        """Logits after one more ``token`` ``[1, 1]``; ``length`` tokens have been seen (default: :meth:`forward`)."""
        return self(token, state)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path, vocab=None, overwrite: bool = False) -> Path:
        """Write ``{"kind", "config", "model", "vocab"}`` atomically (:func:`fwdlearn.model_files.save_model`: refuses
        to overwrite unless ``overwrite``), refusing a ``vocab`` of more tokens than the model reads."""
        if vocab is not None and not (hasattr(vocab, "state_dict") and hasattr(vocab, "tokens")):  # (vocab=corpus:
            # "object of type 'Corpus' has no len()")
            raise TypeError(f"vocab must be the corpus's Vocabulary (corpus.vocab), got {type(vocab).__name__}")
        if vocab is not None and len(vocab) > self.vocab_size:
            raise ValueError(f"the vocabulary holds {len(vocab)} tokens but the model reads {self.vocab_size} "
                             "(vocab_size): save it with the vocabulary it was built for")
        return save_model(self, path, self.config.kind, self.config_dict(), overwrite,
                          vocab=vocab.state_dict() if vocab is not None else None)

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu"):
        """``(model, vocab)`` from :meth:`save`'s file or a training checkpoint (its best state). Called on a model
        class, the file must hold one of that class (``RecurrentLM.load`` of a transformer's file is refused, naming
        it); :func:`load_language_model` and ``LanguageModel.load`` read any kind."""
        model, vocab = load_language_model(path, map_location)
        if not isinstance(model, cls):  # (a TransformerLM came back from RecurrentLM.load, in silence)
            raise InputError(f"{Path(path).expanduser()} holds a {type(model).__name__} (kind "
                             f"{model.config.kind!r}), not a {cls.__name__}: load it with {type(model).__name__}.load, "
                             "or with fwdlearn.sequences.load_language_model (any kind)")
        return model, vocab


def _bundle(path: Path, ckpt: Any) -> dict[str, Any]:
    """The language model's bundle in what ``path`` held: the file itself, or a Trainer checkpoint's best state; another
    of fwdlearn's files (a graph model, a graph train checkpoint) is refused saying what it is and what reads it."""
    if isinstance(ckpt, dict) and not _another_kind(ckpt):
        if "model" in ckpt and "config" in ckpt:
            return ckpt
        inner = ckpt.get("best_state") or ckpt.get("state")  # a Trainer checkpoint: the bundle is under best_state
        if isinstance(inner, dict) and "model" in inner and "config" in inner:  # (or state: the best is the last)
            return inner
    found = what_file(ckpt)
    raise InputError(f"{path} is neither a saved language model nor a fwdlearn seq train checkpoint"
                     + (f": {found}" if found else ""))


def _another_kind(ckpt: Any) -> bool:
    """Whether ``ckpt`` is a model file of a kind fwdlearn writes that is not a language model's (a ForwardGNN's:
    "unknown language model kind 'forward-gnn'" blamed a kind registered in other code)."""
    kind = ckpt.get("kind") if isinstance(ckpt, dict) else None
    return isinstance(kind, str) and kind in FILE_KINDS and kind not in LM_KINDS


def load_language_model(path: str | Path, map_location: str | torch.device = "cpu"):
    """``(model, vocab)`` from a saved model or a ``fwdlearn seq train`` checkpoint, whatever its kind; the model on
    the device ``map_location`` names (:func:`fwdlearn.model_files.load_model`)."""
    from fwdlearn.sequences.data.text import Vocabulary

    def build(bundle: dict[str, Any]) -> LanguageModel:
        config = dict(bundle["config"])
        model = LM_KINDS.get(bundle.get("kind") or config.get("kind", "recurrent")).from_config(config)
        model.prepare_for_state(bundle["model"])
        return model

    model, bundle = load_model(path, "a language model", build, _bundle, map_location)
    vocab = Vocabulary.from_state_dict(bundle["vocab"]) if bundle.get("vocab") else None
    if vocab is not None and len(vocab) > model.vocab_size:
        raise InputError(f"{path}: its vocabulary holds {len(vocab)} tokens but its model reads {model.vocab_size} "
                         "(vocab_size); it was saved with another model's vocabulary")
    return model, vocab

def model_arguments(model: str) -> set[str]:
    """The keyword arguments the class of ``model`` (a name :func:`make_language_model` takes) accepts."""
    import inspect

    if model not in MODEL_NAMES:
        raise ValueError(unknown("model", model, MODEL_NAMES))
    return set(inspect.signature(LM_KINDS.get(MODEL_NAMES[model][0]).__init__).parameters) - {"self"}


def model_sizes(model: str, given: dict[str, Any], defaults: dict[str, Any], named: str) -> dict[str, Any]:
    """The entries of ``given`` (a command's size flags by option name, ``{"hidden": 128, "layers": 2}``) that the
    class of ``model`` takes (:func:`model_arguments`); one it does not take (a kind registered without ``layers``) is
    left out while it holds its ``defaults`` value and refused otherwise, a ``UsageError`` naming the flag and
    ``named``, how the command names the model (``"--model bigram"``)."""
    takes = model_arguments(model)
    sizes = {}
    for name, value in given.items():
        if name in takes:
            sizes[name] = value
        elif value != defaults[name]:
            raise UsageError(f"--{name.replace('_', '-')} {value}: {named} does not take it")
    return sizes


def check_norm_width(flag: str, width: int, without: str = "") -> None:
    """A command's check, before any work, of a width ``flag`` that a model reads through a LayerNorm: 1 is refused,
    in the command's words (the models' own refusal named ``hidden=2`` and ``norm=False``, flags the commands do not
    take, and came when a part reached the model, after the parts before it had run); ``without``: the flag that
    leaves the LayerNorm out, when the command has one (``--no-norm``)."""
    if width < 2:
        raise UsageError(f"{flag} {width}: the model reads it through a LayerNorm, which over one channel gives its "
                         f"bias whatever it reads (x - mean(x) = 0), so the model could not see its input; give {flag} "
                         f"2 or more" + (f", or {without} (plain blocks, no LayerNorm)" if without else ""))


def make_language_model(model: str, vocab_size: int, **options: Any) -> LanguageModel:
    """A language model by name (:data:`~fwdlearn.sequences.registries.MODEL_NAMES`: a cell registered in
    :data:`~fwdlearn.sequences.registries.RECURRENT_CELLS` (``tanh``, ``gru``, ...), ``conv``, ``transformer``, or
    another kind registered in :data:`LM_KINDS`).

    ``options`` are the model class's keyword arguments (``hidden``, ``layers``, ``training``, ...); options the
    class does not take are ignored when they are ``None`` and refused otherwise. An option the name fixes (a cell's
    name fixes ``cell``) may be given again only with that value.
    """
    accepted = model_arguments(model)
    kind, fixed = MODEL_NAMES[model]
    cls = LM_KINDS.get(kind)
    unknown = [k for k, v in options.items() if k not in accepted and v is not None]
    if unknown:
        raise ValueError(f"model {model!r} does not take {', '.join(unknown)}")
    options = {k: v for k, v in options.items() if k in accepted and v is not None}
    for name, value in fixed.items():  # (given again: "got multiple values for keyword argument 'cell'")
        given = options.pop(name, value)
        if given != value:
            instead = f", or make model {given!r}" if isinstance(given, str) and given in MODEL_NAMES else ""
            raise ValueError(f"model {model!r} is built with {name}={value!r}; got {name}={given!r}: leave {name} "
                             f"out{instead}")
    return cls(vocab_size, **fixed, **options)
