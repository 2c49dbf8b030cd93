"""The simulated users' hidden preference: they like answers that name a colour.

The score of a response is the share of its words that are colour words (``red``, ``blue``, ... from the tiny
model's vocabulary, where each is one token). Between two responses the user picks the one with the higher score;
equal scores (most often: neither names a colour) carry no preference and get no feedback. The tiny model starts
with random weights, so the base model names colours by chance; DPO on these choices makes the served adapter name
them more often, which is what the demo's score shows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vllm_train.tiny_model import WORD_CLASSES

COLOURS = frozenset(w.lower() for w in WORD_CLASSES["colors"])
_WORD = re.compile(r"[A-Za-z]+")

PROMPTS = (
    "Tell me about the sky.", "What do you see today?", "Tell me a story about a cat.", "What is your favorite food?",
    "Say something about the sea.", "Describe a house.", "What does the fox like?", "Tell me about a tree.",
    "How is the day?", "Name an animal.", "What do you have?", "Tell me about the night.",
)


def score(text: str) -> float:
    """Share of the words of ``text`` that are colour words, in [0, 1]; 0 for text without words."""
    words = _WORD.findall(text)
    if not words:
        return 0.0
    return sum(w.lower() in COLOURS for w in words) / len(words)


@dataclass(frozen=True)
class Choice:
    chosen: int
    rejected: int


def choose(texts: list[str]) -> Choice | None:
    """The simulated user's PAIRWISE choice between the first two responses, or None when they score the same."""
    a, b = score(texts[0]), score(texts[1])
    if a == b:
        return None
    return Choice(0, 1) if a > b else Choice(1, 0)
