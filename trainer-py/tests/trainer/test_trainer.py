"""HybridTrainer on the tiny model: DPO and SFT steps, references, saving, resuming and generating."""

import math

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from vllm_train.compat import VLLMUnavailableError, installed_vllm_version, version_problem, vllm_api, vllm_status
from vllm_train.config import LoRATrainConfig
from vllm_train.data import PreferenceExample, SFTExample
from vllm_train.trainer import HybridTrainer

Q = [{"role": "user", "content": "What is your favorite color?"}]
PAIRS = [PreferenceExample(Q, " I like red and blue", " I like the cat"),
         PreferenceExample(Q, " green and gold", " a dog and a fox", weight=2.0),
         PreferenceExample("Tell me about the sky", " the sky is blue", " the sky is a bird"),
         PreferenceExample(Q, " pink", " owl")]


def config(tiny_model, **kw):
    base = dict(model=tiny_model, rank=8, alpha=16, learning_rate=5e-3, lr_schedule="constant", micro_batch_size=2,
                target_modules=("q_proj", "v_proj", "o_proj", "up_proj", "down_proj"))
    return LoRATrainConfig(**{**base, **kw})


@pytest.fixture
def trainer(tiny_model):
    return HybridTrainer(config(tiny_model))


def test_first_dpo_step_has_loss_ln2_and_zero_rewards(trainer):
    m = trainer.dpo_step(PAIRS)
    assert m.loss == pytest.approx(math.log(2), abs=1e-6)
    assert (m.chosen_reward, m.rejected_reward, m.reward_margin, m.reward_accuracy) == (0.0, 0.0, 0.0, 0.0)
    assert (m.step, m.pairs) == (1, 4) and m.tokens > 0 and m.grad_norm > 0


def test_logps_of_the_concatenated_forward_equal_the_models_own_logits(trainer):
    trainer.dpo_step(PAIRS)  # move the adapter off zero so the check covers LoRA too
    got = trainer.pair_logps(PAIRS)
    tok = trainer.pair_tokenizer
    model = trainer.model.eval()
    for i, ex in enumerate(PAIRS):
        tp = tok.pair(ex)
        for completion, value in ((tp.chosen_ids, got.chosen[i]), (tp.rejected_ids, got.rejected[i])):
            ids = torch.tensor([[*tp.prompt_ids, *completion]])
            with torch.no_grad():
                logp = torch.log_softmax(model(input_ids=ids).logits.double(), -1)[0, :-1]
            targets = ids[0, 1:]
            expected = logp.gather(-1, targets[:, None]).squeeze(-1)[len(tp.prompt_ids) - 1:].sum()
            assert float(value) == pytest.approx(float(expected), abs=2e-4)


def test_repeated_dpo_steps_make_the_policy_prefer_chosen(trainer):
    for _ in range(8):
        metrics = trainer.train_dpo(PAIRS)
    assert metrics[-1].reward_accuracy == 1.0 and metrics[-1].loss < math.log(2)
    cur, base = trainer.pair_logps(PAIRS), trainer.pair_logps(PAIRS, adapter="base")
    margins = (cur.chosen - base.chosen) - (cur.rejected - base.rejected)
    assert (margins > 0).all()


def test_train_dpo_takes_one_step_per_micro_batch_times_accumulation(tiny_model):
    t = HybridTrainer(config(tiny_model, micro_batch_size=1, gradient_accumulation_steps=3))
    assert [m.pairs for m in t.train_dpo(PAIRS)] == [3, 1]
    assert t.step == 2 and t.pairs_seen == 4


def _gradients_of_one_step(trainer, pairs):
    grads = {}
    step = trainer.optimizer.step

    def capture(*args, **kwargs):
        grads.update({n: p.grad.clone() for n, p in trainer._lora_params.items()})
        return step(*args, **kwargs)

    trainer.optimizer.step = capture
    metrics = trainer.dpo_step(pairs)
    return metrics, grads


def test_micro_batching_does_not_change_the_step(tiny_model):
    one = HybridTrainer(config(tiny_model, micro_batch_size=4, max_grad_norm=None))
    many = HybridTrainer(config(tiny_model, micro_batch_size=1, max_grad_norm=None))
    one.dpo_step(PAIRS)  # a first step so that B is non-zero and every gradient is exercised
    many.load_lora_weights(one.lora_weights())
    (a, ga), (b, gb) = _gradients_of_one_step(one, PAIRS), _gradients_of_one_step(many, PAIRS)
    assert a.loss == pytest.approx(b.loss, abs=1e-6)
    for name, g in ga.items():
        assert torch.allclose(g, gb[name], rtol=1e-4, atol=1e-7), name


def test_previous_reference_restarts_the_loss_at_ln2(tiny_model):
    t = HybridTrainer(config(tiny_model, reference="previous"))
    for _ in range(3):
        t.dpo_step(PAIRS)
    t.set_reference(t.lora_weights())  # what the service does when it publishes a version
    assert t.dpo_step(PAIRS).loss == pytest.approx(math.log(2), abs=1e-6)


def test_reference_base_does_not_move_while_the_policy_trains(trainer):
    before = trainer.pair_logps(PAIRS, adapter="reference")
    trainer.train_dpo(PAIRS)
    after = trainer.pair_logps(PAIRS, adapter="reference")
    assert torch.equal(before.chosen, after.chosen) and torch.equal(before.rejected, after.rejected)


