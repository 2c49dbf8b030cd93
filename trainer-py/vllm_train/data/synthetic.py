"""Synthetic preference data over the tiny model's word classes, for examples, tests and benchmarks.

The hidden preference is simple on purpose: answers that name words of one class (``liked``, colours by default)
are preferred over answers naming words of another (``disliked``). Every word is one token of the tiny model, so a
LoRA adapter can learn it in a few hundred CPU steps; the same rule drives the demo's simulated users.
"""

from __future__ import annotations

import random

from vllm_train.data.examples import PreferenceExample, SFTExample
from vllm_train.tiny_model import WORD_CLASSES

PROMPTS = ("Tell me about your day.", "What do you see?", "Say something nice.", "Tell me a story.",
           "What is your favorite thing?", "Name a thing you like.", "What is in the house?", "Describe the sky.")
_OPENERS = ("I see", "I like", "Today I have", "The best is", "This is", "We have", "They like", "You see")


def answer(rng: random.Random, word_class: str, words: int = 3) -> str:
    picked = rng.sample(WORD_CLASSES[word_class], words)
    return f"{rng.choice(_OPENERS)} {', '.join(picked[:-1])} and {picked[-1]}."


def synthetic_pairs(n: int, seed: int = 0, liked: str = "colors", disliked: str = "animals",
                    chat: bool = True) -> list[PreferenceExample]:
    """``n`` pairs: an answer naming ``liked`` words (chosen) against one naming ``disliked`` words (rejected)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        text = rng.choice(PROMPTS)
        prompt = [{"role": "user", "content": text}] if chat else text
        out.append(PreferenceExample(prompt, answer(rng, liked), answer(rng, disliked), pair_id=f"syn-{seed}-{i}"))
    return out


def synthetic_sft(n: int, seed: int = 0, word_class: str = "colors") -> list[SFTExample]:
    rng = random.Random(seed)
    return [SFTExample([{"role": "user", "content": rng.choice(PROMPTS)}], answer(rng, word_class))
            for _ in range(n)]


def class_share(text: str, word_class: str = "colors") -> float:
    """Share of the words of ``text`` that belong to ``word_class`` (the demo's measure of what was learnt)."""
    words = [w.strip(".,!?;:").lower() for w in text.split()]
    words = [w for w in words if w]
    members = set(WORD_CLASSES[word_class])
    return sum(w in members for w in words) / len(words) if words else 0.0
