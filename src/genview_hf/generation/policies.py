"""Adaptive choices per row: noise level from the foreground ratio, guidance from caption complexity.

Both tables are plain step functions, configurable, and validated on construction:

- ``NoisePolicy`` (GenView, IC): fg_ratio in [0,.2] -> 0, (.2,.4] -> 100, (.4,.6] -> 200,
  (.6,.8] -> 300, (.8,1] -> 400. More foreground, more noise on the image embedding.
- ``GuidancePolicy`` (GenView++, TC): complexity 1 -> 8, 2 -> 6, 3 -> 4, 4 -> 2.
- ``caption_complexity``: an offline scorer returning 1-4 from the number of concrete visual
  constraints in a caption; ``LMComplexityScorer`` gives the same contract from any local causal LM.
"""

from __future__ import annotations

import logging
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

logger = logging.getLogger(__name__)


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


# Concrete visual constraints, grouped as in the GenView++ rubric (object type/count/material,
# colour/texture/lighting, spatial relations, actions, style).
_COUNT = {
    "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "several", "many", "few",
    "pair", "couple", "dozen", "group", "single", "both", "multiple", "crowd",
}  # fmt: skip
_COLOUR = {
    "red", "green", "blue", "yellow", "orange", "purple", "pink", "brown", "black", "white", "gray", "dotted",
    "checkered", "plaid", "patterned", "textured", "reddish", "bluish", "greenish", "yellowish",
    "grey", "golden", "silver", "dark", "bright", "colorful", "colourful", "pale", "striped", "spotted",
    "shiny", "glossy", "matte", "rusty", "fluffy", "furry", "wet", "snowy", "sunny", "sunlit", "shadowy",
    "foggy", "misty", "glowing", "neon", "vintage", "old", "new", "large", "small", "big", "tiny", "tall",
    "long", "short", "round", "wide", "narrow", "empty", "full", "crowded",
    "wooden", "metal", "metallic", "glass", "plastic", "stone", "brick", "leather", "paper", "concrete",
    "marble", "ceramic", "cotton", "woolen", "steel", "rocky", "sandy", "grassy",
}  # fmt: skip
# Lighting and time of day (a lighting constraint): "in the evening" is one, not a spatial relation too.
_LIGHTING = {
    "night", "nighttime", "sunset", "sunrise", "dusk", "dawn", "twilight", "evening", "morning", "noon",
    "midnight", "daylight", "daytime", "sunlight", "moonlight", "candlelight", "lightning", "lighting",
    "backlit", "silhouetted",
}  # fmt: skip
_SPATIAL = {
    "on", "under", "above", "below", "behind", "beside", "next", "near", "between", "inside", "in",
    "outside", "over", "atop", "front", "left", "right", "top", "bottom", "across", "along", "around",
    "against", "among", "through", "background", "foreground", "corner", "middle", "center", "centre",
}  # fmt: skip
# Prepositions that introduce a time of day rather than a place ("at night", "in the evening").
_TIME_PREPOSITIONS = {"in", "at", "on", "during"}
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
# Words ending in -ing that name things (or link phrases), not actions.
_NOT_ACTIONS = {
    "building", "ceiling", "clothing", "wedding", "pudding", "stuffing", "railing", "awning", "icing",
    "frosting", "bedding", "housing", "siding", "dumpling", "sapling", "seedling", "duckling", "earring",
    "offspring", "sibling", "parking", "landing", "crossing", "opening", "setting", "filling", "topping",
    "stocking", "lining", "coating", "flooring", "roofing", "fencing", "something", "nothing", "anything",
    "everything", "during", "king", "viking", "shilling", "herring", "whiting", "dressing", "seasoning",
    "wording", "heading", "ending", "beginning", "meeting", "evening", "morning", "lighting",
}  # fmt: skip
_DIGITS = re.compile(r"^\d+$")
_VOWEL = re.compile(r"[aeiouy]")
_WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")


def _is_action(word: str) -> bool:
    """A verb's -ing form (running, holding): the stem keeps a vowel ("thing", "string" have none)."""
    return (
        word.endswith("ing")
        and len(word) > 4
        and word not in _NOT_ACTIONS
        and _VOWEL.search(word[:-3]) is not None
    )


