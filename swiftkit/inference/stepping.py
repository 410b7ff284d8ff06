"""Token-by-token decoding for continuous batching: replies that join and leave a running batch.

A :class:`Sequence` is one reply being generated: its prompt, the tokens so far, how its next token
is chosen, and (once ``done``) its :class:`~swiftkit.inference.base.Generated` reply. The
transformers engine creates sequences with ``prefill`` (one forward pass over the prompt, which also
picks the first token) and advances a list of them by one token each with ``decode_step``.

A :class:`DecodeBatch` holds the key/value cache of the sequences that decode together. The cache is
left-padded to the longest row; an attention mask hides the padding and each row passes its own
position ids, so a row is computed as it would be alone (up to the order of batched float maths).
When the list of sequences given to a step differs from the last one, the cache is rebuilt before
the step: rows of sequences that left are dropped (with the columns that are then padding in every
row), and the prefill caches of joining sequences are padded and stacked in. Every layer's cache
must be plain keys and values (``DynamicCache`` layers); :func:`plain_kv_cache` tells whether a model
qualifies.

:class:`TextPieces` turns a reply's tokens into the text pieces a stream sends: it holds back half a
multi-byte character, text that a later token rewrites, and text that may be the start of a stop
string, and stops at the first stop token or stop string.
"""

from __future__ import annotations

from collections.abc import Callable

from swiftkit.inference.base import Generated, cut_at_stop_string
from swiftkit.inference.protocol import SamplingParams

ATTENTION_LAYER_TYPES = ("full_attention", "sliding_attention", "chunked_attention")


def plain_kv_cache(config) -> bool:
    """Whether a decoder's cache is keys and values in every layer (attention only: no recurrent
    state, no encoder), so that rows can be padded, stacked and dropped."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    if getattr(text, "is_encoder_decoder", False) or getattr(config, "is_encoder_decoder", False):
        return False
    if getattr(text, "num_kv_shared_layers", 0):
        return False
    types = getattr(text, "layer_types", None)
    return types is None or all(t in ATTENTION_LAYER_TYPES for t in types)


def held_back(text: str, stops) -> int:
    """How many trailing characters of ``text`` could be the start of a stop string."""
    return max((k for s in stops for k in range(1, len(s)) if text.endswith(s[:k])), default=0)


class TextPieces:
    """The pieces of a reply's text as its tokens arrive (see the module docstring)."""

    def __init__(self, decode: Callable, until_stop: Callable, stops: tuple[str, ...]):
        self.decode, self.until_stop, self.stops = decode, until_stop, stops
        self.ids: list[int] = []
        self.emitted = ""
        self.hit_token = self.hit_string = False

    @property
    def ended(self) -> bool:
        """A stop token or stop string was reached: later tokens add nothing."""
        return self.hit_token or self.hit_string

    def add(self, tokens: list[int]) -> str:
        """The new piece of text that ``tokens`` complete ("" when none can be sent yet)."""
        if self.ended:
            return ""
        kept = self.until_stop(tokens)
        self.hit_token = len(kept) < len(tokens)
        self.ids.extend(kept)
        text, self.hit_string = cut_at_stop_string(self.decode(self.ids), self.stops)
        end = len(text) if self.hit_string else len(text) - held_back(text, self.stops)
        if text.startswith(self.emitted) and not text[:end].endswith("\ufffd") and end > len(self.emitted):
            piece = text[len(self.emitted):end]
            self.emitted = text[:end]
            return piece
        return ""

    def rest(self, text: str) -> str:
        """What is left to send once the reply's final ``text`` is known."""
        return text[len(self.emitted):] if text.startswith(self.emitted) else ""


