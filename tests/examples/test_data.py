from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import pytest

from examples.data import (
    MODIFIERS,
    TEMPLATES,
    TOPICS,
    load_examples,
    make_dataset,
    on_topic,
    topic_reward,
    write_jsonl,
)


def test_topics_are_zipf_sized_with_near_duplicate_groups_and_unseen_heldout_subjects() -> None:
    train, heldout = make_dataset(topic_size=120, duplicate_group_size=30, seed=1)
    sizes = Counter(e.group for e in train)
    names = list(TOPICS)
    assert [sizes[name] for name in names] == [max(2, 120 // (t + 1)) for t in range(8)]
    assert [sizes[f"dup:{name}"] for name in names[:3]] == [30, 30, 30]
    assert Counter(e.topic for e in heldout) == {name: 8 for name in names}
    for name, topic in TOPICS.items():
        held_out_subject = topic.subjects[-1]
        assert all(held_out_subject in e.prompt for e in heldout if e.topic == name)
        assert not any(
            e.prompt.endswith((f" {held_out_subject}.", f" {held_out_subject}?"))
            for e in train
            if e.topic == name
        )
    assert all(on_topic(e.chosen, e.topic) for e in train)
    assert make_dataset(topic_size=120, seed=1) == make_dataset(topic_size=120, seed=1)


def test_fewer_phrasings_make_large_topics_repeat_their_prompts() -> None:
    narrow, heldout = make_dataset(topic_size=300, templates=2, modifiers=1, seed=0)
    openings = tuple(t.split("{s}")[0] for t in TEMPLATES[:2])
    topical = [e for e in narrow + heldout if not e.group.startswith("dup:")]
    assert all(e.prompt.startswith(openings) for e in topical)
    assert not any(e.prompt.endswith(MODIFIERS[1:]) for e in topical)
    # 7 subjects x 6 places x 2 templates = 84 possible prompts: the 300 cat prompts repeat
    # them, the 37 music prompts hardly do.
    distinct = {name: len({e.prompt for e in narrow if e.group == name}) for name in TOPICS}
    assert (distinct["cats"], distinct["music"]) == (84, 31)
    full, _ = make_dataset(topic_size=300, seed=0)
    assert len({e.prompt for e in full if e.group == "cats"}) > 250
    # The defaults are every phrasing: the data the first setup's runs trained on (computed
    # with the generator before the phrasing parameters existed, commit 6c0f355).
    train, heldout = make_dataset(topic_size=300, duplicate_group_size=100, seed=0)
    records = json.dumps([asdict(e) for e in train + heldout]).encode()
    assert hashlib.sha256(records).hexdigest() == (
        "0d026cfd102d8fec5d149c30c2dc9e88383405c6ca9f63b7d68001af6d3722d5"
    )
    with pytest.raises(ValueError, match="templates must be 1 to 8 and modifiers 1 to 5"):
        make_dataset(templates=0)


def test_rejected_responses_are_generic_repetitive_or_off_topic() -> None:
    train, _ = make_dataset(topic_size=120, seed=0)
    for e in train:
        words = e.rejected.rstrip(".").split()
        repetitive = len(set(words)) == 1
        assert repetitive or not on_topic(e.rejected, e.topic) or e.rejected.startswith("it is")


def test_loaders_read_the_bundled_and_hh_formats(tmp_path: Path) -> None:
    train, _ = make_dataset(topic_size=30, seed=0)
    write_jsonl(train, tmp_path / "train.jsonl")
    assert load_examples(tmp_path / "train.jsonl") == train
    hh = {
        "chosen": "\n\nHuman: Name a cat.\n\nAssistant: Tom.",
        "rejected": "\n\nHuman: Name a cat.\n\nAssistant: A dog.",
    }
    (tmp_path / "hh.jsonl").write_text(json.dumps(hh) + "\n")
    (example,) = load_examples(tmp_path / "hh.jsonl")
    assert (example.prompt, example.chosen, example.rejected) == ("Name a cat.", "Tom.", "A dog.")


def test_topic_reward_is_on_topic_minus_repetition() -> None:
    noun = TOPICS["cats"].nouns[0]
    assert topic_reward(f"the soft {noun} sleeps.", "cats") == 1.0
    # 4 words, 2 distinct: half of them repeat.
    assert topic_reward(f"{noun} {noun} {noun} naps", "cats") == pytest.approx(1.0 - 0.5)
    assert topic_reward("a quiet evening.", "cats") == 0.0
    assert topic_reward("", "cats") == -1.0
