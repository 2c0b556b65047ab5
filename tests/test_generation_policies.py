"""Noise and guidance tables, and the offline caption-complexity scorer against shapes' truth."""

import pytest

from genview_hf.data.samples import constraint_level, shapes
from genview_hf.generation import (
    GuidancePolicy,
    LMComplexityScorer,
    NoisePolicy,
    caption_complexity,
    count_constraints,
)
from genview_hf.generation.policies import complexity_from_count


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
    data = shapes(num_rows=96, image_size=16)
    agree = [
        caption_complexity(caption) == constraint_level(truth)
        for caption, truth in zip(data["caption"], data["caption_constraints"])
    ]
    assert sum(agree) / len(agree) > 0.9


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


def test_lm_scorer_has_the_same_contract(tmp_path):
    tiny_causal_lm(tmp_path)
    scorer = LMComplexityScorer(str(tmp_path))
    captions = ["a dog", "two red wooden chairs beside a table on grass", "a cat"]
    scores = scorer(captions)
    assert len(scores) == 3 and all(s in (1, 2, 3, 4) for s in scores)
    assert scorer(captions) == scores  # no sampling: deterministic
    with pytest.raises(ValueError, match="non-empty"):
        scorer(["a dog", ""])
