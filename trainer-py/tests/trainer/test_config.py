"""LoRATrainConfig refuses what cannot work (above all, what vLLM would refuse to serve) when it is made."""

import pytest

from vllm_train.config import ConfigError, LoRATrainConfig


def make(**kw):
    return LoRATrainConfig(model="tiny", **kw)


def test_defaults_are_a_servable_adapter():
    cfg = make()
    assert (cfg.rank, cfg.alpha, cfg.bias, cfg.use_dora, cfg.modules_to_save) == (16, 32.0, "none", False, ())
    assert cfg.pairs_per_step == cfg.micro_batch_size * cfg.gradient_accumulation_steps


@pytest.mark.parametrize("kw, setting, words", [
    ({"use_dora": True}, "use_dora", "does not serve DoRA"),
    ({"bias": "all"}, "bias", "bias 'none'"),
    ({"modules_to_save": ["lm_head"]}, "modules_to_save", "cannot be served"),
    ({"rank": 12}, "rank", "1, 8, 16, 32, 64, 128, 256, 320, 512"),
    ({"target_modules": ["q_proj", "lm_head"]}, "target_modules", "not embeddings or the LM head"),
    ({"target_modules": []}, "target_modules", "at least one"),
    ({"lr_schedule": "cosine"}, "total_steps", "decays to 0"),
    ({"loss_type": "kto"}, "loss_type", "sigmoid"),
    ({"label_smoothing": 0.1, "loss_type": "ipo"}, "label_smoothing", "sigmoid and robust"),
    ({"max_prompt_length": 512, "max_length": 512}, "max_length", "room for the completion"),
    ({"reference": "teacher"}, "reference", "base"),
    ({"micro_batch_size": 0}, "micro_batch_size", ">= 1"),
    ({"dtype": "int8"}, "dtype", "float32"),
    ({"device": "tpu"}, "device", "cuda"),
    ({"beta": 0}, "beta", "positive"),
])
def test_settings_that_cannot_work_are_refused_naming_the_setting(kw, setting, words):
    with pytest.raises(ConfigError, match=words) as e:
        make(**kw)
    assert str(e.value).startswith(setting + ":")


def test_from_mapping_reads_text_settings_under_a_prefix():
    cfg = LoRATrainConfig.from_mapping({
        "train.model": "m", "train.rank": "8", "train.alpha": "16", "train.use_rslora": "true",
        "train.target_modules": "q_proj, v_proj", "train.max_staleness_versions": "none",
        "train.adam_betas": "0.9,0.95", "kafka.bootstrap.servers": "ignored:9092"}, prefix="train.")
    assert (cfg.model, cfg.rank, cfg.alpha, cfg.use_rslora) == ("m", 8, 16.0, True)
    assert cfg.target_modules == ("q_proj", "v_proj")
    assert cfg.max_staleness_versions is None
    assert cfg.adam_betas == (0.9, 0.95)


def test_from_mapping_accepts_toml_values():
    cfg = LoRATrainConfig.from_mapping({"model": "m", "rank": 32, "target_modules": ["q_proj"], "beta": 0.2,
                                        "gradient_checkpointing": False})
    assert (cfg.rank, cfg.target_modules, cfg.beta, cfg.gradient_checkpointing) == (32, ("q_proj",), 0.2, False)


@pytest.mark.parametrize("values, words", [
    ({"train.model": "m", "train.rnak": "8"}, "train.rnak: unknown setting"),
    ({"train.model": "m", "train.rank": "eight"}, "train.rank: cannot read 'eight'"),
    ({"train.model": "m", "train.use_rslora": "maybe"}, "true or false"),
    ({"train.rank": "8"}, "train.model: set the base model"),
])
def test_from_mapping_says_which_key_is_wrong(values, words):
    with pytest.raises(ConfigError, match=words):
        LoRATrainConfig.from_mapping(values, prefix="train.")