class Sequence:
    """One reply being generated token by token (see the module docstring)."""

    def __init__(self, prompt: list[int], params: SamplingParams, model: str | None, *, choose: Callable,
                 finish: Callable, pieces: TextPieces | None = None):
        self.prompt, self.params, self.model = prompt, params, model
        self.ids: list[int] = []  # the tokens generated so far
        self.done = False
        self.reply: Generated | None = None
        self.entries: list[dict] | None = [] if params.logprobs else None  # logprob entries per token
        self.text = pieces  # streams: the text pieces sent so far
        self.waiting: list[str] = []  # streams: pieces not yet taken
        self._choose, self._finish = choose, finish
        self.next_token: int | None = None  # the last token: the input of the next step
        self.position = len(prompt)  # its position
        self.prefill_cache = None  # layers' (keys, values) of the prompt until the sequence joins a batch

    def take_pieces(self) -> list[str]:
        """The text pieces that arrived since the last call (streams)."""
        out, self.waiting = self.waiting, []
        return out

    def advance(self, logits) -> None:
        """Choose the next token from ``logits`` (this row's raw float32 logits) and record it."""
        token, entry, stop = self._choose(self, logits)
        self.ids.append(token)
        if entry is not None:
            self.entries.append(entry)
        self.next_token = token
        if self.text is not None:
            piece = self.text.add([token])
            if piece:
                self.waiting.append(piece)
        if stop or len(self.ids) >= self.params.max_tokens:
            self.stop()

    def stop(self) -> None:
        """End the reply here (finished, or cut short): ``reply`` is what was generated."""
        if self.done:
            return
        self.done = True
        self.prefill_cache = None
        self.reply = self._finish(self)
        if self.text is not None:
            rest = self.text.rest(self.reply.text)
            if rest:
                self.waiting.append(rest)


def _pad_left(tensor, width: int):
    """``tensor`` ([rows, heads, length, dim] or [rows, length]) padded with zeros on the left to ``width``."""
    import torch  # defers torch

    missing = width - tensor.shape[-2 if tensor.dim() == 4 else -1]
    if missing <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[-2 if tensor.dim() == 4 else -1] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=-2 if tensor.dim() == 4 else -1)


class DecodeBatch:
    """The key/value cache of the sequences decoding together (see the module docstring)."""

    def __init__(self, model: str | None):
        self.model = model  # the served model name (adapter) every row uses
        self.rows: list[Sequence] = []
        self.cache = None  # a DynamicCache over len(rows) rows, or None when empty
        self.mask = None  # [rows, width] long: 1 for real tokens, 0 for padding

    def arrange(self, seqs: list[Sequence]) -> None:
        """Make the batch's rows exactly ``seqs`` (in that order), rebuilding the cache if they changed."""
        import torch  # defers torch
        from transformers import DynamicCache  # defers transformers

        if len(seqs) == len(self.rows) and all(a is b for a, b in zip(seqs, self.rows)):
            return
        where = {id(row): i for i, row in enumerate(self.rows)}
        layers = [(layer.keys, layer.values) for layer in self.cache.layers] if self.cache is not None else None
        if not seqs:
            self.rows, self.cache, self.mask = [], None, None
            return
        width = max([self.mask.shape[1] if self.mask is not None else 0]
                    + [s.prefill_cache[0][0].shape[-2] for s in seqs if id(s) not in where])
        count = len(seqs[0].prefill_cache or layers)
        keys: list[list] = [[] for _ in range(count)]
        values: list[list] = [[] for _ in range(count)]
        masks = []
        for seq in seqs:
            if id(seq) in where:
                row = where[id(seq)]
                source = [(k[row:row + 1], v[row:row + 1]) for k, v in layers]
                masks.append(_pad_left(self.mask[row:row + 1], width))
            else:
                source = seq.prefill_cache
                length = source[0][0].shape[-2]
                masks.append(_pad_left(torch.ones(1, length, dtype=torch.long, device=source[0][0].device), width))
                seq.prefill_cache = None
            for i, (k, v) in enumerate(source):
                keys[i].append(_pad_left(k, width))
                values[i].append(_pad_left(v, width))
        mask = torch.cat(masks)
        lead = int((mask.cumsum(1) == 0).sum(1).min())  # columns that are padding in every row
        cache = DynamicCache()
        for i in range(count):
            cache.update(torch.cat(keys[i])[:, :, lead:], torch.cat(values[i])[:, :, lead:], i)
        self.rows, self.cache, self.mask = list(seqs), cache, mask[:, lead:]
