"""The simulated users' hidden preferences: a documented program scores each answer, and a user shown two answers
picks the one that scores higher (equal scores carry no preference and get no feedback).

Two preferences, one per kind of model:

- ``colour`` (the tiny random model): users like answers that name a colour. The score is the share of the words
  that are colour words (``red``, ``blue``, ... from the tiny model's vocabulary, where each is one token). The tiny
  model starts with random weights, so it names colours by chance.
- ``concise`` (a real chat model such as SmolLM2): users want answers that get to the point. An answer scores
  ``1 / (1 + words / 40)`` when it is **on topic** (it uses at least one content word of the question, so "I don't
  know." or a canned reply scores 0), **complete** (it ends a sentence: ``.``, ``!``, ``?`` or a closing quote or
  bracket after one; an answer cut off at ``max_tokens`` ends mid-sentence) and **an answer** (at least 4 words);
  otherwise 0. A complete 20-word answer scores 0.67, a complete 120-word answer 0.25, a truncated one 0. A
  real chat model asked open questions ("How do vaccines work?") rambles past the token limit or writes a long essay
  most of the time, so the base model does not meet the preference; a shorter complete answer is a direction DPO
  can learn, and the drift guard of the held-out evaluation (:mod:`vllm_train.demo.heldout`) checks that answers stay
  fluent and on topic on the way.

Each preference also names its prompts: the ones the simulated users ask (training) and a disjoint held-out set that
only the final evaluation asks, so that what is measured is learning, not memorising the training prompts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from vllm_train.tiny_model import WORD_CLASSES

_WORD = re.compile(r"[A-Za-z]+")


@dataclass(frozen=True)
class Choice:
    chosen: int
    rejected: int


@dataclass(frozen=True)
class Preference:
    """A hidden preference: its name, how it scores one answer to one question, and its prompts."""

    name: str
    description: str
    score_fn: Callable[[str, str], float]   # (question, answer) -> score in [0, 1]
    prompts: tuple[str, ...]                # what the simulated users ask
    heldout_prompts: tuple[str, ...]        # asked only by the held-out evaluation

    def score(self, answer: str, question: str = "") -> float:
        return self.score_fn(question, answer)

    def choose(self, question: str, answers: list[str]) -> Choice | None:
        """The user's PAIRWISE choice between the first two answers, or None when they score the same."""
        a, b = self.score(answers[0], question), self.score(answers[1], question)
        if a == b:
            return None
        return Choice(0, 1) if a > b else Choice(1, 0)


# --- colour (tiny model) -------------------------------------------------------------------------------------------

COLOURS = frozenset(w.lower() for w in WORD_CLASSES["colors"])


def colour_score(question: str, answer: str) -> float:
    """Share of the words of ``answer`` that are colour words, in [0, 1]; 0 for text without words."""
    words = _WORD.findall(answer)
    if not words:
        return 0.0
    return sum(w.lower() in COLOURS for w in words) / len(words)


COLOUR = Preference(
    name="colour", description="users like answers that name a colour (share of colour words)",
    score_fn=colour_score,
    prompts=("Tell me about the sky.", "What do you see today?", "Tell me a story about a cat.",
             "What is your favorite food?", "Say something about the sea.", "Describe a house.",
             "What does the fox like?", "Tell me about a tree.", "How is the day?", "Name an animal.",
             "What do you have?", "Tell me about the night."),
    heldout_prompts=("Tell me about the dog.", "What is in the house?", "Say something about the night sky.",
                     "What does the bird see?", "Tell me a story about a fish.", "Describe the sea today.",
                     "What is your best food?", "Tell me about a big tree.", "What do you like?",
                     "Name a small animal."))


# --- concise (real chat models) ------------------------------------------------------------------------------------

CONCISE_WORDS = 40       # the length at which a complete, on-topic answer scores 0.5
MIN_ANSWER_WORDS = 4
_STOPWORDS = frozenset("""
a about above after again all also am an and any are as at be because been before being between both but by can
could did do does doing down during each few for from further had has have having he her here hers him his how i if
in into is it its itself just me more most my no nor not now of off on once only or other our out over own same she
should so some such than that the their them then there these they this those through to too under until up very
was we were what when where which while who whom why will with would you your yours explain describe tell give
please make work works happen happens thing things way ways different difference mean means use used
""".split())
_SENTENCE_END = re.compile(r"[.!?][\"')\]*]*\s*$")


