"""The bundled demo: what inverse-density sampling does to a skewed prompt set.

It generates prompts in words ([`generated_prompts`][katdensity.synthetic.generated_prompts]:
eight topics of Zipf-distributed sizes plus templated near-duplicate families), embeds them
with the [`HashingEmbedder`][katdensity.HashingEmbedder], estimates their density with exact
kNN, and compares the composition of a uniform sample with that of an inverse-density sample
of the same size (draws with replacement from
[`InverseDensitySampler`][katdensity.InverseDensitySampler], as a trainer would see them).
Everything runs offline in seconds.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from katdensity._atomic import atomic_path
from katdensity._table import format_table
from katdensity.density.exact import ExactKNNDensity
from katdensity.density.formula import DEFAULT_K
from katdensity.density.result import DensityResult
from katdensity.embedders.hashing import HashingEmbedder
from katdensity.errors import MissingDependencyError
from katdensity.io import prompt_id
from katdensity.report import WeightReport, weight_report
from katdensity.sampler import InverseDensitySampler
from katdensity.synthetic import generated_prompts
from katdensity.weights import DEFAULT_BETA, weigh

__all__ = ["DEFAULT_SAMPLE_SIZE", "DemoResult", "run_demo"]

logger = logging.getLogger(__name__)

_TEMPLATED = "templated near-duplicates"
# Prompts in each of the demo's two samples, uniform and inverse-density.
DEFAULT_SAMPLE_SIZE = 1000


@dataclass(frozen=True)
class DemoResult:
    """What the demo printed and wrote.

    Attributes:
        report: the composition table and summary, as printed.
        shares: per group (topic name or `"templated near-duplicates"`), its share of the
            prompt set, of the uniform sample and of the inverse-density sample.
        files: the files written to the output folder.
        weights: what the weights do: ESS, the largest modes, the most and least weighted
            prompts (its `format(texts)` is the end of `report`).
    """

    report: str
    shares: dict[str, tuple[float, float, float]]
    files: list[Path]
    weights: WeightReport


def run_demo(
    out_dir: str | os.PathLike[str] | None = None,
    *,
    seed: int = 0,
    k: int = DEFAULT_K,
    beta: float = DEFAULT_BETA,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
) -> DemoResult:
    """Run the demo and, with `out_dir`, write its files there.

    The folder gets `prompts.jsonl` (one `{"id", "prompt", "src"}` per prompt, `src` being
    its topic), `report.md` (the printed report), `view.json` and, with the `viz` extra
    installed, `view.html` (the 3D view of [`katdensity.viz`][katdensity.viz]).

    Args:
        out_dir: output folder, created if missing; `None` writes nothing.
        seed: seed of the generated prompts and of both samples.
        k: neighbours for the density estimate.
        beta: strength of the inverse-density weighting.
        sample_size: draws in each sample (with replacement).
    """
    start = time.perf_counter()
    data = generated_prompts(seed=seed)
    n = len(data.texts)
    embeddings = HashingEmbedder().embed(data.texts)
    weighted = weigh(embeddings, estimator=ExactKNNDensity(k=k), beta=beta)
    result, weights, modes = weighted.density, weighted.probabilities, weighted.modes
    # What a trainer sees: draws with replacement from the sampler, one per training prompt.
    uniform = torch.tensor(list(InverseDensitySampler(torch.ones(n), sample_size, seed=seed)))
    dense = torch.tensor(list(InverseDensitySampler(weights, sample_size, seed=seed)))

    labels = [_TEMPLATED if topic == "template" else topic for topic in data.topic]
    groups = [*sorted(set(labels) - {_TEMPLATED}), _TEMPLATED]
    shares = {
        group: (
            sum(label == group for label in labels) / n,
            sum(labels[i] == group for i in uniform.tolist()) / sample_size,
            sum(labels[i] == group for i in dense.tolist()) / sample_size,
        )
        for group in groups
    }
    summary = weight_report(weighted)
    topics = len(groups) - 1
    report = "\n".join(
        [
            _table(shares, labels),
            "",
            f"{n} generated prompts: {topics} topics of Zipf-distributed sizes and "
            f"{sum(label == _TEMPLATED for label in labels)} templated near-duplicates, "
            f"hashing embedder, exact kNN with k={k}, beta={beta}.",
            f"A uniform sample of {sample_size} follows topic size; the inverse-density sample "
            "narrows the topics' spread towards equal shares (ideal "
            f"{1 / topics:.3f}) and draws the templated near-duplicates far less.",
            f"Took {time.perf_counter() - start:.1f} s.",
            "",
            summary.format(data.texts),
        ]
    )
    files: list[Path] = []
    if out_dir is not None:
        files = _write_outputs(
            Path(out_dir), data.texts, labels, embeddings, result, weights, modes, report
        )
    return DemoResult(report=report, shares=shares, files=files, weights=summary)


def _table(shares: dict[str, tuple[float, float, float]], labels: list[str]) -> str:
    rows = [("group", "prompts", "of the set", "uniform sample", "inverse-density sample")]
    for group, (whole, uniform, dense) in shares.items():
        count = sum(label == group for label in labels)
        rows.append((group, str(count), f"{whole:.3f}", f"{uniform:.3f}", f"{dense:.3f}"))
    return format_table(rows)


def _write_outputs(
    folder: Path,
    texts: list[str],
    labels: list[str],
    embeddings: torch.Tensor,
    result: DensityResult,
    weights: torch.Tensor,
    modes: torch.Tensor,
    report: str,
) -> list[Path]:
    from katdensity import viz

    folder.mkdir(parents=True, exist_ok=True)
    ids = [prompt_id(text) for text in texts]
    prompts, report_path = folder / "prompts.jsonl", folder / "report.md"
    with atomic_path(prompts) as temporary, temporary.open("w", encoding="utf-8") as out:
        for identifier, text, label in zip(ids, texts, labels, strict=True):
            out.write(json.dumps({"id": identifier, "prompt": text, "src": label}) + "\n")
    with atomic_path(report_path) as temporary:
        temporary.write_text(f"# katdensity demo\n\n```text\n{report}\n```\n", encoding="utf-8")
    files = [prompts, report_path]
    json_path, html_path = folder / "view.json", folder / "view.html"
    points: dict[str, Any] = {
        "log_density": result.log_density,
        "weights": weights,
        "texts": texts,
        "ids": ids,
        "labels": labels,
        "neighbors": result.neighbors,
        "modes": modes,
    }
    try:
        viz.write_view(
            html_path,
            embeddings,
            json_path=json_path,
            title="katdensity demo: generated prompts",
            **points,
        )
        files += [html_path, json_path]
    except MissingDependencyError:
        viz.write_view_json(json_path, embeddings, **points)
        files.append(json_path)
        logger.warning('view.html needs plotly: pip install "katdensity[viz]"')
    return files
