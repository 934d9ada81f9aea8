"""A minimal GPT in the style of nanoGPT's model.py: the policy, the reference and the reward
model's backbone in the examples.

References:
1) the GPT-2 paper, "Language Models are Unsupervised Multitask Learners" (Radford et al.);
2) Karpathy's nanoGPT, whose layout and names this follows.

`forward(idx, return_hidden_states=True)` returns `{"logits", "hidden_states"}`, the contract
katdensity's `HiddenStateEmbedder` and `LogitEmbedder` accept for nanoGPT-style models; the
last hidden state is the output of `ln_f`, the tensor `lm_head` is applied to.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn as nn
from torch.nn import functional as F


@dataclass
class GPTConfig:
    block_size: int = 160  # longest sequence, prompt and completion together
    vocab_size: int = 259  # ByteTokenizer: 256 bytes + <bos>, <eos>, <pad>
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 64
    dropout: float = 0.0
    bias: bool = True  # bias in Linear and LayerNorm layers, as in GPT-2


# Model sizes by name. "small" trains in minutes on two CPU cores; "large" is nanoGPT's
# character-level Shakespeare model and wants a GPU.
PRESETS: dict[str, GPTConfig] = {
    "tiny": GPTConfig(n_layer=1, n_head=2, n_embd=32),
    "small": GPTConfig(n_layer=2, n_head=4, n_embd=64),
    "medium": GPTConfig(n_layer=4, n_head=4, n_embd=128),
    "large": GPTConfig(n_layer=6, n_head=6, n_embd=384, block_size=256),
}


class KVCache:
    """Keys and values of every layer while a batch is decoded, so each new token costs one
    position instead of the whole sequence. `pos` `(B, T)` holds the positions that the next
    forward call writes, one row per sequence: rows may sit at different positions."""

    def __init__(self, config: GPTConfig, batch_size: int, width: int, device: torch.device):
        shape = (batch_size, config.n_head, width, config.n_embd // config.n_head)
        self.k = [torch.zeros(shape, device=device) for _ in range(config.n_layer)]
        self.v = [torch.zeros(shape, device=device) for _ in range(config.n_layer)]
        self.pos = torch.zeros((batch_size, 1), dtype=torch.long, device=device)

    def update(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Store `k`, `v` `(B, nh, T, hs)` at `pos`; return all keys and values `(B, nh, W, hs)`
        and the mask `(B, 1, T, W)` of the positions each query may attend to."""
        rows = torch.arange(k.size(0), device=k.device)[:, None]
        # The two index tensors are split by a slice, so the indexed shape is (B, T, nh, hs).
        self.k[layer][rows, :, self.pos] = k.transpose(1, 2)
        self.v[layer][rows, :, self.pos] = v.transpose(1, 2)
        width = self.k[layer].size(2)
        mask = torch.arange(width, device=k.device) <= self.pos[:, :, None]  # (B, T, W)
        return self.k[layer], self.v[layer], mask[:, None]


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig, layer: int) -> None:
        super().__init__()
        if config.n_embd % config.n_head != 0:
            raise ValueError(
                f"n_embd should be a multiple of n_head ({config.n_head}), "
                f"but got n_embd={config.n_embd}"
            )
        # key, query, value projections for all heads, in a batch
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head = config.n_head
        self.dropout = config.dropout
        self.layer = layer

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        B, T, C = x.size()  # batch size, sequence length, embedding dimensionality (n_embd)
        q, k, v = self.c_attn(x).split(C, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        if cache is None:
            # causal self-attention: (B, nh, T, hs) x (B, nh, hs, T) -> (B, nh, T, T)
            dropout = self.dropout if self.training else 0.0
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)
        else:
            k, v, mask = cache.update(self.layer, k, v)  # (B, nh, W, hs), mask (B, 1, T, W)
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))  # (B, nh, T, W)
            y = att.masked_fill(~mask, -float("inf")).softmax(dim=-1) @ v  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble all head outputs
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, config: GPTConfig, layer: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config, layer)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cache)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig, *, seed: int = 0) -> None:
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                wpe=nn.Embedding(config.block_size, config.n_embd),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config, layer) for layer in range(config.n_layer)]),
                ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying
        # Initialise every parameter from a seeded generator: the default init of nn.Linear
        # draws its biases from the global RNG, which would make two runs differ.
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("bias"):
                    p.zero_()
                elif p.dim() >= 2:  # LayerNorm weights keep their ones
                    # GPT-2: residual projections scaled by 1/sqrt(2 * n_layer)
                    std = (
                        0.02 / math.sqrt(2 * config.n_layer)
                        if name.endswith("c_proj.weight")
                        else 0.02
                    )
                    p.copy_(torch.randn(p.shape, generator=generator) * std)

    def forward(
        self, idx: torch.Tensor, return_hidden_states: bool = False, cache: KVCache | None = None
    ) -> torch.Tensor | dict[str, Any]:
        """Logits `(B, T, V)` for token ids `idx` `(B, T)`.

        With `return_hidden_states=True`, a dict with `"logits"` and `"hidden_states"`: the
        embedding output, each block's output, and finally `ln_f`'s output, each `(B, T, C)`.
        With a `cache`, `idx` sits at the positions `cache.pos` and attends to the cache.
        """
        T = idx.size(1)
        if cache is None:
            if T > self.config.block_size:
                raise ValueError(
                    f"sequences should be at most block_size={self.config.block_size} tokens, "
                    f"but got {T}"
                )
            pos = torch.arange(0, T, dtype=torch.long, device=idx.device)  # (T,)
        else:
            pos = cache.pos  # (B, T)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        hidden_states = [x]
        for block in self.transformer.h:
            x = block(x, cache)
            hidden_states.append(x)
        x = self.transformer.ln_f(x)  # (B, T, C)
        hidden_states.append(x)
        logits = self.lm_head(x)  # (B, T, V)
        if return_hidden_states:
            return {"logits": logits, "hidden_states": hidden_states}
        return logits

    def num_params(self) -> int:
        """Parameters, the tied embedding counted once."""
        return sum(p.numel() for p in self.parameters())

    @torch.no_grad()
    def generate(
        self,
        prompts: list[list[int]],
        max_new_tokens: int,
        *,
        eos_id: int,
        pad_id: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> list[list[int]]:
        """Sample a completion for each prompt (a list of token ids), up to and including
        `<eos>` or `max_new_tokens` tokens. `temperature=0` is greedy decoding.

        The prompts are right-padded into one batch and each row keeps its own cursor in a
        key-value cache: a row's tokens attend only to positions up to its cursor, so the
        padding after a short prompt is overwritten before anything attends to it.
        """
        device = self.lm_head.weight.device
        B = len(prompts)
        lengths = torch.tensor([len(p) for p in prompts], device=device)
        width = int(lengths.max()) + max_new_tokens
        if width > self.config.block_size:
            raise ValueError(
                f"the longest prompt ({int(lengths.max())} tokens) plus max_new_tokens="
                f"{max_new_tokens} should fit in block_size={self.config.block_size}"
            )
        idx = torch.full((B, width), pad_id, dtype=torch.long, device=device)
        for row, prompt in enumerate(prompts):
            idx[row, : len(prompt)] = torch.tensor(prompt, dtype=torch.long, device=device)
        rows = torch.arange(B, device=device)
        cache = KVCache(self.config, B, width, device)
        cache.pos = torch.arange(int(lengths.max()), device=device).expand(B, -1)
        logits = self(idx[:, : int(lengths.max())], cache=cache)[rows, lengths - 1]  # (B, V)
        cursor = lengths.clone()  # (B,) where each row's next token goes
        finished = torch.zeros(B, dtype=torch.bool, device=device)
        for step in range(max_new_tokens):
            logits = logits.float()
            if temperature == 0.0:
                next_id = logits.argmax(dim=-1)
            else:
                logits = logits / temperature
                if top_k is not None:
                    kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]
                    logits[logits < kth] = -float("inf")
                probs = F.softmax(logits, dim=-1)
                next_id = torch.multinomial(probs, 1, generator=generator).squeeze(1)
            next_id = torch.where(finished, pad_id, next_id)  # (B,)
            idx[rows, cursor] = next_id
            running = ~finished
            finished = finished | (next_id == eos_id)
            cursor = cursor + running.long()
            if bool(finished.all()) or step == max_new_tokens - 1:
                break
            cache.pos = (cursor - 1)[:, None]  # where next_id was written
            logits = self(next_id[:, None], cache=cache)[:, -1]
        return [idx[row, lengths[row] : cursor[row]].tolist() for row in range(B)]


def save_model(model: GPT) -> dict[str, Any]:
    """A checkpoint entry readable with `torch.load(..., weights_only=True)`."""
    return {"config": asdict(model.config), "model": model.state_dict()}


def load_model(entry: dict[str, Any], device: str | torch.device = "cpu") -> GPT:
    """The inverse of `save_model`."""
    model = GPT(GPTConfig(**entry["config"]))
    model.load_state_dict(entry["model"])
    return model.to(device)
