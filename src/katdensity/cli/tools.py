"""The inspection subcommands: `neighbors`, `diversity` and `viz`."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from katdensity._atomic import atomic_path
from katdensity._table import format_table
from katdensity._text import shorten
from katdensity.cli.commands import embedded_prompts, embedder_for, estimator_for
from katdensity.errors import InvalidInputError
from katdensity.ids import check_unique_ids
from katdensity.io import EmbeddingsFile, load_embeddings, read_prompts
from katdensity.metrics import diversity_report
from katdensity.weights import weigh

__all__ = ["run_diversity", "run_neighbors", "run_viz"]

# Rows compared with the query at a time, so a memory-mapped file is never read whole.
_CHUNK_ROWS = 65_536
_SHOWN_CHARS = 100


def _embedder_from(stored: EmbeddingsFile, path: str, *, quiet: bool) -> Any:
    options = dict(stored.embedder)
    spec = options.pop("spec", None)
    if not isinstance(spec, str):
        raise InvalidInputError(
            f"{path} does not record the embedder that made it, so a query cannot be embedded "
            "the same way; use --id, or re-embed with `katdensity embed`"
        )
    return embedder_for(spec, options, quiet=quiet)


def _texts_by_id(data: str | None, field: str | None) -> dict[str, str]:
    if data is None:
        return {}
    prompts = read_prompts(data, field=field)
    check_unique_ids([p.id for p in prompts], source=f"--data {data}")
    return {p.id: p.text for p in prompts}


def run_neighbors(args: argparse.Namespace) -> None:
    if (args.query is None) == (args.id is None):
        raise InvalidInputError("give exactly one of --query and --id")
    if args.k < 1:
        raise InvalidInputError(f"-k should be a positive integer, but got -k {args.k}")
    stored = load_embeddings(args.emb)
    texts = _texts_by_id(args.data, args.field)
    exclude = -1
    if args.query is not None:
        embedder = _embedder_from(stored, args.emb, quiet=args.quiet)
        columns = stored.embeddings.shape[1]
        # A known dimension is checked first: a damaged file may record any `dim`.
        dim = embedder.dim
        query = embedder.embed([args.query])[0] if dim in (None, columns) else None
        if query is None or query.shape[0] != columns:
            raise InvalidInputError(
                f"the recorded embedder gives {dim if query is None else query.shape[0]} "
                f"dimensions but {args.emb} holds {columns}; re-embed the prompts with "
                "`katdensity embed`"
            )
    else:
        rows = {identifier: row for row, identifier in enumerate(stored.ids)}
        if args.id not in rows:
            raise InvalidInputError(f"--id should be an id of {args.emb}, but {args.id!r} is not")
        exclude = rows[args.id]
        query = _as_float64(stored.embeddings[exclude : exclude + 1])[0]
    similarities = _cosine_to_all(stored.embeddings, query)
    if exclude >= 0:
        similarities[exclude] = -math.inf
    k = min(args.k, similarities.numel() - (exclude >= 0))
    best = torch.topk(similarities, k)
    for rank, (similarity, row) in enumerate(
        zip(best.values.tolist(), best.indices.tolist(), strict=True), start=1
    ):
        identifier = stored.ids[row]
        text = shorten(texts[identifier], _SHOWN_CHARS) if identifier in texts else ""
        print(f"{rank:>3}  {similarity:+.4f}  {identifier}  {text}".rstrip())


def _as_float64(rows: torch.Tensor | np.ndarray) -> torch.Tensor:
    """A float64 copy of rows of a tensor or of a (read-only) memory-mapped array."""
    if isinstance(rows, torch.Tensor):
        return rows.double()
    return torch.from_numpy(np.array(rows, dtype=np.float64))


def _cosine_to_all(embeddings: Any, query: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of `query` to every row, reading `_CHUNK_ROWS` rows at a time."""
    direction = query.double() / query.double().norm().clamp_min(1e-300)
    parts = []
    for start in range(0, len(embeddings), _CHUNK_ROWS):
        rows = _as_float64(embeddings[start : start + _CHUNK_ROWS])
        parts.append(rows @ direction / rows.norm(dim=1).clamp_min(1e-300))
    return torch.cat(parts)


def run_diversity(args: argparse.Namespace) -> None:
    # The baseline (--compare) comes first, so each delta is --data minus --compare.
    files = [args.data] if args.compare is None else [args.compare, args.data]
    embedder = (
        embedder_for(args.embedder, {}, quiet=args.quiet) if args.embedder != "none" else None
    )
    reports = []
    for path in files:
        texts = [p.text for p in read_prompts(path, field=args.field)]
        if len(texts) < 2:
            raise InvalidInputError(f"{path} should hold at least two texts, but has {len(texts)}")
        embeddings = embedder.embed(texts) if embedder is not None else None
        reports.append(diversity_report(texts, embeddings))
    print(_diversity_table(files, reports))
    if args.json is not None:
        record: dict[str, Any] = {
            "embedder": args.embedder,
            "files": dict(zip(files, reports, strict=True)),
        }
        if len(reports) == 2:
            record["delta"] = {key: reports[1][key] - reports[0][key] for key in reports[0]}
        with atomic_path(args.json) as temporary:
            temporary.write_text(json.dumps(record, indent=2), encoding="utf-8")
        print(f"wrote {args.json}")


_LOWER_IS_MORE_DIVERSE = {"token_gini", "self_bleu"}


def _diversity_table(files: list[str], reports: Sequence[Mapping[str, float]]) -> str:
    header = ["metric", *(Path(path).name for path in files)]
    if len(reports) == 2:
        header.append("delta")
    rows = [header]
    for key in reports[0]:
        values = [report[key] for report in reports]
        cells = [f"{value:.4g}" for value in values]
        if len(values) == 2:
            cells.append(f"{values[1] - values[0]:+.4g}")
        note = " (lower: more diverse)" if key in _LOWER_IS_MORE_DIVERSE else ""
        rows.append([key + note, *cells])
    return format_table(rows)


def run_viz(args: argparse.Namespace) -> None:
    from katdensity import viz

    stored = load_embeddings(args.emb)
    prompts = None
    if args.data is not None:
        data = read_prompts(args.data, field=args.field)
        prompts = embedded_prompts(stored.ids, args.emb, data, args.data)
    texts = None if prompts is None else [p.text for p in prompts]
    labels = None
    if args.label is not None:
        if prompts is None:
            raise InvalidInputError("--label needs --data, the file holding the label field")
        labels = [str(p.record.get(args.label, "")) for p in prompts]
    estimator = estimator_for(args.estimator, k=args.k, quiet=args.quiet, smoothing=args.smoothing)
    weighted = weigh(estimator.estimate(stored.embeddings))  # the library's default weights
    result = weighted.density
    viz.write_view(
        args.out,
        stored.embeddings,
        log_density=result.log_density,
        weights=weighted.probabilities,
        texts=texts,
        ids=stored.ids,
        labels=labels,
        neighbors=result.neighbors,
        modes=weighted.modes,
        json_path=args.json,
        method=args.projection,
        max_points=args.max_points,
        seed=args.seed,
    )
    print(f"wrote {args.out}" + (f" and {args.json}" if args.json else ""))
