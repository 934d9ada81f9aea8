"""A verl main for the tests: verl's own `run_ppo` (Ray, started from the config's
`ray_kwargs`) with a task runner that builds no model, only the prompt sampler, by each name
verl's trainers call it, and writes what each drew to `+probe_out=PATH`.

Run as `python -m katdensity.integrations.verl --entry tests.verl.ray_probe OVERRIDES...`.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import hydra
import ray

from tests.verl.layout import IMPORTERS


@ray.remote
class SamplerProbe:
    """Stands in for verl's TaskRunner, in a Ray worker of its own."""

    def run(self, config: Any) -> None:
        import os

        from verl.trainer.ppo.utils import create_rl_dataset

        dataset = create_rl_dataset(  # as the trainers call it
            config.data.train_files,
            config.data,
            None,
            None,
            max_samples=config.data.get("train_max_samples", -1),
        )
        report: dict[str, Any] = {"pid": os.getpid()}
        for name in IMPORTERS:
            sampler = importlib.import_module(name).create_rl_sampler(config.data, dataset)
            report[name] = {"class": type(sampler).__name__, "draws": list(sampler)}
        Path(config.probe_out).write_text(json.dumps(report))


@hydra.main(config_path="pkg://verl.trainer.config", config_name="ppo_trainer", version_base=None)
def main(config: Any) -> None:
    from verl.trainer.main_ppo import run_ppo

    run_ppo(config, task_runner_class=SamplerProbe)


if __name__ == "__main__":
    main()
