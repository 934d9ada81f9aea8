"""GRPO through TRL on SmolLM2-135M-Instruct: uniform, density and reward-driven prompt
weights compared. Run `python -m examples.real_lm --help`; see `__main__.py`."""
