"""``./pipeline demo [--minutes N] [--report DIR]``: run the whole loop (see :mod:`vllm_train.demo`)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

from vllm_train.demo import report
from vllm_train.demo.components import DemoSettings, start_components, start_stack
from vllm_train.demo.monitor import PipelineMonitor
from vllm_train.demo.processes import DemoError, ProcessGroup
from vllm_train.demo.simulator import FeedbackSimulator
from vllm_train.demo.view import progress_line, render
from vllm_train.testing.stack import REPO_ROOT, LocalStackHandle


def parse_args(argv):
    p = argparse.ArgumentParser(prog="./pipeline demo", description=__doc__)
    p.add_argument("--minutes", type=float, help="run headless for this long, then stop and report")
    p.add_argument("--report", type=Path, help="write summary.json and score.png here (default: the run folder)")
    p.add_argument("--run-dir", type=Path, help="folder for this run's logs, configs, adapters (default runs/demo-<time>)")
    p.add_argument("--workers", type=int, default=3, help="concurrent simulated users (default 3)")
    p.add_argument("--engines", type=int, default=2, help="engine workers (default 2)")
    p.add_argument("--batch-size", type=int, default=8, help="pairs per preference batch (default 8)")
    p.add_argument("--publish-every-batches", type=int, default=4, help="batches per adapter version (default 4)")
    p.add_argument("--temperature", type=float, default=0.7, help="the simulated app's sampling temperature (0.7)")
    p.add_argument("--learning-rate", type=float, default=3e-3, help="trainer learning rate (default 3e-3)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    run_dir = (args.run_dir or REPO_ROOT / "runs" / time.strftime("demo-%Y%m%d-%H%M%S")).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    report_dir = (args.report or run_dir).resolve()
    headless = args.minutes is not None or not sys.stdout.isatty()
    say = lambda msg: print(msg, flush=True)  # noqa: E731
    from vllm_train.tiny_model import tiny_model_path

    settings = DemoSettings(run_dir=run_dir, model=tiny_model_path(), engines=args.engines,
                            batch_size=args.batch_size, publish_every_batches=args.publish_every_batches,
                            learning_rate=args.learning_rate)
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
        say(f"ready: public API at {endpoints.inference}; simulated users start now")
        simulator = FeedbackSimulator(endpoints.inference, workers=args.workers, temperature=args.temperature)
        started = time.monotonic()
        simulator.stats.started = started
        monitor = PipelineMonitor(stack.settings, endpoints.inference, endpoints.trainer_metrics, started)
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
                sys.stdout.write("\033[H\033[J" + render(simulator.stats, monitor.stats, elapsed, str(run_dir)) + "\n")
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
        report.write(summary, simulator.stats, monitor.stats, report_dir)
        say(json.dumps({k: summary[k] for k in ("versions_published", "versions_activated", "failed_generate_calls",
                                                   "feedback_events", "pairs", "dlq_records", "base_score",
                                                   "last_version_score", "p_value_last_above_base")}))
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
