"""Reference trainers built on katdensity: a minimal GPT, SFT, a reward model, GRPO with
density-aware prompt sampling, the uniform-vs-density A/B experiment (run by `compare`,
judged and written up by `report`, drawn by `plot`, pooled by `pool`; its reports are in
examples/results/), a TRL example and a DDP snippet (the TRL and verl integrations live in
katdensity.integrations). Run each as `python -m examples.<name> --help`; see
docs/examples.md."""
