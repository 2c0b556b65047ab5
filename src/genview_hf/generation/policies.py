"""Adaptive choices per row: noise level from the foreground ratio, guidance from caption complexity.

Both tables are plain step functions, configurable, and validated on construction:

- ``NoisePolicy`` (GenView, IC): fg_ratio in [0,.2] -> 0, (.2,.4] -> 100, (.4,.6] -> 200,
  (.6,.8] -> 300, (.8,1] -> 400. More foreground, more noise on the image embedding.
- ``GuidancePolicy`` (GenView++, TC): complexity 1 -> 8, 2 -> 6, 3 -> 4, 4 -> 2.
- ``caption_complexity``: an offline scorer returning 1-4 from the number of concrete visual
  constraints in a caption; ``LMComplexityScorer`` gives the same contract from any local causal LM.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# GenView (paper, Sec. 3.2): five equal fg_ratio bins, noise levels 0..400 of unCLIP's 1000.
DEFAULT_FG_EDGES = (0.2, 0.4, 0.6, 0.8)
DEFAULT_NOISE_LEVELS = (0, 100, 200, 300, 400)
# GenView++: guidance 8/6/4/2 for caption complexity 1/2/3/4.
DEFAULT_GUIDANCE = (8.0, 6.0, 4.0, 2.0)
# GenView++ complexity buckets: 0 constraints -> 1, 1-3 -> 2, 4-6 -> 3, >6 -> 4.
DEFAULT_COMPLEXITY_EDGES = (0, 3, 6)
MAX_NOISE_LEVEL = 999  # unCLIP's image-noising scheduler has 1000 steps


@dataclass(frozen=True)
class NoisePolicy:
    """fg_ratio -> noise level: ``levels[i]`` for fg_ratio in ``(edges[i-1], edges[i]]``."""

    edges: tuple[float, ...] = DEFAULT_FG_EDGES
    levels: tuple[int, ...] = DEFAULT_NOISE_LEVELS

    def __post_init__(self):
        object.__setattr__(self, "edges", tuple(float(e) for e in self.edges))
        object.__setattr__(self, "levels", tuple(int(v) for v in self.levels))
        if len(self.levels) != len(self.edges) + 1:
            raise ValueError(
                f"noise policy: {len(self.edges)} edges need {len(self.edges) + 1} levels, got {len(self.levels)}"
            )
        if list(self.edges) != sorted(self.edges) or not all(0.0 <= e <= 1.0 for e in self.edges):
            raise ValueError(f"noise policy: edges must be increasing and within [0, 1], got {self.edges}")
        bad = [v for v in self.levels if not 0 <= v <= MAX_NOISE_LEVEL]
        if bad:
            raise ValueError(f"noise policy: noise levels must be in [0, {MAX_NOISE_LEVEL}], got {bad}")

    def __call__(self, fg_ratio: float) -> int:
        if not 0.0 <= fg_ratio <= 1.0:
            raise ValueError(f"fg_ratio must be in [0, 1], got {fg_ratio}")
        for edge, level in zip(self.edges, self.levels):
            if fg_ratio <= edge:
                return level
        return self.levels[-1]


@dataclass(frozen=True)
class GuidancePolicy:
    """Caption complexity (1..len(scales)) -> classifier-free guidance scale."""

    scales: tuple[float, ...] = DEFAULT_GUIDANCE

    def __post_init__(self):
        object.__setattr__(self, "scales", tuple(float(s) for s in self.scales))
        if not self.scales:
            raise ValueError("guidance policy needs at least one scale")

    def __call__(self, complexity: int) -> float:
        if not 1 <= int(complexity) <= len(self.scales):
            raise ValueError(f"caption complexity must be in [1, {len(self.scales)}], got {complexity}")
        return self.scales[int(complexity) - 1]


# Concrete visual constraints, grouped as in the GenView++ prompt to the LLM scorer.
_COUNT = {
    "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "several", "many", "few",
    "pair", "couple", "dozen", "group", "single", "both", "multiple", "crowd",
}  # fmt: skip
_COLOUR = {
    "red", "green", "blue", "yellow", "orange", "purple", "pink", "brown", "black", "white", "gray", "dotted",
    "checkered", "plaid", "patterned", "textured",
    "grey", "golden", "silver", "dark", "bright", "colorful", "colourful", "pale", "striped", "spotted",
    "shiny", "glossy", "matte", "rusty", "fluffy", "furry", "wet", "snowy", "sunny", "sunlit", "shadowy",
    "foggy", "misty", "glowing", "neon", "vintage", "old", "new", "large", "small", "big", "tiny", "tall",
    "long", "short", "round", "wide", "narrow", "empty", "full", "crowded", "night", "sunset",
    "wooden", "metal", "metallic", "glass", "plastic", "stone", "brick", "leather", "paper", "concrete",
    "marble", "ceramic", "cotton", "woolen", "steel", "rocky", "sandy", "grassy",
}  # fmt: skip
_SPATIAL = {
    "on", "under", "above", "below", "behind", "beside", "next", "near", "between", "inside", "in",
    "outside", "over", "atop", "front", "left", "right", "top", "bottom", "across", "along", "around",
    "against", "among", "through", "background", "foreground", "corner", "middle", "center", "centre",
}  # fmt: skip
_STYLE = {
    "painting", "drawing", "sketch", "cartoon", "illustration", "photo", "photograph", "watercolor",
    "watercolour", "oil", "digital", "render", "rendering", "3d", "anime", "pixel", "abstract",
    "realistic", "minimalist", "silhouette", "close-up", "closeup", "aerial", "portrait", "macro",
    "blurry", "black-and-white", "monochrome", "sepia", "style",
}  # fmt: skip
_STOP = {
    "a", "an", "the", "of", "and", "with", "is", "are", "at", "to", "for", "by", "this", "that", "it",
    "its", "his", "her", "their", "there", "some", "as", "from", "while", "be", "has", "have", "image",
    "picture", "view",
}  # fmt: skip
_DIGITS = re.compile(r"^\d+$")
_WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")


def count_constraints(caption: str) -> int:
    """Number of concrete visual constraints in a caption (offline, no part-of-speech tagger).

    Counted: counts/quantities, colours/materials/textures/lighting/size, spatial relations,
    actions (words ending in -ing that are not style words), style words. The head nouns of a
    bare category list ("dog", "a cat") count nothing, so a caption naming only categories scores 0.
    """
    words = _WORD.findall(caption.lower())
    total = 0
    for word in words:
        if word in _STOP:
            continue
        if word in _COUNT or _DIGITS.match(word):
            total += 1
        elif word in _COLOUR or word in _SPATIAL or word in _STYLE:
            total += 1
        elif word.endswith("ing") and len(word) > 4:  # actions: running, holding, sitting...
            total += 1
    return total


def complexity_from_count(count: int, edges: tuple[int, ...] = DEFAULT_COMPLEXITY_EDGES) -> int:
    """Bucket a constraint count: ``<= edges[0]`` -> 1, ``<= edges[1]`` -> 2, ..., else len(edges)+1."""
    for index, edge in enumerate(edges):
        if count <= edge:
            return index + 1
    return len(edges) + 1


def caption_complexity(caption: str, edges: tuple[int, ...] = DEFAULT_COMPLEXITY_EDGES) -> int:
    """Offline caption complexity in 1-4 (1 = only categories, 4 = more than 6 constraints)."""
    if not isinstance(caption, str) or not caption.strip():
        raise ValueError("caption complexity needs a non-empty caption")
    return complexity_from_count(count_constraints(caption), edges)


LM_PROMPT = (
    "Count the concrete visual constraints in the image caption below: object type or count, "
    "colour, material, texture, lighting, spatial relations, actions, style. "
    "Answer with one number: 1 if it names only categories, 2 for 1-3 constraints, "
    "3 for 4-6 constraints, 4 for more than 6.\nCaption: {caption}\nAnswer:"
)


@dataclass
class LMComplexityScorer:
    """Caption complexity 1-4 from a local causal LM (``AutoModelForCausalLM``), same contract.

    The LM scores the four answers "1".."4" after ``prompt``; the most likely one wins (no
    sampling, so the score is deterministic). Captions are scored in batches.
    """

    model_name_or_path: str
    prompt: str = LM_PROMPT
    device: str = "cpu"
    _model: object = field(default=None, init=False, repr=False)
    _tokenizer: object = field(default=None, init=False, repr=False)

    def _load(self):
        if self._model is None:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.model_name_or_path)
            self._tokenizer.padding_side = "left"
            self._tokenizer.truncation_side = "left"  # an overlong prompt keeps its closing "Answer:"
            if self._tokenizer.pad_token is None:
                self._tokenizer.pad_token = self._tokenizer.eos_token
            self._model = AutoModelForCausalLM.from_pretrained(self.model_name_or_path).to(self.device).eval()
        return self._model, self._tokenizer

    def __call__(self, captions: list[str]) -> list[int]:
        import torch

        for caption in captions:
            if not isinstance(caption, str) or not caption.strip():
                raise ValueError("caption complexity needs a non-empty caption")
        model, tokenizer = self._load()
        answers = [tokenizer.encode(str(k), add_special_tokens=False)[-1] for k in (1, 2, 3, 4)]
        texts = [self.prompt.format(caption=c) for c in captions]
        inputs = tokenizer(texts, return_tensors="pt", padding=True, truncation=True).to(self.device)
        with torch.no_grad():
            logits = model(**inputs).logits[:, -1, :]
        return [int(i) + 1 for i in logits[:, answers].argmax(dim=-1).tolist()]
