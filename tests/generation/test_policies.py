"""Noise and guidance tables, and the offline caption-complexity scorer against shapes' truth."""

import pytest

from genview_hf.generation import (
    GuidancePolicy,
    LMComplexityScorer,
    NoisePolicy,
    caption_complexity,
    count_constraints,
)
from genview_hf.generation.policies import complexity_from_count, parse_score
from genview_hf.testing.samples import constraint_level, shapes


@pytest.mark.parametrize(
    "ratio, level",
    [
        (0.0, 0),
        (0.2, 0),
        (0.21, 100),
        (0.4, 100),
        (0.5, 200),
        (0.6, 200),
        (0.7, 300),
        (0.8, 300),
        (0.81, 400),
        (1.0, 400),
    ],
)
def test_noise_level_table(ratio, level):
    assert NoisePolicy()(ratio) == level


def test_guidance_table_and_custom_tables():
    assert [GuidancePolicy()(c) for c in (1, 2, 3, 4)] == [8.0, 6.0, 4.0, 2.0]
    assert NoisePolicy(edges=(0.5,), levels=(10, 20))(0.7) == 20
    assert GuidancePolicy(scales=(3.0, 1.0))(2) == 1.0


def test_bad_tables_and_values_are_named():
    with pytest.raises(ValueError, match="levels"):
        NoisePolicy(edges=(0.5,), levels=(0, 1, 2))
    with pytest.raises(ValueError, match=r"\[0, 999\]"):
        NoisePolicy(levels=(0, 100, 200, 300, 1200))
    with pytest.raises(ValueError, match="increasing"):
        NoisePolicy(edges=(0.4, 0.2, 0.6, 0.8))
    with pytest.raises(ValueError, match="fg_ratio"):
        NoisePolicy()(1.2)
    with pytest.raises(ValueError, match="complexity"):
        GuidancePolicy()(5)
    with pytest.raises(ValueError, match="non-empty"):
        caption_complexity("   ")


def test_complexity_buckets():
    assert [complexity_from_count(n) for n in (0, 1, 3, 4, 6, 7, 20)] == [1, 2, 2, 3, 3, 4, 4]
    assert caption_complexity("a dog") == 1
    assert caption_complexity("two red wooden chairs beside a table") >= 2
    long = (
        "a large red striped cat sitting on a blue wooden chair next to two small shiny glass vases at sunset"
    )
    assert caption_complexity(long) == 4
    assert count_constraints("a dog") == 0


def test_offline_scorer_agrees_with_shapes_truth():
    # shapes' captions state known constraints: the count is exact on every one of them
    data = shapes(num_rows=480, image_size=16)
    counts = [count_constraints(caption) for caption in data["caption"]]
    assert counts == list(data["caption_constraints"])
    levels = [caption_complexity(caption) for caption in data["caption"]]
    assert levels == [constraint_level(truth) for truth in data["caption_constraints"]]


@pytest.mark.parametrize(
    "caption, constraints",
    [
        ("a building in the evening", 1),  # evening: lighting; "building" names a thing; "in": a time
        ("a king holding a string", 1),  # holding; "king", "string" are not actions
        ("a dog in front of a house", 1),  # one relation, three words
        ("a dark-blue car on top of a hill", 2),  # one colour (hyphenated), one relation
        ("people walking during the morning", 2),  # walking, morning
        ("a cat at night", 1),
        ("a wedding cake on the ceiling", 1),
        ("two dogs running on the beach at sunset", 4),  # two, running, on, sunset
    ],
)
def test_offline_scorer_word_handling(caption, constraints):
    assert count_constraints(caption) == constraints


def tiny_causal_lm(folder):
    """A 1-layer GPT-2 and a byte-level tokenizer (every byte a token, no merges), saved to ``folder``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    symbols = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {"<|endoftext|>": 0, **{s: i + 1 for i, s in enumerate(symbols)}}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<|endoftext|>", model_max_length=512
    )
    config = GPT2Config(vocab_size=len(vocab), n_positions=512, n_embd=16, n_layer=1, n_head=2)
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def test_lm_scorer_has_the_same_contract_and_counts_its_fallbacks(tmp_path):
    tiny_causal_lm(tmp_path)
    scorer = LMComplexityScorer(str(tmp_path), max_attempts=2)
    captions = ["a dog", "two red wooden chairs beside a table on grass", "a cat"]
    scores = scorer(captions)
    assert len(scores) == 3 and all(s in (1, 2, 3, 4) for s in scores)
    assert scorer(captions) == scores  # greedy first answers, seeded re-asks: reproducible
    # a random 1-layer LM never answers "[score: N]": every caption is re-asked, then falls back
    assert (scorer.asked, scorer.reasked, scorer.fell_back) == (6, 6, 6)
    assert scorer.fallback_rate == 1.0
    with pytest.raises(ValueError, match="non-empty"):
        scorer(["a dog", ""])


def test_lm_scorer_reasks_until_a_valid_score_as_the_official_scorer(tmp_path, monkeypatch):
    tiny_causal_lm(tmp_path)
    scorer = LMComplexityScorer(str(tmp_path))  # 5 attempts, as GenView++'s score.py
    rounds = iter(
        [
            ["[score: 2]", "I think it is rich", "[score: 7]"],  # only the first is valid
            ["[Score: 4, explanation: many]", "no idea"],  # asked again: the second and third
            ["hmm"],
            ["hmm"],
            ["hmm"],
        ]
    )
    asked = []
    monkeypatch.setattr(
        scorer, "ask", lambda captions, attempt: (asked.append(list(captions)), next(rounds))[1]
    )
    monkeypatch.setattr(scorer, "fallback", lambda captions: [3] * len(captions))
    assert scorer(["a", "b", "c"]) == [2, 4, 3]
    assert asked == [["a", "b", "c"], ["b", "c"], ["c"], ["c"], ["c"]]
    assert (scorer.asked, scorer.reasked, scorer.fell_back) == (3, 5, 1)
    assert scorer.fallback_rate == pytest.approx(1 / 3)


def test_lm_prompt_carries_the_official_rubric_and_answer_format(tmp_path):
    tiny_causal_lm(tmp_path)
    prompt = LMComplexityScorer(str(tmp_path)).prompt("a red cup")
    for fact in ("1 to 4", "only names broad categories", "one to three", "four to six", "more than six"):
        assert fact in prompt
    assert "[score: N]" in prompt and prompt.rstrip().endswith("Answer:")
    assert "a red cup" in prompt


@pytest.mark.parametrize(
    "answer, score",
    [("[score: 3]", 3), ("score: 1", 1), ("[Score:4, explanation: x]", 4), ("[score: 5]", None),
     ("[score: 12]", None), ("[score: 2.5]", None), ("three", None), ("", None)],
)  # fmt: skip
def test_answers_are_read_from_their_score_field(answer, score):
    assert parse_score(answer) == score
