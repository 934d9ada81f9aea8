"""The A/B experiment: does sampling rare prompts more often reduce mode collapse in GRPO?

The prompt set (examples/data.py) is skewed the way scraped sets are: eight topics of
Zipf-distributed sizes, the four largest ("common") holding 77% of the topic prompts and
three groups of near-duplicate rewrites on top of them, the four smallest ("rare") 23%.
The CPU and GPU presets phrase every topic prompt, training and held-out, with 2 templates
and no ending (`--templates 2 --modifiers 1`), so the large topics repeat their prompts
verbatim and are dense where they are large; `--preset cpu-varied`, the first setup, uses
every phrasing. The reward is verifiable (`examples.data.topic_reward`: 1 for an on-topic
line, minus the share of repeated words), so it rewards on every topic exactly what the
metrics measure.

Primary endpoint, fixed before the run (`examples.report.PRIMARY`): **collapse onto the
common topics on rare held-out prompts**, the share of completions to a rare topic's
held-out prompts that use a common topic's vocabulary and none of their own. It is judged
by the difference density (the library's default weights) minus uniform, paired by GRPO
seed within each base model, estimated per base and pooled over bases (the mean of the
per-base estimates, ± its standard error from their spread over bases, since a rerun on
another machine trains other base models). A two-sided 5% t test of the pooled estimate
decides: significantly below 0 supports the hypothesis, above 0 contradicts it, anything
else is no detectable difference, and the minimal detectable effect (80% power) is stated
beside it. Everything else is secondary.

1. For each base seed, train an SFT policy (examples/train_sft.py) with that seed.
2. From each base, for each GRPO seed, run GRPO once per arm with everything equal (seed,
   sampler seed, sampling generator, steps) except the prompt weights: `uniform`, and the
   density weights at three strengths (`examples.report.ARMS`): weaker (ESS floor 0.85),
   the default (`beta=1`, floor 0.65) and stronger (`beta=2`, floor 0.4).
3. Sample `--samples` completions per held-out prompt (subjects no training prompt
   mentions, the same number per topic) from every policy and from the bases, with one
   fixed evaluation seed, and measure them: the endpoint, on-topic shares per tier, the
   reward, the KL to the base, and katdensity.metrics' diversity measures.
4. Write `--results` (Markdown, by examples/report.py: the endpoint first, then the
   endpoint against the weights' ESS/N, the sanity check that uniform GRPO over-trains the
   dense part, the secondary metrics and the draws per prompt group) and a plot beside it
   (examples/plot.py).

This file runs the experiment; what it compares, the statistics and the report's text live
in examples/report.py, which examples/pool.py shares to pool several reports. The reports
kept in the repository are in examples/results/.

    python -m examples.compare                  # --preset cpu: 8 bases x 2 seeds x 4 arms
    python -m examples.compare --preset gpu     # larger models, 24 bases x 2 seeds, CUDA
    python -m examples.compare --bases 8 9 10 11 12 13 14 15 \
        --results examples/results/RESULTS-bases8-15.md
    python -m examples.pool examples/results/RESULTS-*bases*.md  # every report's bases, pooled

`--preset cpu` (8 bases x 2 seeds x 4 arms, 24 samples per held-out prompt) takes 27
minutes on two cores of an Intel Xeon, 31-33 on an AMD EPYC; `--preset smoke` is the
test's. Many bases with few seeds each beat few bases with many seeds (see `EXPERIMENTS`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch

from examples import train_grpo, train_sft
from examples.common import cpu_model, device_name, load_checkpoint, pad_batch, pick_device
from examples.data import MODIFIERS, TEMPLATES, Example, load_data, on_topic, topic_reward
from examples.gpt import GPT, load_model
from examples.grpo import token_logprobs
from examples.plot import write_plot
from examples.report import ARMS, COMMON, RARE, Runs, write_report
from examples.tokenizer import ByteTokenizer
from katdensity import HashingEmbedder
from katdensity.metrics import distinct_n, diversity_report

EXPERIMENTS: dict[str, dict[str, Any]] = {
    "smoke": dict(stages="tiny", bases=[0], seeds=[0], samples=2, max_steps=2, grpo=[]),
    # cpu: the bundled data phrased with 2 templates and no ending, so the large topics
    # repeat their prompts verbatim and are dense where they are large (in cpu-varied, the
    # first setup, every phrasing is used, and the base model's hidden states hardly see a
    # large topic as dense). lr 5e-4 (the stage preset has 1e-4): in pilots on bases 90-92,
    # uniform GRPO raised the collapse by +0.046 ± 0.009 at 5e-4 and +0.033 ± 0.019 at 3e-4.
    # 8 bases x 2 seeds: in the first setup, two runs of 3 bases x 5 seeds (AVX-512 and AVX2
    # kernels) put the effect's SD between bases at about 0.043 and a seed pair's SD within
    # a base at 0.068, so the pooled variance (0.043^2 + 0.068^2 / seeds) / bases is 0.00052
    # here against 0.00091 for 3 x 5, at about the same cost (an SFT run costs about 2.5
    # GRPO runs).
    "cpu": dict(
        stages="small",
        bases=list(range(8)),
        seeds=[0, 1],
        samples=24,
        max_steps=None,
        grpo=["--lr", "5e-4"],
        data=dict(templates=2, modifiers=1),
    ),
    # cpu-varied, lr 3e-4 (the stage preset has 1e-4): at 1e-4 uniform GRPO barely moved in
    # 100 steps and the sanity check failed; at 3e-4 it visibly over-trained the common topics.
    "cpu-varied": dict(
        stages="small",
        bases=list(range(8)),
        seeds=[0, 1],
        samples=24,
        max_steps=None,
        grpo=["--lr", "3e-4"],
    ),
    # gpu: the cpu preset's data at the medium stage preset's settings; not yet run or piloted.
    "gpu": dict(
        stages="medium",
        bases=list(range(24)),
        seeds=[0, 1],
        samples=16,
        max_steps=None,
        grpo=[],
        data=dict(templates=2, modifiers=1),
    ),
}


def collapsed(response: str, topic: str) -> bool:
    """About a common topic instead of its own `topic`."""
    return not on_topic(response, topic) and any(on_topic(response, c) for c in COMMON)


@torch.no_grad()
def evaluate(
    policy: GPT,
    reference: GPT,
    heldout: list[Example],
    *,
    samples: int,
    max_new_tokens: int,
    seed: int,
) -> dict[str, float]:
    """Metrics of `samples` completions per held-out prompt (temperature 1, fixed seed)."""
    tokenizer = ByteTokenizer()
    device = policy.lm_head.weight.device
    policy.eval()
    rows = [e for e in heldout for _ in range(samples)]
    prompts = [tokenizer.encode_prompt(e.prompt) for e in rows]
    generator = torch.Generator(device=device).manual_seed(seed)
    completions = policy.generate(
        prompts,
        max_new_tokens,
        eos_id=tokenizer.eos_token_id,
        pad_id=tokenizer.pad_token_id,
        generator=generator,
    )
    texts = [tokenizer.decode(c) for c in completions]
    idx, response_mask = pad_batch(prompts, completions, tokenizer.pad_token_id)
    idx, mask = idx.to(device), response_mask[:, 1:].to(device)
    logprobs = token_logprobs(policy(idx[:, :-1]), idx[:, 1:])
    ref_logprobs = token_logprobs(reference(idx[:, :-1]), idx[:, 1:])
    # KL(pi || pi_ref) of whole completions: E_pi[log pi(o) - log pi_ref(o)], by Monte Carlo
    kl = ((logprobs - ref_logprobs) * mask).sum(dim=1).mean()
    # Vendi needs a non-zero embedding for every text; an empty completion gets a marker.
    embeddings = HashingEmbedder().embed([t if t.strip() else "<empty>" for t in texts])
    metrics = {**diversity_report(texts, embeddings), "kl": float(kl)}
    metrics["reward"] = statistics.fmean(
        topic_reward(t, e.topic) for t, e in zip(texts, rows, strict=True)
    )
    metrics["prompt_distinct_2"] = statistics.fmean(
        distinct_n(texts[i : i + samples], 2) for i in range(0, len(texts), samples)
    )
    for tier, topics in (("common", COMMON), ("rare", RARE)):
        keep = [(t, e.topic) for t, e in zip(texts, rows, strict=True) if e.topic in topics]
        metrics[f"{tier}/on_topic"] = statistics.fmean(on_topic(t, name) for t, name in keep)
        metrics[f"{tier}/collapse"] = statistics.fmean(collapsed(t, name) for t, name in keep)
    return metrics


def run_arm(argv: list[str], log: str, threads: int, eval_args: dict[str, Any]) -> dict[str, Any]:
    """One GRPO run and its evaluation, in a worker process; its output goes to `log`."""
    torch.set_num_threads(threads)
    with open(log, "w") as f, contextlib.redirect_stdout(f):
        path = train_grpo.main(argv)
    checkpoint = load_checkpoint(path)
    device = pick_device(eval_args["device"])
    policy = load_model(checkpoint, device)
    reference = load_model(load_checkpoint(eval_args["sft"]), device)
    metrics = evaluate(policy, reference, eval_args["heldout"], **eval_args["evaluation"])
    return {"metrics": metrics, "draws": checkpoint["draws"], "ess": checkpoint["weights_ess"]}


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--preset",
        choices=list(EXPERIMENTS),
        default="cpu",
        help="experiment (default cpu: 27-33 minutes on 2 cores)",
    )
    parser.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda, ...")
    parser.add_argument("--bases", type=int, nargs="+", help="SFT seeds, one base model each")
    parser.add_argument("--seeds", type=int, nargs="+", help="GRPO seeds, one run per arm")
    parser.add_argument("--max-steps", type=int, help="GRPO steps per run")
    parser.add_argument("--samples", type=int, help="completions per held-out prompt")
    parser.add_argument(
        "--jobs",
        type=int,
        default=2,
        help="runs in parallel processes, each with its share of the threads",
    )
    parser.add_argument("--out-dir", default="runs/compare", help="checkpoints and logs")
    parser.add_argument(
        "--results", help="the report (default: RESULTS.md in --out-dir); the plot goes beside it"
    )
    args = parser.parse_args(argv)
    experiment = EXPERIMENTS[args.preset]
    bases = args.bases or experiment["bases"]
    seeds = args.seeds or experiment["seeds"]
    samples = args.samples or experiment["samples"]
    start, load_before = time.time(), os.getloadavg()[0]
    out = Path(args.out_dir)
    phrasing = experiment.get("data", {})
    common = ["--preset", experiment["stages"], "--device", args.device]
    common += [f"--{name}={value}" for name, value in phrasing.items()]
    threads = max(1, torch.get_num_threads() // args.jobs)
    context = get_context("spawn")
    out.mkdir(parents=True, exist_ok=True)

    with ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
        sft_futures = {
            b: pool.submit(
                _train_base,
                [*common, "--seed", str(b), "--out-dir", str(out / f"sft{b}")],
                str(out / f"sft{b}.log"),
                threads,
            )
            for b in bases
        }
        sft = {b: future.result() for b, future in sft_futures.items()}
    grpo_defaults = train_grpo.parse_args(["--sft", str(sft[bases[0]]), *common])
    max_steps = args.max_steps or experiment["max_steps"] or grpo_defaults.max_steps
    train, heldout = load_data(None, topic_size=grpo_defaults.topic_size, seed=0, **phrasing)
    evaluation = dict(samples=samples, max_new_tokens=grpo_defaults.max_new_tokens, seed=1234)
    jobs = []
    for base in bases:
        eval_args = dict(device=args.device, sft=sft[base], heldout=heldout, evaluation=evaluation)
        for seed in seeds:
            for arm in ARMS:
                run_dir = out / f"base{base}" / f"{arm.name}-seed{seed}"
                run_dir.mkdir(parents=True, exist_ok=True)
                argv_grpo = [
                    *common,
                    "--sft",
                    str(sft[base]),
                    *arm.flags(),
                    *experiment["grpo"],
                    "--seed",
                    str(seed),
                    "--max-steps",
                    str(max_steps),
                    "--out-dir",
                    str(run_dir),
                ]
                jobs.append(
                    ((arm.name, base, seed), argv_grpo, str(run_dir / "log.txt"), eval_args)
                )
    results: dict[tuple[str, int, int], dict[str, Any]] = {}
    with ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
        futures = [(key, log, pool.submit(run_arm, a, log, threads, e)) for key, a, log, e in jobs]
        for key, log, future in futures:
            results[key] = future.result()
            print(f"GRPO {key[0]} base {key[1]} seed {key[2]}: done, log in {log}")

    device = pick_device(args.device)
    base_metrics = {}
    for base in bases:
        reference = load_model(load_checkpoint(sft[base]), device)
        base_metrics[base] = evaluate(reference, reference, heldout, **evaluation)
    runs = Runs(results, bases, seeds, base_metrics)

    path = Path(args.results) if args.results else out / "RESULTS.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    plot = path.with_name(path.stem.lower() + ".png")
    has_plot = write_plot(plot, runs)
    command = "python -m examples.compare " + " ".join(sys.argv[1:] if argv is None else argv)
    if "ATEN_CPU_CAPABILITY" in os.environ:  # it changes the kernels, and so the base models
        command = f"ATEN_CPU_CAPABILITY={os.environ['ATEN_CPU_CAPABILITY']} {command}"
    setup = {
        "summary": (
            f"preset `{args.preset}` (stage preset `{experiment['stages']}`), "
            f"{len(train)} training prompts{_phrasing(phrasing, train)} in "
            f"{len(set(e.group for e in train))} groups, "
            f"{len(heldout)} held-out prompts × {samples} samples, {len(bases)} base models × "
            f"{len(seeds)} GRPO seeds × {len(ARMS)} arms, {max_steps} GRPO steps per run "
            f"{' '.join(experiment['grpo'])}, reward `topic_reward`."
        ),
        "machine": (
            f"{platform.machine()} ({cpu_model()}), {torch.get_num_threads()} torch threads, "
            f"torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()} CPU kernels), "
            f"device {device_name(device)}, {args.jobs} parallel run(s), "
            f"load average {load_before:.1f} when it started"
        ),
        "minutes": (time.time() - start) / 60,
    }
    write_report(
        path,
        command=command.strip(),
        runs=runs,
        train=train,
        plot=plot if has_plot else None,
        setup=setup,
    )
    print(f"wrote {path}" + (f" and {plot}" if has_plot else " (no matplotlib: no plot)"))
    return path


def _train_base(argv: list[str], log: str, threads: int) -> Path:
    """One SFT base model, in a worker process; its output goes to `log`."""
    torch.set_num_threads(threads)
    with open(log, "w") as f, contextlib.redirect_stdout(f):
        return train_sft.main(argv)


def _phrasing(phrasing: dict[str, int], train: list[Example]) -> str:
    """The bundled data's phrasing, where a preset narrows it."""
    if not phrasing:
        return ""
    distinct = len({e.prompt for e in train})
    templates = phrasing.get("templates", len(TEMPLATES))
    modifiers = phrasing.get("modifiers", len(MODIFIERS))
    endings = "no ending" if modifiers == 1 else f"the first {modifiers} endings"
    return f" ({distinct} distinct: {templates} templates, {endings})"


if __name__ == "__main__":
    main()
