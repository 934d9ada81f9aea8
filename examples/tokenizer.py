"""A byte-level tokenizer: token ids 0-255 are the UTF-8 bytes, then three special tokens.

The chat format is the simplest one that works: `BOS prompt "\\n" response EOS`. Any text
encodes (no unknown tokens), and the vocabulary is small enough for a CPU-sized model.
"""

from __future__ import annotations

from collections.abc import Iterable


class ByteTokenizer:
    """UTF-8 bytes plus `<bos>`, `<eos>` and `<pad>`.

    It has the `encode(str) -> list[int]` and `pad_token_id` that katdensity's
    `HiddenStateEmbedder` and `LogitEmbedder` need from a nanoGPT-style tokenizer.
    """

    bos_token_id = 256
    eos_token_id = 257
    pad_token_id = 258
    vocab_size = 259

    def encode(self, text: str, *, bos: bool = True) -> list[int]:
        """The bytes of `text`, after `<bos>` unless `bos=False`."""
        ids = list(text.encode("utf-8"))
        return [self.bos_token_id, *ids] if bos else ids

    def decode(self, ids: Iterable[int]) -> str:
        """The text of `ids`; special tokens are dropped, broken UTF-8 is replaced."""
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")

    def encode_prompt(self, prompt: str, max_tokens: int | None = None) -> list[int]:
        """What the policy is conditioned on: `<bos> prompt \\n`; a prompt longer than
        `max_tokens` keeps `<bos>` and its end, the part nearest the answer."""
        ids = self.encode(prompt + "\n")
        if max_tokens is not None and len(ids) > max_tokens:
            ids = [ids[0], *ids[len(ids) - max_tokens + 1 :]]
        return ids

    def encode_response(self, response: str, max_tokens: int | None = None) -> list[int]:
        """What the policy generates: `response <eos>`, cut to its first `max_tokens`."""
        return [*self.encode(response, bos=False), self.eos_token_id][:max_tokens]
