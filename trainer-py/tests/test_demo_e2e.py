"""The whole loop, end to end, on a small budget: real broker, registry, Streams app, two engine workers, the
inference service, the trainer and the feedback simulator (`./pipeline demo --minutes 2.5`)."""

import json
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.stack]


def test_the_loop_learns_rolls_out_versions_without_failures_and_accounts_for_every_feedback(tmp_path):
    out = subprocess.run([sys.executable, "-m", "vllm_train.demo", "--minutes", "2.5", "--report",
                          str(tmp_path / "report"), "--run-dir", str(tmp_path / "run")],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, f"demo failed:\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert (tmp_path / "report" / "score.png").stat().st_size > 10_000
    print(json.dumps({k: v for k, v in summary.items() if k != "scores_by_version"}, indent=1))

    assert summary["versions_published"] >= 2
    assert summary["versions_activated"] >= 2
    assert summary["failed_generate_calls"] == 0, summary["errors"]
    assert summary["failed_feedback_calls"] == 0, summary["errors"]
    # Every feedback event is in a pair or in the dead-letter topic: nothing vanished on the way.
    assert summary["feedback_events"] > 0
    assert summary["feedback_in_pairs"] + summary["feedback_in_dlq"] == summary["feedback_events"]
    assert summary["pairs"] == summary["pairs_agreeing_with_preference"]  # every pair says what the user chose
    assert summary["last_version_score"] > summary["base_score"]
    assert summary["p_value_last_above_base"] < 0.05
    assert "stopped; nothing is left running" in out.stdout
