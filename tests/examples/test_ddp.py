from __future__ import annotations

import datetime
import json
import os
import socket
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from examples.ddp_snippet import shutdown, train
from katdensity import ExactKNNDensity, InverseDensitySampler, inverse_density_weights
from katdensity.synthetic import prompt_mixture

WORLD_SIZE = 2


def _worker(rank: int, port: int, out: str) -> None:
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    torch.set_num_threads(1)
    # A timeout turns a deadlocked collective into a failure instead of a hung test.
    dist.init_process_group(
        "gloo", rank=rank, world_size=WORLD_SIZE, timeout=datetime.timedelta(seconds=60)
    )
    try:
        rows, weights = train()
    except BaseException:
        dist.destroy_process_group()
        raise
    Path(out, f"rank{rank}.json").write_text(
        json.dumps({"rows": rows, "weights": weights.tolist()})
    )
    shutdown()  # see the NOTE in examples/ddp_snippet.py: a plain exit aborts 1 time in 5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_ddp_snippet_trains_disjoint_shards_of_one_draw(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD_SIZE)]
    weights = torch.tensor(results[0]["weights"], dtype=torch.float64)
    assert all(result["weights"] == results[0]["weights"] for result in results)

    # The shared search finds the density one process finds alone, up to rounding: hence the
    # broadcast, which makes every rank sample from bit-identical weights.
    embeddings = prompt_mixture(n_topics=4, topic_size=200, seed=0).embeddings
    alone = inverse_density_weights(ExactKNNDensity(k=10).estimate(embeddings).log_density)
    torch.testing.assert_close(weights, alone, rtol=1e-4, atol=1e-6)  # up to rounding

    for epoch in (0, 1):
        draw = InverseDensitySampler(weights, num_samples=256, seed=0, distributed="replicate")
        draw.set_epoch(epoch)
        expected = list(draw)
        for rank, result in enumerate(results):
            trained = result["rows"][epoch * 128 : (epoch + 1) * 128]
            assert trained == expected[rank::WORLD_SIZE]
