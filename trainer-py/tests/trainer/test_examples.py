"""The examples run end to end (shortened) and write adapters that validate; the synthetic data behaves as the
demo expects."""

import importlib.util
from pathlib import Path

import pytest

from vllm_train.data.synthetic import class_share, synthetic_pairs
from vllm_train.lora import validate_adapter_dir

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_lora_finetune_writes_a_valid_adapter(tmp_path, capsys):
    assert load("lora_finetune").main(["--epochs", "1", "--out", str(tmp_path / "a")]) == 0
    assert validate_adapter_dir(tmp_path / "a").rank == 16
    assert "colour share of answers" in capsys.readouterr().out


def test_distillation_lowers_the_students_loss_on_teacher_answers(capsys):
    assert load("distillation").main(["--answers", "24", "--epochs", "2"]) == 0
    line = [l for l in capsys.readouterr().out.splitlines() if l.startswith("student:")][0]
    before, after = (float(x) for x in line.split("teacher answers ")[1].split(",")[0].split(" -> "))
    assert after < before


def test_online_dpo_publishes_versions(tmp_path, capsys):
    assert load("online_dpo").main(["--rounds", "4", "--publish-every", "2", "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v000001", "v000002"]
    validate_adapter_dir(tmp_path / "v000002")


def test_simulated_user_prefers_more_distinct_colours():
    online = load("online_dpo")
    assert online.simulated_user("gold gold gold", "red and blue") == ("red and blue", "gold gold gold")
    assert online.simulated_user("a cat", "a dog") is None


def test_synthetic_pairs_prefer_the_liked_class():
    pairs = synthetic_pairs(20, seed=1)
    assert all(class_share(p.chosen) > 0 and class_share(p.rejected) == 0 for p in pairs)
    assert pairs == synthetic_pairs(20, seed=1) and pairs != synthetic_pairs(20, seed=2)
    assert class_share("Red, blue and a cat.") == pytest.approx(2 / 5)
