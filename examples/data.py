"""Preference data for the examples: a bundled generator and loaders for JSONL files.

The generator imitates the shape of a real RLHF prompt set, small enough for a CPU:

- topics of Zipf-distributed sizes (topic t holds `topic_size / (t + 1)` prompts), each
  asking for a line about one subject ("Write a line about kittens. Be vivid.");
- near-duplicate groups: one prompt rewritten many times with trivial changes (case,
  punctuation, "please"), the templated prompts that dominate scraped sets;
- for every prompt a *chosen* response that is on-topic and varied (random words from the
  topic's vocabulary in one of several sentence shapes) and a *rejected* one that is
  generic, repetitive or about another topic.

Held-out prompts use subjects that no training prompt mentions, the same number per topic,
so a rare topic counts as much as a common one when diversity is measured.

Run `python -m examples.data --out data/` to write `train.jsonl` and `heldout.jsonl`; every
script also accepts such a file (or any prompt file katdensity.io reads) with `--data`.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from katdensity.io import read_prompts


@dataclass(frozen=True)
class Topic:
    subjects: tuple[str, ...]  # what prompts ask about; the last one is held out
    adjectives: tuple[str, ...]
    nouns: tuple[str, ...]
    verbs: tuple[str, ...]
    places: tuple[str, ...]


# fmt: off
TOPICS: dict[str, Topic] = {
    "cats": Topic(
        ("cats", "a cat", "my cat", "kittens", "a sleepy cat", "an old tomcat", "a stray cat", "a tabby cat"),
        ("soft", "sleepy", "curious", "striped", "lazy", "ginger"),
        ("cat", "kitten", "tabby", "tomcat", "paw", "whisker"),
        ("naps", "purrs", "stretches", "pounces", "yawns", "hides"),
        ("on the rug", "by the window", "in the sun", "under the bed", "on the sofa", "near the fire")),
    "sea": Topic(
        ("the sea", "the ocean", "waves", "a beach", "the tide", "a harbour", "the coast", "a stormy sea"),
        ("grey", "salty", "restless", "deep", "cold", "bright"),
        ("wave", "tide", "gull", "boat", "shell", "current"),
        ("rolls", "crashes", "drifts", "glitters", "swirls", "whispers"),
        ("on the shore", "past the pier", "under the cliffs", "at dawn", "in the bay", "over the rocks")),
    "coffee": Topic(
        ("coffee", "an espresso", "morning coffee", "a latte", "a coffee shop", "a cup of coffee", "coffee beans", "iced coffee"),
        ("dark", "bitter", "hot", "strong", "creamy", "fresh"),
        ("cup", "mug", "bean", "brew", "roast", "crema"),
        ("steams", "warms", "cools", "brews", "drips", "pours"),
        ("on the desk", "at the counter", "before work", "in the kitchen", "after lunch", "in the cafe")),
    "mountains": Topic(
        ("mountains", "a mountain", "a high peak", "the alps", "a ridge", "a summit", "a glacier", "a mountain pass"),
        ("tall", "snowy", "rocky", "steep", "silent", "blue"),
        ("peak", "ridge", "cliff", "summit", "glacier", "valley"),
        ("towers", "looms", "shines", "stands", "rises", "endures"),
        ("above the clouds", "in the north", "at dusk", "over the pines", "beyond the lake", "in the haze")),
    "rain": Topic(
        ("rain", "a rainy day", "a storm", "drizzle", "a downpour", "spring rain", "a thunderstorm", "rain at night"),
        ("wet", "heavy", "gentle", "steady", "warm", "dark"),
        ("drop", "puddle", "cloud", "gutter", "umbrella", "shower"),
        ("falls", "taps", "drums", "soaks", "patters", "streams"),
        ("on the roof", "in the street", "all night", "against the glass", "over the town", "in the garden")),
    "trains": Topic(
        ("trains", "a train", "a night train", "the railway", "a steam engine", "a station", "a freight train", "the subway"),
        ("long", "fast", "late", "crowded", "old", "quiet"),
        ("train", "carriage", "engine", "platform", "track", "whistle"),
        ("rattles", "chugs", "speeds", "waits", "departs", "brakes"),
        ("through the hills", "at the station", "past the fields", "into the tunnel", "across the bridge", "after midnight")),
    "gardens": Topic(
        ("gardens", "a garden", "my garden", "a rose garden", "vegetable beds", "a herb garden", "a walled garden", "the orchard"),
        ("green", "wild", "tidy", "blooming", "shady", "fragrant"),
        ("rose", "tulip", "hedge", "seedling", "bee", "fern"),
        ("blooms", "grows", "sways", "climbs", "buzzes", "spreads"),
        ("by the gate", "along the path", "in the spring", "near the shed", "under the apple tree", "after the rain")),
    "music": Topic(
        ("music", "a song", "a piano", "jazz", "a concert", "a violin", "a drum beat", "an old record"),
        ("loud", "slow", "sweet", "bright", "sad", "lively"),
        ("song", "piano", "chord", "melody", "drum", "violin"),
        ("plays", "rings", "swells", "echoes", "hums", "fades"),
        ("in the hall", "on the radio", "late at night", "in the street", "through the wall", "at the party")),
}
# fmt: on

TEMPLATES = (
    "Write a line about {s}.",
    "Say something about {s}.",
    "Describe {s}.",
    "Tell me about {s}.",
    "One sentence on {s}, please.",
    "What is {s} like?",
    "Give me a short line about {s}.",
    "Paint a picture of {s} in words.",
)
MODIFIERS = ("", " Keep it short.", " Be vivid.", " Make it calm.", " In plain words.")
GENERIC = (
    "that is a good question.",
    "i do not know much about that.",
    "it is nice. it is nice. it is nice.",
    "sure, here is a line about it.",
    "there are many things to say.",
    "this is a very interesting topic.",
)


@dataclass(frozen=True)
class Example:
    prompt: str
    chosen: str
    rejected: str
    topic: str  # a key of TOPICS, or "" for loaded data without labels
    group: str  # the topic, or "dup:<topic>" for a near-duplicate group


def chosen_response(topic: Topic, rng: random.Random) -> str:
    """An on-topic, varied line: random vocabulary in one of four sentence shapes."""
    adj, other_adj = rng.sample(topic.adjectives, 2)
    noun, verb, place = (
        rng.choice(topic.nouns),
        rng.choice(topic.verbs),
        rng.choice(topic.places),
    )
    other_noun, other_verb = rng.choice(topic.nouns), rng.choice(topic.verbs)
    return rng.choice(
        (
            f"the {adj} {noun} {verb} {place}.",
            f"a {adj} {noun} {verb} {place}, and a {other_noun} {other_verb}.",
            f"{place}, the {noun} {verb}.",
            f"{adj} and {other_adj}, the {noun} {verb} {place}.",
        )
    )


def rejected_response(topic_name: str, rng: random.Random) -> str:
    """Generic, repetitive, or about another topic."""
    kind = rng.randrange(3)
    if kind == 0:
        return rng.choice(GENERIC)
    if kind == 1:
        noun = rng.choice(TOPICS[topic_name].nouns)
        return " ".join([noun] * rng.randint(4, 8)) + "."
    other = rng.choice([name for name in TOPICS if name != topic_name])
    return chosen_response(TOPICS[other], rng)


def topic_prompt(
    topic: Topic,
    subject: str,
    rng: random.Random,
    *,
    templates: int = len(TEMPLATES),
    modifiers: int = len(MODIFIERS),
) -> str:
    """A request for a line about `subject`, set in one of the topic's places, phrased with
    one of the first `templates` templates and the first `modifiers` endings."""
    template, place = rng.choice(TEMPLATES[:templates]), rng.choice(topic.places)
    return template.format(s=f"{subject} {place}") + rng.choice(MODIFIERS[:modifiers])


def near_duplicate(prompt: str, rng: random.Random) -> str:
    """A trivial rewrite: case, final punctuation, spacing, politeness."""
    text = prompt.rstrip(".?")
    if rng.random() < 0.5:
        text = text.lower()
    if rng.random() < 0.3:
        text = text.replace(" ", "  ", 1)
    text += rng.choice((".", "", "!", "..", " please.", ", please."))
    return (
        rng.choice(("", "Please ", "Hey, ", "Quick one: ")) + text if rng.random() < 0.4 else text
    )


def make_dataset(
    *,
    topic_size: int = 300,
    n_duplicate_groups: int = 3,
    duplicate_group_size: int = 100,
    heldout_per_topic: int = 8,
    templates: int = len(TEMPLATES),
    modifiers: int = len(MODIFIERS),
    seed: int = 0,
) -> tuple[list[Example], list[Example]]:
    """The bundled preference data: `(train, heldout)`.

    Args:
        topic_size: prompts in the largest topic; topic `t` gets `topic_size // (t + 1)`.
        n_duplicate_groups: near-duplicate groups, on the first topics (at most 8).
        duplicate_group_size: rewrites per near-duplicate group.
        heldout_per_topic: held-out prompts per topic, on the held-out subject.
        templates: prompts use the first this many of `TEMPLATES` (1 to 8).
        modifiers: and the first this many of `MODIFIERS` (1 to 5; 1 is no ending). Fewer
            phrasings make a large topic repeat its prompts verbatim, as scraped sets do,
            so its density rises with its size.
        seed: the same seed gives the same data.
    """
    if not (1 <= templates <= len(TEMPLATES) and 1 <= modifiers <= len(MODIFIERS)):
        raise ValueError(
            f"templates must be 1 to {len(TEMPLATES)} and modifiers 1 to {len(MODIFIERS)}, "
            f"got {templates} and {modifiers}"
        )
    rng = random.Random(seed)
    phrasing = dict(templates=templates, modifiers=modifiers)

    def example(prompt: str, name: str, group: str) -> Example:
        return Example(
            prompt, chosen_response(TOPICS[name], rng), rejected_response(name, rng), name, group
        )

    train: list[Example] = []
    heldout: list[Example] = []
    for t, (name, topic) in enumerate(TOPICS.items()):
        *subjects, heldout_subject = topic.subjects
        for _ in range(max(2, topic_size // (t + 1))):
            prompt = topic_prompt(topic, rng.choice(subjects), rng, **phrasing)
            train.append(example(prompt, name, name))
        for _ in range(heldout_per_topic):
            prompt = topic_prompt(topic, heldout_subject, rng, **phrasing)
            heldout.append(example(prompt, name, name))
    for name in list(TOPICS)[:n_duplicate_groups]:
        base = TEMPLATES[0].format(s=TOPICS[name].subjects[0])
        for _ in range(duplicate_group_size):
            train.append(example(near_duplicate(base, rng), name, f"dup:{name}"))
    rng.shuffle(train)
    return train, heldout


def on_topic(response: str, topic: str) -> bool:
    """Whether `response` uses a noun or verb of `topic`'s vocabulary: the ground truth the
    reward model only approximates."""
    words = set(re.findall(r"[a-z]+", response.lower()))
    return bool(words & set(TOPICS[topic].nouns + TOPICS[topic].verbs))


def topic_reward(response: str, topic: str) -> float:
    """A verifiable reward: 1 for an on-topic response, minus the share of repeated words
    (an empty response gets -1). It measures what `on_topic` measures on every topic alike,
    rare or common, which a learned reward model only approximates."""
    words = re.findall(r"[a-z]+", response.lower())
    repeated = 1 - len(set(words)) / len(words) if words else 1.0
    return float(on_topic(response, topic)) - repeated


def write_jsonl(examples: list[Example], path: str | Path) -> None:
    with Path(path).open("w", encoding="utf-8") as f:
        for i, example in enumerate(examples):
            f.write(json.dumps({"id": f"ex{i}", **asdict(example)}) + "\n")


def load_examples(path: str | Path) -> list[Example]:
    """Read a JSONL file with katdensity.io: the bundled format, `{"prompt", "chosen",
    "rejected"}`, Anthropic HH pairs, or plain prompt records (then without responses)."""
    examples = []
    for prompt in read_prompts(path):
        record = prompt.record
        chosen, rejected = record.get("chosen", ""), record.get("rejected", "")
        if "prompt" not in record:  # HH transcripts: the response is the last Assistant turn
            chosen, rejected = (
                text.rsplit("\n\nAssistant:", 1)[-1].strip() for text in (chosen, rejected)
            )
        topic = record.get("topic", "")
        examples.append(Example(prompt.text, chosen, rejected, topic, record.get("group", topic)))
    return examples


def load_data(
    path: str | None,
    *,
    topic_size: int,
    seed: int,
    templates: int = len(TEMPLATES),
    modifiers: int = len(MODIFIERS),
) -> tuple[list[Example], list[Example]]:
    """`(train, heldout)`: from `path` (then heldout is empty) or the bundled generator."""
    if path is not None:
        return load_examples(path), []
    return make_dataset(
        topic_size=topic_size,
        duplicate_group_size=topic_size // 3,
        templates=templates,
        modifiers=modifiers,
        seed=seed,
    )


def load_stage_data(args: argparse.Namespace) -> tuple[list[Example], list[Example]]:
    """A training script's data, from the arguments `add_data_arguments` added."""
    return load_data(
        args.data,
        topic_size=args.topic_size,
        seed=args.data_seed,
        templates=args.templates,
        modifiers=args.modifiers,
    )


