"""The quality gate: a candidate version is published only if its loss is finite and it prefers the chosen side of
held-out pairs about as often as the version it would replace.

Both are measured with the same yardstick, the base model: a version's implicit preference for a pair is
``(log p(chosen) - log p_base(chosen)) - (log p(rejected) - log p_base(rejected))``, and its reward accuracy is the
share of held-out pairs where that is positive. (Measuring against the DPO reference instead would make the previous
version score 0 by definition under ``reference=previous``.) The base model itself scores 0.

The held-out pairs it judges by come from windows that were already published: a window's own held-out pairs share
its labels, so if the window is poisoned they would vouch for the candidate trained on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class GateDecision:
    accepted: bool
    reason: str
    candidate_accuracy: float | None = None
    previous_accuracy: float | None = None
    candidate_margin: float | None = None
    heldout_pairs: int = 0


def reward_accuracy(preferences: Sequence[float]) -> float:
    return sum(1 for p in preferences if p > 0) / len(preferences)


@dataclass(frozen=True)
class QualityGate:
    margin: float = 0.05
    """How much lower than the previous version's held-out reward accuracy a candidate's may be."""
    min_pairs: int = 8
    """Below this many held-out pairs the accuracy is too noisy to judge; only finiteness is checked."""

    def decide(self, losses: Sequence[float], candidate: Sequence[float] | None,
               previous: Sequence[float] | None) -> GateDecision:
        """``losses``: the training losses since the last version; ``candidate``/``previous``: per held-out pair,
        the implicit preference (see module doc) of the candidate and of the previous version (None: no pairs)."""
        bad = [x for x in losses if not math.isfinite(x)]
        if not losses or bad:
            return GateDecision(False, f"training loss is not finite ({bad[0] if bad else 'no steps'})")
        if any(not math.isfinite(p) for p in candidate or ()):
            return GateDecision(False, "the candidate's held-out log-probabilities are not finite")
        n = len(candidate or ())
        if n < self.min_pairs:
            return GateDecision(True, f"loss finite; {n} held-out pairs (< {self.min_pairs}), accuracy not judged",
                                heldout_pairs=n)
        cand = reward_accuracy(candidate)
        prev = reward_accuracy(previous) if previous is not None else 0.0
        margin = sum(candidate) / n
        if cand < prev - self.margin:
            return GateDecision(False, f"held-out reward accuracy {cand:.3f} is below the previous version's "
                                       f"{prev:.3f} by more than {self.margin}", cand, prev, margin, n)
        return GateDecision(True, f"held-out reward accuracy {cand:.3f} (previous {prev:.3f}, margin {self.margin})",
                            cand, prev, margin, n)
