"""The demo's numbers: summary.json (what was published, served, learnt) and score.png (score over time)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from vllm_train.demo.monitor import PipelineStats
from vllm_train.demo.simulator import BASE, SimulatorStats


MIN_RESPONSES = 30


def permutation_p_value(base: list[float], other: list[float], rounds: int = 5000, seed: int = 0) -> float:
    """One-sided p-value that ``other`` scores higher than ``base`` by chance (difference of means, permutations)."""
    if not base or not other:
        return 1.0
    a, b = np.asarray(base, dtype=float), np.asarray(other, dtype=float)
    observed = b.mean() - a.mean()
    pooled = np.concatenate([a, b])
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(rounds):
        rng.shuffle(pooled)
        if pooled[len(a):].mean() - pooled[:len(a)].mean() >= observed:
            hits += 1
    return (hits + 1) / (rounds + 1)


def batch_to_serving(sim: SimulatorStats, pipe: PipelineStats) -> list[float]:
    """For each version: seconds from the newest preference batch it was trained on (its record's Kafka time) to the
    first response it served (a simulated user's reply labelled with it)."""
    with sim.lock:
        first: dict[str, float] = {}
        for t, version, _ in sim.scores:
            first[version] = min(first.get(version, t), t)
        start = sim.started_wall
    with pipe.lock:
        batches = dict(pipe.batch_times)
        published = list(pipe.published)
    out = []
    for record in published:
        times = [batches[b] for b in record.get("batch_ids", []) if b in batches]
        if times and record["version_id"] in first:
            out.append(start + first[record["version_id"]] - max(times))
    return out


def summarise(sim: SimulatorStats, pipe: PipelineStats, duration_s: float) -> dict:
    by_version = sim.by_version()
    with pipe.lock:
        activations = list(pipe.activations)
        published = [v["version_id"] for v in pipe.published]
        counts = dict(pipe.counts)
        accounted_pairs = set(pipe.pair_feedback_ids)
        accounted_dlq = set(pipe.dlq_feedback_ids)
        dlq_reasons = dict(pipe.dlq_reasons)
        trainer = dict(pipe.trainer)
    with sim.lock:
        feedback_ids = set(sim.feedback_ids)
        summary_sim = dict(generate_calls=sim.generate_calls, failed_generate_calls=sim.failed_generate_calls,
                           feedback_events=sim.feedback_events, failed_feedback_calls=sim.failed_feedback_calls,
                           ties_without_feedback=sim.ties, errors=sim.errors[:20])
    activated = list(dict.fromkeys(v for _, v in activations))
    # The newest activated version that served enough responses to be measured (one activated a moment before the
    # end has served next to nothing).
    measured = [v for v in activated if len(by_version.get(v, [])) >= MIN_RESPONSES]
    last = measured[-1] if measured else None
    base_scores = by_version.get(BASE, [])
    last_scores = by_version.get(last, []) if last else []
    to_serving = batch_to_serving(sim, pipe)
    in_pair = feedback_ids & accounted_pairs
    in_dlq = (feedback_ids - in_pair) & accounted_dlq
    return {
        "duration_s": round(duration_s, 1),
        "versions_published": len(dict.fromkeys(published)),
        "versions_activated": len(activated),
        "activated": [{"t_s": round(t, 1), "version": v} for t, v in activations],
        **summary_sim,
        "prompts": counts.get("prompts", 0),
        "responses": counts.get("responses", 0),
        "pairs": counts.get("preference_pairs", 0),
        "pairs_agreeing_with_preference": pipe.pairs_agreeing,
        "batches": counts.get("preference_batches", 0),
        "dlq_records": counts.get("dlq", 0),
        "dlq_reasons": dlq_reasons,
        "feedback_in_pairs": len(in_pair),
        "feedback_in_dlq": len(in_dlq),
        "feedback_not_pairable": len(feedback_ids - in_pair - in_dlq),
        "base_score": float(np.mean(base_scores)) if base_scores else None,
        "base_responses": len(base_scores),
        "last_version": last,
        "last_version_score": float(np.mean(last_scores)) if last_scores else None,
        "last_version_responses": len(last_scores),
        "p_value_last_above_base": permutation_p_value(base_scores, last_scores),
        "batch_to_serving_s_p50": round(float(np.median(to_serving)), 3) if to_serving else None,
        "batch_to_serving_s_max": round(float(np.max(to_serving)), 3) if to_serving else None,
        "batch_to_serving_versions": len(to_serving),
        "scores_by_version": {v: {"responses": len(s), "mean": round(float(np.mean(s)), 4)}
                              for v, s in by_version.items()},
        "trainer": trainer,
    }


def plot(sim: SimulatorStats, pipe: PipelineStats, path: Path, window: int = 60,
         ylabel: str = "hidden-preference score") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with sim.lock:
        points = sorted(sim.scores)
    with pipe.lock:
        activations = list(pipe.activations)
    fig, ax = plt.subplots(figsize=(10, 4.5))
    if points:
        t = np.array([p[0] for p in points]) / 60.0
        s = np.array([p[2] for p in points])
        csum = np.cumsum(np.insert(s, 0, 0.0))
        lo = np.maximum(np.arange(1, len(s) + 1) - window, 0)
        trailing = (csum[1:] - csum[lo]) / (np.arange(1, len(s) + 1) - lo)  # mean of the last `window` responses
        ax.plot(t, trailing, color="tab:blue", label=f"score (mean of the last {window} responses)")
        ax.scatter(t, s, s=3, alpha=0.15, color="tab:blue")
    for when, version in activations:
        ax.axvline(when / 60.0, color="tab:red", linestyle="--", linewidth=1)
        ax.text(when / 60.0, ax.get_ylim()[1] * 0.95, version.split("/")[-1], rotation=90, va="top", ha="right",
                fontsize=8, color="tab:red")
    ax.set_xlabel("minutes")
    ax.set_ylabel(ylabel)
    ax.set_title("What the served model says, as it learns from feedback (red: adapter version activated)")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(summary: dict, sim: SimulatorStats, pipe: PipelineStats, out_dir: Path,
          ylabel: str = "hidden-preference score") -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot(sim, pipe, out_dir / "score.png", ylabel=ylabel)