# The options of `add_data_arguments` that decide which prompts a run trains on.
DATA_OPTIONS = ("data", "data_seed", "topic_size", "templates", "modifiers")


def check_same_data(saved: dict[str, Any], args: argparse.Namespace) -> None:
    """Raise `ValueError` if `args` choose other data than a checkpoint's `saved` arguments.

    A resumed run that changed `--templates`, say, would draw the same row numbers from
    other prompts, and nothing else would notice.
    """
    differ = [
        f"--{name.replace('_', '-')} {saved[name]} in the checkpoint, {getattr(args, name)} now"
        for name in DATA_OPTIONS
        if name in saved and saved[name] != getattr(args, name)
    ]
    if differ:
        raise ValueError(
            "the checkpoint was trained on other data (" + "; ".join(differ) + "): resume "
            "with its data options"
        )


def add_data_arguments(parser: argparse.ArgumentParser, records: str) -> None:
    """A training script's `--data` (a JSONL of `records`), `--data-seed`, `--topic-size`
    and the phrasing."""
    parser.add_argument("--data", default=None, help=f"{records} JSONL (default: bundled data)")
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the bundled data")
    parser.add_argument("--topic-size", type=int, default=None, help="bundled data: largest topic")
    add_phrasing_arguments(parser)


def add_phrasing_arguments(parser: argparse.ArgumentParser) -> None:
    """`--templates` and `--modifiers`: how varied the bundled data's prompts are."""
    for flag, phrasings, help_text in (
        ("--templates", TEMPLATES, "bundled data: phrase prompts with the first N templates"),
        ("--modifiers", MODIFIERS, "bundled data: and the first N endings, 1 for none"),
    ):
        parser.add_argument(
            flag,
            type=int,
            choices=range(1, len(phrasings) + 1),
            default=len(phrasings),
            metavar=f"1..{len(phrasings)}",
            help=f"{help_text} (default {len(phrasings)})",
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="data", help="folder for train.jsonl and heldout.jsonl")
    parser.add_argument("--topic-size", type=int, default=300, help="prompts in the largest topic")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the generator")
    add_phrasing_arguments(parser)
    args = parser.parse_args(argv)
    train, heldout = load_data(
        None,
        topic_size=args.topic_size,
        seed=args.seed,
        templates=args.templates,
        modifiers=args.modifiers,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(train, out / "train.jsonl")
    write_jsonl(heldout, out / "heldout.jsonl")
    print(f"wrote {len(train)} training and {len(heldout)} held-out examples to {out}/")


if __name__ == "__main__":
    main()
