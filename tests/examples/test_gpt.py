from __future__ import annotations

import torch

from examples.gpt import GPT, PRESETS, GPTConfig, load_model, save_model
from examples.tokenizer import ByteTokenizer
from katdensity import HiddenStateEmbedder, LogitEmbedder

TOKENIZER = ByteTokenizer()


def sharp_model() -> GPT:
    """A random GPT with large weights, so that greedy decoding does not just repeat."""
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=64), seed=3).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(20.0)
    return model


def greedy_without_cache(model: GPT, prompt: list[int], steps: int) -> list[int]:
    sequence = list(prompt)
    for _ in range(steps):
        next_id = int(model(torch.tensor([sequence]))[0, -1].argmax())
        sequence.append(next_id)
        if next_id == TOKENIZER.eos_token_id:
            break
    return sequence[len(prompt) :]


def test_tokenizer_round_trip_and_chat_format() -> None:
    ids = TOKENIZER.encode_prompt("héllo") + TOKENIZER.encode_response("wörld")
    assert ids[0] == TOKENIZER.bos_token_id and ids[-1] == TOKENIZER.eos_token_id
    assert TOKENIZER.decode(ids) == "héllo\nwörld"
    assert max(ids) < TOKENIZER.vocab_size == GPTConfig().vocab_size


def test_forward_returns_logits_or_dict_whose_last_state_feeds_lm_head() -> None:
    model = GPT(PRESETS["tiny"]).eval()
    idx = torch.tensor([TOKENIZER.encode("a prompt")])
    logits = model(idx)
    out = model(idx, return_hidden_states=True)
    assert logits.shape == (1, idx.shape[1], TOKENIZER.vocab_size)
    assert len(out["hidden_states"]) == PRESETS["tiny"].n_layer + 2
    torch.testing.assert_close(model.lm_head(out["hidden_states"][-1]), logits)
    torch.testing.assert_close(out["logits"], logits)


def test_batched_cached_generation_equals_one_prompt_at_a_time_without_cache() -> None:
    model = sharp_model()
    prompts = [TOKENIZER.encode(t) for t in ("hi", "a much longer prompt here", "mid size")]
    batched = model.generate(
        prompts, 20, eos_id=TOKENIZER.eos_token_id, pad_id=TOKENIZER.pad_token_id, temperature=0
    )
    assert batched == [greedy_without_cache(model, p, 20) for p in prompts]
    assert len({tuple(c) for c in batched}) > 1 and len(set(batched[1])) > 2


def test_sampling_is_seeded_and_top_k_restricts_tokens() -> None:
    model = sharp_model()
    prompts = [TOKENIZER.encode("same")] * 8

    def sample(seed: int, top_k: int | None) -> list[list[int]]:
        return model.generate(
            prompts, 10, eos_id=TOKENIZER.eos_token_id, pad_id=TOKENIZER.pad_token_id,
            temperature=2.0, top_k=top_k, generator=torch.Generator().manual_seed(seed),
        )  # fmt: skip

    assert sample(0, None) == sample(0, None) != sample(1, None)
    assert all(len(c) == 10 or c[-1] == TOKENIZER.eos_token_id for c in sample(0, None))
    # top_k=1 is greedy whatever the temperature
    greedy = model.generate(
        prompts, 10, eos_id=TOKENIZER.eos_token_id, pad_id=TOKENIZER.pad_token_id, temperature=0
    )
    assert sample(2, 1) == greedy


def test_initialisation_depends_on_the_seed_only() -> None:
    torch.manual_seed(1)
    first = GPT(PRESETS["tiny"], seed=7).state_dict()
    torch.manual_seed(2)  # the global generator must not matter
    second = GPT(PRESETS["tiny"], seed=7).state_dict()
    assert all(torch.equal(first[name], second[name]) for name in first)
    third = GPT(PRESETS["tiny"], seed=8).state_dict()
    assert not torch.equal(first["lm_head.weight"], third["lm_head.weight"])


def test_checkpoint_round_trip_through_weights_only_load(tmp_path: object) -> None:
    model = GPT(PRESETS["tiny"], seed=5)
    path = f"{tmp_path}/m.pt"
    torch.save(save_model(model), path)
    loaded = load_model(torch.load(path, weights_only=True))
    idx = torch.tensor([TOKENIZER.encode("x y z")])
    torch.testing.assert_close(loaded(idx), model(idx))


def test_katdensity_language_model_embedders_accept_the_gpt() -> None:
    model = GPT(PRESETS["tiny"])
    texts = ["Write a line about cats.", "Describe the sea.", "x"]
    hidden = HiddenStateEmbedder(model, TOKENIZER).embed(texts)
    logits = LogitEmbedder(model, TOKENIZER).embed(texts)  # its self-check runs on our head
    assert hidden.shape == (3, PRESETS["tiny"].n_embd)
    assert logits.shape == (3, TOKENIZER.vocab_size)
    alone = torch.cat([HiddenStateEmbedder(model, TOKENIZER).embed([t]) for t in texts])
    torch.testing.assert_close(hidden, alone, atol=1e-5, rtol=1e-5)
