"""Embedders: texts to `(N, D)` tensors, the first stage of the pipeline."""

from katdensity.embedders.base import Embedder
from katdensity.embedders.distributed import embed_distributed
from katdensity.embedders.external import ExternalEmbedder
from katdensity.embedders.hashing import HashingEmbedder
from katdensity.embedders.hidden_state import HiddenStateEmbedder, pool
from katdensity.embedders.logits import LogitEmbedder
from katdensity.embedders.sentence_transformer import SentenceTransformerEmbedder

__all__ = [
    "Embedder",
    "ExternalEmbedder",
    "HashingEmbedder",
    "HiddenStateEmbedder",
    "LogitEmbedder",
    "SentenceTransformerEmbedder",
    "embed_distributed",
    "pool",
]
