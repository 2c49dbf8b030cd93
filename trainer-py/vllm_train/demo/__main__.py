"""``./pipeline demo [--minutes N] [--report DIR]``: run the whole loop (see :mod:`vllm_train.demo`)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

from vllm_train.demo import heldout, report
from vllm_train.demo.components import DemoSettings, real_model_settings, start_components, start_stack
from vllm_train.demo.monitor import PipelineMonitor
from vllm_train.demo.preference import PREFERENCES, for_model
from vllm_train.demo.processes import DemoError, ProcessGroup
from vllm_train.demo.simulator import FeedbackSimulator
from vllm_train.demo.view import progress_line, render
from vllm_train.models import ModelError
from vllm_train.testing.stack import REPO_ROOT, LocalStackHandle


def parse_args(argv):
    p = argparse.ArgumentParser(prog="./pipeline demo", description=__doc__)
    p.add_argument("--minutes", type=float, help="run headless for this long, then stop and report")
    p.add_argument("--report", type=Path, help="write summary.json and score.png here (default: the run folder)")
    p.add_argument("--run-dir", type=Path, help="folder for this run's logs, configs, adapters (default runs/demo-<time>)")
    p.add_argument("--model", help="base model: tiny (the default on a CPU: it shows learning within minutes on 2 "
                                   "cores), smollm2 (the default with --device cuda; after `vllm-train model smollm2`, "
                                   "done for you), or a model folder / hub name")
    p.add_argument("--backend", choices=("hf", "vllm"), default="hf",
                   help="engine backend: hf (transformers + PEFT; default) or vllm (needs a GPU and vLLM)")
    p.add_argument("--device", choices=("cpu", "cuda"), help="where the engines (hf) and the trainer run (default cpu; "
                                                             "cuda with --backend vllm)")
    p.add_argument("--preference", choices=sorted(PREFERENCES),
                   help="the simulated users' hidden preference (default: colour for the tiny model, concise for a "
                        "real chat model; see vllm_train/demo/preference.py)")
    p.add_argument("--workers", type=int, help="concurrent simulated users (default 3; 8 on a GPU)")
    p.add_argument("--engines", type=int, default=2, help="engine workers (default 2)")
    p.add_argument("--batch-size", type=int, help="pairs per preference batch (default 8)")
    p.add_argument("--publish-every-batches", type=int, help="batches per adapter version (default 4 for the tiny "
                                                             "model, 2 for a real one)")
    p.add_argument("--temperature", type=float, default=0.7, help="the simulated app's sampling temperature (0.7)")
    p.add_argument("--max-tokens", type=int, help="the simulated app's max_tokens (default 24; 128 for a real model)")
    p.add_argument("--learning-rate", type=float, help="trainer learning rate (default 3e-3 for the tiny model)")
    p.add_argument("--heldout-samples", type=int, default=4,
                   help="held-out evaluation at the end: answers per held-out prompt from the base model and from the "
                        "last version (default 4; 0 skips it)")
    return p.parse_args(argv)


def settings_for(args, run_dir: Path) -> tuple[DemoSettings, str, int, int]:
    """The run's settings, its preference name, max_tokens and simulated users, from the flags and one rule for the
    defaults: the default model must show learning within 10 minutes where it runs, so the tiny model on a CPU
    (a real 135M model answers at ~30 tokens/s on 2 cores: too few pairs in 10 minutes) and SmolLM2 on a GPU."""
    from vllm_train.models import CATALOGUE, TINY, ensure_model, resolve_model

    device = args.device or ("cuda" if args.backend == "vllm" else "cpu")
    if args.backend == "vllm" and device != "cuda":
        raise DemoError("--backend vllm serves on a GPU: use --device cuda")
    name = args.model or ("smollm2" if device == "cuda" else TINY)
    if name in CATALOGUE:
        ensure_model(name)  # a no-op once converted
    model = Path(resolve_model(name))
    tiny = name == TINY
    s = DemoSettings(run_dir=run_dir, model=model, backend=args.backend, device=device) if tiny else \
        real_model_settings(run_dir, model, args.backend, device)
    s.engines = args.engines
    for flag, field in (("batch_size", "batch_size"), ("publish_every_batches", "publish_every_batches"),
                        ("learning_rate", "learning_rate")):
        if getattr(args, flag) is not None:
            setattr(s, field, getattr(args, flag))
    preference = args.preference or for_model(TINY if tiny else str(model)).name
    max_tokens = args.max_tokens or (24 if tiny else 128)
    workers = args.workers or (8 if device == "cuda" else 3)
    return s, preference, max_tokens, workers


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    run_dir = (args.run_dir or REPO_ROOT / "runs" / time.strftime("demo-%Y%m%d-%H%M%S")).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    report_dir = (args.report or run_dir).resolve()
    headless = args.minutes is not None or not sys.stdout.isatty()
    say = lambda msg: print(msg, flush=True)  # noqa: E731
    try:
        settings, preference_name, max_tokens, workers = settings_for(args, run_dir)
    except (DemoError, ModelError) as e:
        print(f"demo: {e}", file=sys.stderr)
        return 2
    preference = PREFERENCES[preference_name]
    group = ProcessGroup(run_dir / "logs")
    stack: LocalStackHandle | None = None
    simulator = monitor = None
    stopping = False

    def on_signal(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    started = time.monotonic()
    try:
        say(f"run folder {run_dir} (logs in logs/, configs in conf/, adapters in adapters/)")
        say("stack      starting (Kafka broker + schema registry)")
        stack = start_stack(run_dir)
        say(f"stack      Kafka {stack.bootstrap_servers}, registry {stack.registry_url}")
        endpoints = start_components(group, settings, stack, say)
        say(f"ready: public API at {endpoints.inference}; {workers} simulated users start now, hidden preference: "
            f"{preference.description}")
        simulator = FeedbackSimulator(endpoints.inference, preference, workers=workers, max_tokens=max_tokens,
                                      temperature=args.temperature)
        started = time.monotonic()
        simulator.stats.started, simulator.stats.started_wall = started, time.time()
        monitor = PipelineMonitor(stack.settings, endpoints.inference, endpoints.trainer_metrics, started, preference)
        monitor.start()
        simulator.start()
        deadline = started + args.minutes * 60 if args.minutes else None
        last_line = 0.0
        while not stopping and (deadline is None or time.monotonic() < deadline):
            group.check()
            elapsed = time.monotonic() - started
            if headless:
                if elapsed - last_line >= 15:
                    say(progress_line(simulator.stats, monitor.stats, elapsed))
                    last_line = elapsed
            else:
                sys.stdout.write("\033[H\033[J" + render(simulator.stats, monitor.stats, elapsed, str(run_dir),
                                                         preference.description) + "\n")
                sys.stdout.flush()
            time.sleep(1.0)
        say("stopping: simulated users first, then waiting for the pipeline to account for every feedback event")
        simulator.stop()
        drain_deadline = time.monotonic() + 60
        while time.monotonic() < drain_deadline:
            with simulator.stats.lock, monitor.stats.lock:
                pending = simulator.stats.feedback_ids - monitor.stats.pair_feedback_ids - monitor.stats.dlq_feedback_ids
            if not pending:
                break
            time.sleep(1.0)
        monitor.stop()
        summary = report.summarise(simulator.stats, monitor.stats, time.monotonic() - started)
        summary.update(preference=preference.name, model=str(settings.model), backend=settings.backend,
                       device=settings.device)
        if args.heldout_samples and summary["last_version"]:
            say(f"held-out evaluation: {len(preference.heldout_prompts)} prompts the users never asked, "
                f"{args.heldout_samples} answers each from the base model and from {summary['last_version']} "
                "(trainer stopped, that version activated and pinned, so it stays loaded)")
            group.stop("trainer")
            heldout.pin(endpoints.inference, summary["last_version"])
            result = heldout.evaluate(endpoints.inference, preference, summary["last_version"],
                                      model_path=str(settings.model),
                                      adapter_dir=run_dir / "adapters" / summary["last_version"],
                                      samples=args.heldout_samples, max_tokens=max_tokens,
                                      temperature=args.temperature, device=settings.device)
            summary["heldout"] = result.as_dict()
            say(f"held-out: {summary['last_version']} beats base {result.win_rate:.0%} of the time "
                f"({result.wins} wins, {result.losses} losses, {result.ties} ties; p = {result.p_value:.2g}); "
                f"drift guard {'holds' if result.drift_guard_holds else 'FAILS'} (KL {result.kl_per_token:.3f} "
                f"nats/token)")
        report.write(summary, simulator.stats, monitor.stats, report_dir,
                     ylabel=f"score: {preference.name} ({'share of colour words' if preference.name == 'colour' else 'short, complete, on topic'})")
        say(json.dumps({k: summary[k] for k in ("versions_published", "versions_activated", "failed_generate_calls",
                                                   "feedback_events", "pairs", "dlq_records", "base_score",
                                                   "last_version_score", "p_value_last_above_base")}))
        if "heldout" in summary:
            say(json.dumps({"heldout_" + k: summary["heldout"][k] for k in ("win_rate", "p_value", "kl_per_token",
                                                                            "drift_guard_holds")}))
        say(f"report: {report_dir / 'summary.json'} and {report_dir / 'score.png'}")
        return 0
    except DemoError as e:
        print(f"demo: {e}", file=sys.stderr)
        return 1
    finally:
        if simulator is not None:
            simulator.stop()
        if monitor is not None:
            monitor.stop()
        say("stopping the components")
        group.stop_all()
        if stack is not None:
            stack.stop()
        say("stopped; nothing is left running")


if __name__ == "__main__":
    sys.exit(main())
