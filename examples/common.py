"""What the example scripts share: command-line presets, devices, batches and checkpoints."""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
from pathlib import Path
from typing import Any

import torch


def add_common_args(parser: argparse.ArgumentParser, presets: dict[str, dict[str, Any]]) -> None:
    """`--preset`, `--device`, `--max-steps`, `--seed`: the flags every script takes."""
    parser.add_argument(
        "--preset",
        choices=list(presets),
        default="small",
        help="size preset: model and batch sizes, step counts (default: small, CPU minutes)",
    )
    parser.add_argument(
        "--device", default="auto", help="torch device: auto (cuda if available), cpu, cuda, ..."
    )
    parser.add_argument(
        "--max-steps", type=int, default=None, help="optimiser steps (default: from --preset)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed of this run")


def apply_preset(args: argparse.Namespace, presets: dict[str, dict[str, Any]]) -> None:
    """Fill every option left at `None` on the command line from the chosen preset."""
    for key, value in presets[args.preset].items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def device_name(device: torch.device) -> str:
    """The device, with the GPU's name: another GPU trains other models."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def cpu_model() -> str:
    """The CPU's name, as /proc/cpuinfo gives it: another CPU's kernels train other models."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def pad_batch(
    prompts: list[list[int]], responses: list[list[int]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt + response token ids, right-padded: `idx` `(B, T)` and `response_mask` `(B, T)`,
    True where `idx` holds a response token.

    Right padding keeps a causal model exact without an attention mask: every real token
    comes before its row's padding and never attends to it.
    """
    width = max(len(p) + len(r) for p, r in zip(prompts, responses, strict=True))
    idx = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    response_mask = torch.zeros((len(prompts), width), dtype=torch.bool)
    for row, (prompt, response) in enumerate(zip(prompts, responses, strict=True)):
        idx[row, : len(prompt) + len(response)] = torch.tensor(prompt + response)
        response_mask[row, len(prompt) : len(prompt) + len(response)] = True
    return idx, response_mask


def save_checkpoint(checkpoint: dict[str, Any], path: str | Path) -> None:
    """`torch.save` to a temporary file renamed into place, so a crash never leaves half a
    checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(checkpoint, partial)
    os.replace(partial, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Tensors and plain values only (`weights_only=True`): a checkpoint cannot run code."""
    checkpoint: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    return checkpoint