def test_saved_adapter_reloads_in_peft_with_identical_logits(trainer, tiny_model, tmp_path):
    trainer.train_dpo(PAIRS)
    info = trainer.save_lora(tmp_path / "v000001")
    ids = torch.tensor([[1, 200, 300, 400, 2]])
    with torch.no_grad():
        expected = trainer.model.eval()(input_ids=ids).logits
        reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), str(info.path))
        assert torch.equal(reloaded.eval()(input_ids=ids).logits, expected)
    assert info.base_model == tiny_model and info.rank == 8


def test_resuming_from_adapter_and_state_continues_exactly(tiny_model, tmp_path):
    a = HybridTrainer(config(tiny_model))
    a.train_dpo(PAIRS)
    a.save_lora(tmp_path / "adapter")
    a.save_state(tmp_path / "state", extra={"note": "kept"})
    a.train_dpo(PAIRS)

    b = HybridTrainer(config(tiny_model), adapter_path=tmp_path / "adapter")
    assert b.load_state(tmp_path / "state") == {"note": "kept"}
    assert b.step == 2 and b.pairs_seen == 4
    b.train_dpo(PAIRS)
    for name, w in a.lora_weights().items():
        assert torch.allclose(w, b.lora_weights()[name], atol=1e-7), name


def test_resuming_with_other_lora_settings_is_refused(trainer, tiny_model, tmp_path):
    trainer.save_lora(tmp_path / "adapter")
    with pytest.raises(ValueError, match="continue it with the same settings"):
        HybridTrainer(config(tiny_model, rank=16), adapter_path=tmp_path / "adapter")


def test_restore_puts_weights_optimizer_and_counters_back(trainer):
    trainer.dpo_step(PAIRS)
    snap = trainer.snapshot()
    trainer.dpo_step(list(reversed(PAIRS)))
    trainer.restore(snap)
    assert trainer.step == 1
    for name, w in snap.lora.items():
        assert torch.equal(trainer.lora_weights()[name], w)
    after_restore = trainer.dpo_step(PAIRS)
    trainer.restore(snap)
    assert trainer.dpo_step(PAIRS).loss == pytest.approx(after_restore.loss, abs=1e-7)


def test_sft_steps_lower_the_completion_loss(trainer):
    examples = [SFTExample(Q, " red and blue"), SFTExample("the sky is", " blue")]
    first = trainer.sft_step(examples).loss
    for _ in range(5):
        last = trainer.sft_step(examples).loss
    assert last < first


def test_hf_generation_is_seeded_and_uses_the_given_adapter(trainer, tmp_path):
    prompts = [Q, "the sky is"]
    base_out = trainer.generate(prompts, backend="hf", seed=3, max_new_tokens=6)
    assert base_out == trainer.generate(prompts, backend="hf", seed=3, max_new_tokens=6)
    assert len(base_out) == 2 and all(isinstance(t, str) for t in base_out)
    for _ in range(3):
        trainer.train_dpo(PAIRS)
    path = trainer.save_lora(tmp_path / "trained").path
    trained_out = trainer.generate(prompts, backend="hf", temperature=0, max_new_tokens=6)
    trainer.load_lora_weights({n: torch.zeros_like(w) for n, w in trainer.lora_weights().items()})
    assert trainer.generate(prompts, lora_path=path, backend="hf", temperature=0, max_new_tokens=6) == trained_out


def test_vllm_generation_says_why_it_cannot_run_here(trainer):
    status = vllm_status()
    if status.usable:
        pytest.skip("vLLM and a GPU are present")
    with pytest.raises(VLLMUnavailableError, match="cannot generate with vLLM: ") as e:
        trainer.generate([Q], backend="vllm")
    assert status.reason in str(e.value)


def test_version_gate_accepts_only_the_pinned_vllm():
    assert version_problem("0.33.0") is None
    assert version_problem("0.26.0") is None and version_problem("0.26.3") is None  # the torch 2.11 line
    assert "supports only" in version_problem("0.27.0") and "supports only" in version_problem("0.260.0")
    assert "install vllm==0.33.0" in version_problem("0.32.1")
    assert "not installed" in version_problem(None)


def test_vllm_names_are_refused_with_the_reason_when_vllm_is_absent():
    if installed_vllm_version() is not None:
        pytest.skip("vLLM is installed here")
    with pytest.raises(VLLMUnavailableError, match="vLLM is not installed; install the supported release"):
        vllm_api()


def test_dpo_never_computes_full_vocabulary_logits_for_the_batch(tiny_model, monkeypatch):
    import vllm_train.losses.logprobs as logprobs

    t = HybridTrainer(config(tiny_model, logprob_chunk_tokens=8))
    rows_per_chunk = []
    original = logprobs._chunk_logprobs

    def spy(hidden, *args):
        rows_per_chunk.append(hidden.shape[0])
        return original(hidden, *args)

    monkeypatch.setattr(logprobs, "_chunk_logprobs", spy)
    head = t.model.get_base_model().get_output_embeddings()
    monkeypatch.setattr(head, "forward", lambda *a, **k: pytest.fail("the LM head ran over the whole batch"))
    t.dpo_step(PAIRS)
    assert rows_per_chunk and max(rows_per_chunk) <= 8  # at most chunk x vocab logits exist at any time
