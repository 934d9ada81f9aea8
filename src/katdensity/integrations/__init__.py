"""Other projects' trainers, one module per project, each behind its extra.

- `katdensity.integrations.trl`: TRL's GRPO and RLOO trainers with prompts drawn by
  [`InverseDensitySampler`][katdensity.InverseDensitySampler]
  (`pip install "katdensity[trl]"`).
- `katdensity.integrations.verl`: verl's PPO/GRPO mains with the sampler built from
  `data.density.*` overrides (`pip install "katdensity[verl]"`).

`import katdensity` imports none of them, and importing this package imports no
third-party project: import the module of the project you use.
"""
