"""Shared by the benchmark scripts: machine description and RESULTS.md sections."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).with_name("RESULTS.md")
_HEADER = (
    "# Benchmark results\n\n"
    "Written by the scripts in `benchmarks/`; each section says the command that produced it.\n"
    "Every figure in a table was measured side by side in one run of that command.\n"
)


# The CPU flags that decide which product dtype is fast.
_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8")


def _lscpu() -> dict[str, str]:
    """`lscpu`'s fields (`Model name`, `CPU family`, `Flags`, ...); empty where it is missing."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return {}
    return {key: value.strip() for key, value in re.findall(r"^([^:\n]+):\s*(.*)$", text, re.M)}


def machine() -> str:
    """The CPU (model, family, the flags that matter here), cores, library versions, time."""
    cpu = platform.processor() or platform.machine()
    fields = _lscpu()
    if "Model name" in fields:
        cpu = fields["Model name"]
        if "CPU family" in fields:
            cpu += f" (family {fields['CPU family']}, model {fields.get('Model', '?')})"
        flags = set(fields.get("Flags", "").split())
        cpu += " [" + " ".join(flag for flag in _FLAGS if flag in flags) + "]"
    return (
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"({torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads), "
        f"numpy {np.__version__}, Python {platform.python_version()}, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )


def cpu_kind() -> str:
    """`"amx"`, `"avx512_bf16"`, `"avx512"` or `"avx2"`: which kind of product unit this CPU
    has, to keep one benchmark section per kind of machine."""
    flags = set(_lscpu().get("Flags", "").split())
    for flag, kind in (("amx_bf16", "amx"), ("avx512_bf16", "avx512_bf16"), ("avx512f", "avx512")):
        if flag in flags:
            return kind
    return "avx2"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)))


def write_section(name: str, body: str) -> None:
    """Replace (or add) the section `name` of RESULTS.md, keeping the others."""
    text = RESULTS.read_text() if RESULTS.exists() else _HEADER
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    section = f"{start}\n{body.strip()}\n{end}"
    if start in text:
        text = re.sub(
            re.escape(start) + ".*?" + re.escape(end), lambda _: section, text, flags=re.S
        )
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(RESULTS)
