"""EngineConfig: flags over VT_ENGINE_* env over config file over defaults, validated at start with every problem named."""

import pytest

from vllm_train.engine.config import EngineConfig


def test_flags_beat_env_which_beats_the_file_which_beats_defaults(tmp_path):
    root = tmp_path / "adapters"
    root.mkdir()
    config_file = tmp_path / "engine.properties"
    config_file.write_text(f"# engine\nengine.model=from-file\nadapter_root={root}\nmax_loras=3\nmax_n=5\n")
    env = {"VT_ENGINE_MAX_LORAS": "6", "VT_ENGINE_MAX_N": "7", "VT_ENGINE_ENFORCE_EAGER": "true",
           "VT_OTHER": "ignored"}
    config = EngineConfig.load(["--config", str(config_file), "--max-n", "2", "--port", "0"], env)
    assert config.model == "from-file"          # file
    assert config.max_loras == 6                 # env over file
    assert config.max_n == 2                     # flag over env
    assert config.enforce_eager is True          # env bool
    assert config.max_lora_rank == 64            # default
    assert config.served_model_name == "from-file" and config.replica.endswith(":0")


def test_every_problem_is_reported_at_once_with_the_flag_and_variable_to_fix(tmp_path):
    with pytest.raises(ValueError) as failure:
        EngineConfig.load(["--model", "m", "--backend", "tgi", "--adapter-root", str(tmp_path / "missing"),
                           "--max-lora-rank", "48", "--max-loras", "2", "--max-loras-per-batch", "3"], {})
    message = str(failure.value)
    assert "backend must be one of hf, vllm, not 'tgi'" in message
    assert "adapter_root must be an existing directory" in message and "VT_ENGINE_ADAPTER_ROOT" in message
    assert "max_lora_rank must be one of (1, 8, 16, 32, 64, 128, 256, 320, 512)" in message
    assert "max_loras_per_batch must be 1..max_loras (2)" in message and "--max-loras-per-batch" in message


def test_a_missing_model_is_refused(tmp_path):
    with pytest.raises(ValueError, match="model is required"):
        EngineConfig.load(["--adapter-root", str(tmp_path)], {})


def test_values_of_the_wrong_type_are_refused_with_their_name(tmp_path):
    with pytest.raises(ValueError, match="max_loras must be a int, not 'many'.*VT_ENGINE_MAX_LORAS"):
        EngineConfig.load(["--model", "m", "--adapter-root", str(tmp_path)], {"VT_ENGINE_MAX_LORAS": "many"})


def test_unknown_keys_in_the_file_are_refused(tmp_path):
    config_file = tmp_path / "engine.properties"
    config_file.write_text("model=m\nmax_lora=8\n")
    with pytest.raises(ValueError, match=r"unknown keys \['max_lora'\]"):
        EngineConfig.load(["--config", str(config_file), "--adapter-root", str(tmp_path)], {})