def _group(word: str) -> str | None:
    """The kind of constraint a word states, or None; a hyphenated word counts once, by its parts
    when the whole is not listed ("dark-blue" is a colour)."""
    if word in _COUNT or _DIGITS.match(word):
        return "count"
    if word in _LIGHTING:
        return "lighting"
    if word in _COLOUR:
        return "attribute"
    if word in _SPATIAL:
        return "spatial"
    if word in _STYLE:
        return "style"
    if _is_action(word):
        return "action"
    if "-" in word:
        for part in word.split("-"):
            group = _group(part) if part not in _STOP else None
            if group is not None:
                return group
    return None


def count_constraints(caption: str) -> int:
    """Number of concrete visual constraints in a caption (offline, no part-of-speech tagger).

    Counted, one per word: counts/quantities, colours/materials/textures/size, lighting and time
    of day, actions (-ing forms of verbs; nouns such as "building", "evening" are not), style
    words. A spatial relation counts once however many words spell it ("in front of", "on top
    of", "to the left of"); a preposition that introduces a time of day ("in the evening", "at
    night") is not a relation. The head nouns of a bare category list ("dog", "a cat") count
    nothing, so a caption naming only categories scores 0.
    """
    words = [word for word in _WORD.findall(caption.lower()) if word not in _STOP]
    groups = [_group(word) for word in words]
    total = 0
    for index, (word, group) in enumerate(zip(words, groups)):
        following = groups[index + 1] if index + 1 < len(groups) else None
        if word in _TIME_PREPOSITIONS and following == "lighting":
            continue  # "in the evening": the time word carries the constraint
        if group == "spatial" and index > 0 and groups[index - 1] == "spatial":
            continue  # one relation spelt by several words ("in front of")
        total += group is not None
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


# GenView++'s rubric (data_generation/adaptive_guidance_scale/score.py), in our words, with its
# answer format "[score: N]".
LM_RUBRIC = (
    "Rate how much concrete visual detail an image-generation prompt specifies, on a scale of 1 to 4. "
    "Count the constraints that change what the image must show: what the objects are exactly (kind, "
    "number, material), how they look (colour, texture, lighting), where they are (layout, spatial "
    "relations, viewpoint), what happens (actions, interactions) and the style (art genre, medium, "
    "cultural cues). Score 1 when the prompt only names broad categories of objects, 2 for one to three "
    "constraints, 3 for four to six, and 4 for more than six distinct constraints. Ignore abstract or "
    "emotional words that cannot be drawn. Reply in the format [score: N] and nothing else."
)
LM_QUESTION = "Score the visual constraints of this prompt: {caption}"
_SCORE = re.compile(r"score\s*:\s*\[?\s*([1-4])(?![\d.])", re.IGNORECASE)


def parse_score(answer: str) -> int | None:
    """The N of the first "[score: N]" (N in 1-4) in an LM's answer, else None."""
    match = _SCORE.search(answer)
    return int(match.group(1)) if match else None


