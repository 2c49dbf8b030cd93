"""The live terminal view of the demo (redrawn every second), or one progress line at a time when headless."""

from __future__ import annotations

import numpy as np

from vllm_train.demo.monitor import PipelineStats
from vllm_train.demo.simulator import BASE, SimulatorStats


def render(sim: SimulatorStats, pipe: PipelineStats, elapsed: float, run_dir: str, preference: str = "") -> str:
    by_version = sim.by_version()
    with pipe.lock:
        c, trainer, active = dict(pipe.counts), dict(pipe.trainer), pipe.active_version
        published = [v for v in pipe.published]
        status = dict(pipe.version_status)
    with sim.lock:
        gen, failed, fb = sim.generate_calls, sim.failed_generate_calls, sim.feedback_events
    lines = [
        f"vllm-train demo — {elapsed / 60:5.1f} min — run folder {run_dir} — Ctrl-C stops everything",
        "",
        f"events/s {pipe.events_per_second():7.1f}   prompts {c.get('prompts', 0):6d}   responses "
        f"{c.get('responses', 0):6d}   feedback {c.get('feedback', 0):6d}   dead letters {c.get('dlq', 0):4d}",
        f"pairs    {c.get('preference_pairs', 0):7d}   batches {c.get('preference_batches', 0):6d}   "
        f"generate calls {gen:6d} (failed {failed})   feedback sent {fb}",
        f"trainer  step {int(trainer.get('vllm_train_steps_total', 0)):5d}   loss "
        f"{trainer.get('vllm_train_loss', float('nan')):.4f}   reward accuracy "
        f"{trainer.get('vllm_train_reward_accuracy', float('nan')):.2f}   margin "
        f"{trainer.get('vllm_train_reward_margin', float('nan')):+.3f}   tokens/s "
        f"{trainer.get('vllm_train_tokens_per_second', 0):.0f}",
        f"adapters published {len(published):3d}   active {active or '(base model)'}",
        "",
        f"{'served by':28s} {'status':10s} {'responses':>9s} {'score':>7s}   hidden preference: {preference}",
    ]
    versions = [BASE] + [v["version_id"] for v in published]
    for v in versions[-12:]:
        scores = by_version.get(v, [])
        mean = f"{np.mean(scores):.4f}" if scores else "-"
        st = "ACTIVE" if v == active else ("" if v == BASE else status.get(v, "PUBLISHED"))
        lines.append(f"{v:28s} {st:10s} {len(scores):9d} {mean:>7s}")
    return "\n".join(lines)


def progress_line(sim: SimulatorStats, pipe: PipelineStats, elapsed: float) -> str:
    by_version = sim.by_version()
    with pipe.lock:
        active, published, pairs = pipe.active_version, len(pipe.published), pipe.counts.get("preference_pairs", 0)
        loss = pipe.trainer.get("vllm_train_loss", float("nan"))
    base = by_version.get(BASE, [])
    cur = by_version.get(active, []) if active else []
    return (f"[{elapsed / 60:4.1f} min] pairs {pairs} · versions published {published} · active "
            f"{active or 'base'} · loss {loss:.3f} · score base {np.mean(base) if base else 0:.3f} → active "
            f"{np.mean(cur) if cur else float('nan'):.3f}")