def content_words(text: str) -> set[str]:
    """Lower-cased words of 4+ letters that are not stop words, plural/third-person 's' stripped."""
    out = set()
    for w in _WORD.findall(text.lower()):
        if len(w) >= 4 and w not in _STOPWORDS:
            out.add(w[:-1] if w.endswith("s") and len(w) > 4 else w)
    return out


def concise_score(question: str, answer: str) -> float:
    words = _WORD.findall(answer)
    if len(words) < MIN_ANSWER_WORDS or not _SENTENCE_END.search(answer):
        return 0.0
    if question and not (content_words(question) & content_words(answer)):
        return 0.0
    return 1.0 / (1.0 + len(words) / CONCISE_WORDS)


_QUESTIONS = (
    # 96 open questions; every fourth is held out (see below).
    "How do vaccines train the immune system?", "Why is the sky blue?", "How does a refrigerator keep food cold?",
    "What causes earthquakes?", "How do plants make food from sunlight?", "Why do we have seasons?",
    "How does a rainbow form?", "What is inflation in economics?", "How do bees make honey?",
    "Why does ice float on water?", "How does the heart pump blood?", "What causes thunder?",
    "How does a compass work?", "Why do leaves change colour in autumn?", "How are mountains formed?",
    "What is the water cycle?", "How does a battery store energy?", "Why do cats purr?",
    "How does the internet send data?", "What causes tides in the ocean?", "How do airplanes stay in the air?",
    "Why is exercise good for health?", "How does a microwave oven heat food?", "What is photosynthesis?",
    "How do volcanoes erupt?", "Why do we need sleep?", "How does recycling help the environment?",
    "What makes a good night's sleep?", "How do birds migrate such long distances?", "Why is the ocean salty?",
    "How does a camera capture a picture?", "What is gravity?", "How do fish breathe underwater?",
    "Why do onions make people cry?", "How does soap remove dirt?", "What causes rain?",
    "How do solar panels make electricity?", "Why do stars twinkle?", "How does a bicycle stay upright?",
    "What is a black hole?", "How do muscles grow stronger?", "Why is breakfast important?",
    "How does coffee wake people up?", "What causes wind?", "How does a thermometer measure temperature?",
    "Why do dogs wag their tails?", "How do glaciers move?", "What is climate change?",
    "How does the brain store memories?", "Why is bread soft inside?", "How do submarines dive and surface?",
    "What causes a fever?", "How does an electric car work?", "Why do we yawn?",
    "How do spiders spin webs?", "What is the purpose of the moon's phases?", "How does a lighthouse guide ships?",
    "Why do apples turn brown after cutting?", "How does a telescope work?", "What is an ecosystem?",
    "How do antibiotics fight infections?", "Why do we have fingerprints?", "How does wind power work?",
    "What makes popcorn pop?", "How do elephants communicate?", "Why does metal feel cold?",
    "How does a vaccine get tested before use?", "What is a healthy diet?", "How do clouds form?",
    "Why do some animals hibernate?", "How does a piano make sound?", "What causes hiccups?",
    "How do trees grow so tall?", "Why is water important for the body?", "How does a lock and key work?",
    "What is a democracy?", "How do computers store information?", "Why do we get goosebumps?",
    "How does a river shape its valley?", "What is an atom?", "How do owls see at night?",
    "Why is the desert hot during the day and cold at night?", "How does yeast make dough rise?",
    "What causes lightning?", "How do ants find their way home?", "Why do we dream?",
    "How does a GPS find your location?", "What is a food chain?", "How do whales hold their breath?",
    "Why does the moon change shape?", "How does a bridge carry heavy loads?", "What is electricity?",
    "How do seeds know which way to grow?", "Why do people get sunburned?", "How does a kite fly?",
    "What is the greenhouse effect?",
)

CONCISE = Preference(
    name="concise",
    description=f"users want short, complete, on-topic answers: 1/(1 + words/{CONCISE_WORDS}) when complete, "
                "on topic and at least 4 words, else 0",
    score_fn=concise_score,
    prompts=tuple(q for i, q in enumerate(_QUESTIONS) if i % 4 != 3),
    heldout_prompts=tuple(q for i, q in enumerate(_QUESTIONS) if i % 4 == 3))

PREFERENCES = {p.name: p for p in (COLOUR, CONCISE)}


def for_model(model: str) -> Preference:
    """The default preference for a model: colour for the tiny random model, concise for real chat models."""
    return COLOUR if model == "tiny" or "tiny-model" in str(model) else CONCISE