@dataclass
class LMComplexityScorer:
    """Caption complexity 1-4 from a local causal LM (``AutoModelForCausalLM``), same contract.

    As GenView++'s ``score.py``: the rubric as the system turn (through the tokenizer's chat
    template when it has one), the caption as the user turn, an answer parsed from its
    ``[score: N]`` and the question asked again while the answer holds no valid score, up to
    ``max_attempts`` (5) times. The first answer is greedy; a re-ask samples, seeded by (caption,
    attempt), so scores are reproducible. After the last attempt the scorer falls back to the
    LM's most likely digit after "[score: " (always 1-4). ``asked``, ``reasked`` and
    ``fell_back`` count captions; ``fallback_rate`` is the share that fell back.
    """

    model_name_or_path: str
    device: str = "cpu"
    max_attempts: int = 5
    max_new_tokens: int = 16
    rubric: str = LM_RUBRIC
    asked: int = field(default=0, init=False)
    reasked: int = field(default=0, init=False)
    fell_back: int = field(default=0, init=False)
    _model: object = field(default=None, init=False, repr=False)
    _tokenizer: object = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")

    @property
    def fallback_rate(self) -> float:
        return self.fell_back / self.asked if self.asked else 0.0

    def _load(self):
        if self._model is None:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.model_name_or_path)
            self._tokenizer.padding_side = "left"
            self._tokenizer.truncation_side = "left"  # an overlong prompt keeps its end
            if self._tokenizer.pad_token is None:
                self._tokenizer.pad_token = self._tokenizer.eos_token
            self._model = AutoModelForCausalLM.from_pretrained(self.model_name_or_path).to(self.device).eval()
        return self._model, self._tokenizer

    def prompt(self, caption: str) -> str:
        """The text the LM continues: a chat with the rubric and the caption, or plain text."""
        _, tokenizer = self._load()
        question = LM_QUESTION.format(caption=caption)
        if getattr(tokenizer, "chat_template", None):
            messages = [{"role": "system", "content": self.rubric}, {"role": "user", "content": question}]
            try:
                return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            except Exception:  # a template without a system role: one user turn
                messages = [{"role": "user", "content": f"{self.rubric}\n\n{question}"}]
                return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return f"{self.rubric}\n\n{question}\nAnswer: "

    def _encode(self, texts: list[str]):
        """Left-padded, and left-truncated so that the answer still fits the model's context."""
        model, tokenizer = self._load()
        context = min(
            tokenizer.model_max_length,
            getattr(model.config, "max_position_embeddings", None) or tokenizer.model_max_length,
        )
        special = not getattr(tokenizer, "chat_template", None)  # a chat template writes its own
        return tokenizer(
            texts, return_tensors="pt", padding=True, truncation=True, add_special_tokens=special,
            max_length=max(1, context - self.max_new_tokens),
        ).to(self.device)  # fmt: skip

    def ask(self, captions: list[str], attempt: int) -> list[str]:
        """The LM's answers to one round of questions: greedy and batched first; a re-ask samples,
        one caption at a time, seeded by (attempt, caption)."""
        import zlib

        if attempt == 0:
            return self._generate([self.prompt(c) for c in captions], seed=None)
        return [
            self._generate([self.prompt(c)], seed=zlib.crc32(f"{attempt}:{c}".encode()))[0] for c in captions
        ]

    def _generate(self, prompts: list[str], seed: int | None) -> list[str]:
        import torch

        model, tokenizer = self._load()
        inputs = self._encode(prompts)
        settings = dict(max_new_tokens=self.max_new_tokens, pad_token_id=tokenizer.pad_token_id)
        device = torch.device(self.device)
        devices = [device.index or 0] if device.type == "cuda" else []
        with torch.no_grad(), torch.random.fork_rng(devices=devices):  # global generators left alone
            if seed is None:
                output = model.generate(**inputs, do_sample=False, **settings)
            else:
                torch.manual_seed(seed)
                output = model.generate(**inputs, do_sample=True, temperature=0.7, **settings)
        return tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)

    def fallback(self, captions: list[str]) -> list[int]:
        """The most likely digit 1-4 after the prompt and "[score: " (one forward, no sampling)."""
        import torch

        model, tokenizer = self._load()
        digits = [tokenizer.encode(str(k), add_special_tokens=False)[-1] for k in (1, 2, 3, 4)]
        inputs = self._encode([self.prompt(c) + "[score: " for c in captions])
        with torch.no_grad():
            logits = model(**inputs).logits[:, -1, :]
        return [int(i) + 1 for i in logits[:, digits].argmax(dim=-1).tolist()]

    def __call__(self, captions: list[str]) -> list[int]:
        for caption in captions:
            if not isinstance(caption, str) or not caption.strip():
                raise ValueError("caption complexity needs a non-empty caption")
        scores: list[int | None] = [None] * len(captions)
        pending = list(range(len(captions)))
        for attempt in range(self.max_attempts):
            if not pending:
                break
            if attempt > 0:
                self.reasked += len(pending)
            answers = self.ask([captions[i] for i in pending], attempt)
            for i, answer in zip(pending, answers, strict=True):
                scores[i] = parse_score(answer)
            pending = [i for i in pending if scores[i] is None]
        self.asked += len(captions)
        if pending:
            for i, score in zip(pending, self.fallback([captions[i] for i in pending]), strict=True):
                scores[i] = score
            self.fell_back += len(pending)
            logger.warning(
                "caption complexity: %d of %d captions had no valid [score: N] after %d attempts; "
                "used the LM's most likely digit (%.1f%% of all captions so far)",
                len(pending), len(captions), self.max_attempts, 100 * self.fallback_rate,
            )  # fmt: skip
        return scores
