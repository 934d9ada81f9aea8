"""The arithmetic an embedder's model runs in: `precision="auto"`, bf16 autocast, int8 copies.

On a CPU with bf16 dot-product units (AVX512-BF16, AMX) a transformer runs about twice as
fast under bf16 autocast, with embeddings within cosine 0.9999 of fp32 ones on
all-MiniLM-L6-v2 (`benchmarks/bench_embed.py`); on CPUs without them bf16 is several times
slower. `"auto"` decides with the same timed product the exact kNN search uses.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Iterator
from typing import Any, Literal

import torch

from katdensity.errors import InvalidInputError
from katdensity.knn._precision import MIN_SPEEDUP, product_speedups

__all__ = ["EMBED_PRECISIONS", "EmbedPrecision", "int8_copy", "resolve_precision", "running_in"]

EmbedPrecision = Literal["auto", "float32", "bfloat16", "int8"]
EMBED_PRECISIONS: tuple[EmbedPrecision, ...] = ("auto", "float32", "bfloat16", "int8")
Resolved = Literal["float32", "bfloat16", "int8"]


def resolve_precision(precision: EmbedPrecision, device: torch.device, width: int) -> Resolved:
    """What `precision` means for a model of hidden width `width` on `device`.

    `"auto"` is bf16 on CUDA, and on a CPU bf16 only where a bf16 product of that width is
    measured at least `MIN_SPEEDUP` times faster than fp32 (once per process); int8 is
    never automatic (it moves embeddings much further, see the docs).
    """
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bfloat16"
    if device.type != "cpu":
        return "float32"
    speedups = product_speedups(-(-width // 64) * 64, torch.get_num_threads())
    return "bfloat16" if speedups["bfloat16"] >= MIN_SPEEDUP else "float32"


@contextlib.contextmanager
def running_in(precision: Resolved, device: torch.device) -> Iterator[None]:
    """Inference mode, under bf16 autocast when `precision` is `"bfloat16"`.

    Autocast leaves the model's own weights alone (they are cast per call, cached for the
    duration of the context), so a model that is also being trained is not touched.
    """
    with torch.inference_mode():
        if precision != "bfloat16":
            yield
            return
        with torch.autocast(device.type, dtype=torch.bfloat16):
            yield


def int8_copy(model: Any) -> Any:
    """A copy of `model` with its linear layers dynamically quantised to int8 (per channel).

    CPU only: torch's dynamic quantisation has no CUDA kernels.
    """
    if not isinstance(model, torch.nn.Module):
        raise InvalidInputError(
            f"precision='int8' needs a torch.nn.Module model, but got {type(model).__name__}"
        )
    if any(parameter.device.type != "cpu" for parameter in model.parameters()):
        raise InvalidInputError(
            "precision='int8' runs on the CPU only (torch's dynamic quantisation); "
            "move the model to the CPU or use precision='bfloat16'"
        )
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notice
        quantised: Any = quantize_dynamic(  # type: ignore[no-untyped-call]
            copy.deepcopy(model), {torch.nn.Linear: per_channel_dynamic_qconfig}
        )
    return quantised
