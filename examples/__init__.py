"""Reference trainers built on katdensity: a minimal GPT, SFT, a reward model, GRPO with
density-aware prompt sampling, the uniform-vs-density A/B experiment, and TRL / verl / DDP
recipes. Run each as `python -m examples.<name> --help`; see docs/examples.md."""
