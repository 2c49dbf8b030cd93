"""``HybridTrainer``: train a LoRA adapter with HF/PEFT, serve it with vLLM (the seed design's Strategy 3).

Training runs in plain PyTorch on a PEFT model, top to bottom and without a framework: for DPO, each micro-batch
puts the chosen and rejected sequences of its pairs in one padded batch and runs one forward; log-probabilities are
summed over completion tokens only, through the chunked LM head of :mod:`vllm_train.losses.logprobs` (no float32
logits over the whole vocabulary for the whole batch). The reference policy is the same model with the adapter
disabled (``reference="base"``; no second copy of the model) or a frozen copy of the last published adapter's weights
swapped in for the reference pass (``reference="previous"``).

The trained adapter is written by :meth:`HybridTrainer.save_lora` in the directory format vLLM loads, and
:meth:`HybridTrainer.generate` samples through vLLM's ``LLM`` + ``LoRARequest`` where vLLM and a GPU exist, or through
the in-process HF/PEFT model otherwise (and says which, and why).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import torch

from vllm_train.compat import VLLMUnavailableError, vllm_api, vllm_status
from vllm_train.config import LoRATrainConfig
from vllm_train.data import (
    PairTokenizer,
    PreferenceExample,
    PromptInput,
    SFTExample,
    TokenizedPair,
    TokenizedSequence,
    collate_pairs,
    collate_sequences,
    encode_prompt,
)
from vllm_train.data.collate import SequenceBatch
from vllm_train.losses import causal_lm_loss, dpo_loss, sequence_logprobs
from vllm_train.lora import AdapterInfo, read_adapter_config, save_lora

log = logging.getLogger(__name__)

TRAINER_STATE_FILE = "trainer_state.pt"
LoRAWeights = dict[str, torch.Tensor]


@dataclass(frozen=True)
class StepMetrics:
    """What one optimizer step did."""

    step: int
    loss: float
    reward_accuracy: float
    """Fraction of pairs whose chosen implicit reward exceeds the rejected one."""
    reward_margin: float
    """Mean chosen minus rejected implicit reward."""
    chosen_reward: float
    rejected_reward: float
    pairs: int
    tokens: int
    """Non-padding tokens through the policy forward (chosen and rejected sequences)."""
    seconds: float
    grad_norm: float
    learning_rate: float

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "tokens_per_s": self.tokens_per_s}


@dataclass(frozen=True)
class PairLogps:
    """Summed completion log-probabilities of pairs under one set of weights: ``[pairs]`` float32 tensors."""

    chosen: torch.Tensor
    rejected: torch.Tensor


@dataclass(frozen=True)
class _Prepared:
    """A micro-batch ready for the decoder: tensors on the device, the attention mask (or per-layer-type None when
    nothing is padded), and the scored positions ``(rows, positions)`` if worked out on the host."""

    batch: SequenceBatch
    attention_mask: object
    scored: tuple[torch.Tensor, torch.Tensor] | None


@dataclass
class TrainerSnapshot:
    """Everything needed to put the trainer back where it was: adapter weights, optimizer and schedule, counters."""

    lora: LoRAWeights
    optimizer: dict
    scheduler: dict
    step: int
    pairs_seen: int


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


def _schedule(config: LoRATrainConfig):
    warmup, total, kind = config.warmup_steps, config.total_steps, config.lr_schedule

    def factor(step: int) -> float:
        if kind == "constant":
            return 1.0
        if warmup and step < warmup:
            return (step + 1) / warmup
        if kind == "constant_with_warmup":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 1.0 - progress if kind == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


class HybridTrainer:
    """A base model with one trainable LoRA adapter, trained with DPO or SFT, saved in vLLM's adapter format.

    ``adapter_path``: continue from a saved adapter (its rank and targets must match the config); with
    ``reference="previous"`` it is also the frozen reference. ``state_path``: a directory written by
    :meth:`save_state` (optimizer, schedule, counters) to resume exactly where training stopped.
    """

    def __init__(self, config: LoRATrainConfig, *, adapter_path: str | os.PathLike | None = None,
                 state_path: str | os.PathLike | None = None, base_model=None, tokenizer=None):
        from peft import LoraConfig, PeftModel, get_peft_model
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.config = config
        if config.cpu_threads is not None:
            torch.set_num_threads(config.cpu_threads)
        self.device = resolve_device(config.device)
        self.dtype = resolve_dtype(config.dtype, self.device)
        # base_model/tokenizer: already loaded ones (e.g. a benchmark's random-weight model); config.model names them.
        self.tokenizer = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(config.model)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token  # only ever under the attention mask
        self.pair_tokenizer = PairTokenizer(self.tokenizer, config.max_prompt_length, config.max_length)

        base = base_model if base_model is not None else AutoModelForCausalLM.from_pretrained(config.model,
                                                                                                dtype=self.dtype)
        base.config.use_cache = False
        base.requires_grad_(False)
        if adapter_path is not None:
            self._check_adapter_matches(adapter_path)
            model = PeftModel.from_pretrained(base, str(adapter_path), is_trainable=True)
        else:
            rng = torch.random.get_rng_state()
            torch.manual_seed(config.seed)  # the adapter's initial A matrices come from this seed
            try:
                model = get_peft_model(base, LoraConfig(
                    r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                    target_modules=list(config.target_modules), use_rslora=config.use_rslora, use_dora=False,
                    bias="none", task_type="CAUSAL_LM"))
            finally:
                torch.random.set_rng_state(rng)
        self.model = model.to(self.device)
        self._lora_params = {n: p for n, p in self.model.named_parameters() if p.requires_grad}
        if not self._lora_params:
            raise ValueError(f"no LoRA parameters: none of {list(config.target_modules)} is a module of "
                             f"{config.model}")
        for p in self._lora_params.values():
            p.data = p.data.float()  # master weights in float32 whatever the base dtype
        if config.gradient_checkpointing:
            self.model.get_base_model().gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False})
            self.model.enable_input_require_grads()
        self.fast_path = config.fast_path == "on" or (config.fast_path == "auto" and self.device.type == "cuda")
        self.fast_path_report = None
        if self.fast_path:
            from vllm_train.fast_path import apply_fast_path

            self.fast_path_report = apply_fast_path(self.model, compile=config.compile_kernels)
        self.model.train()

        self.optimizer = torch.optim.AdamW(list(self._lora_params.values()), lr=config.learning_rate,
                                           betas=config.adam_betas, weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _schedule(config))
        self.step = 0
        self.pairs_seen = 0
        # Weights of the frozen reference for reference="previous"; None means the base model (adapter disabled).
        self._reference_weights: LoRAWeights | None = None
        if adapter_path is not None and config.reference == "previous":
            self._reference_weights = self.lora_weights()
        if state_path is not None:
            self.load_state(state_path)
        self._vllm = None
        self._vllm_lora_ids: dict[str, int] = {}

    # --- weights --------------------------------------------------------------------------------------------------

    def _check_adapter_matches(self, adapter_path) -> None:
        cfg = read_adapter_config(adapter_path)
        want = (self.config.rank, sorted(self.config.target_modules), self.config.use_rslora)
        got = (cfg.get("r"), sorted(cfg.get("target_modules") or []), bool(cfg.get("use_rslora", False)))
        if want != got:
            raise ValueError(f"adapter {adapter_path} has (rank, target_modules, use_rslora) = {got}, the config "
                             f"says {want}; continue it with the same settings")

    def lora_weights(self) -> LoRAWeights:
        """A detached copy of the adapter's current weights."""
        return {n: p.detach().clone() for n, p in self._lora_params.items()}

    def load_lora_weights(self, weights: Mapping[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for n, p in self._lora_params.items():
                p.copy_(weights[n])

    @contextlib.contextmanager
    def _weights(self, weights: Mapping[str, torch.Tensor] | None) -> Iterator[None]:
        """Runs the body with ``weights`` in the adapter (None: as they are), then puts the current ones back."""
        if weights is None:
            yield
            return
        current = self.lora_weights()
        self.load_lora_weights(weights)
        try:
            yield
        finally:
            self.load_lora_weights(current)

    @contextlib.contextmanager
    def _reference(self) -> Iterator[None]:
        if self._reference_weights is None:
            with self.model.disable_adapter():
                yield
        else:
            with self._weights(self._reference_weights):
                yield

    def set_reference(self, weights: Mapping[str, torch.Tensor] | None) -> None:
        """Freezes ``weights`` as the DPO reference (``reference="previous"``); None uses the base model."""
        self._reference_weights = None if weights is None else {n: t.detach().clone() for n, t in weights.items()}

    @property
    def reference_weights(self) -> LoRAWeights | None:
        return self._reference_weights

    # --- log-probabilities ------------------------------------------------------------------------------------------

    def _prepare(self, host: SequenceBatch) -> _Prepared:
        """A collated (host) batch on the device. The fast path moves it without stalling the host (pinned memory,
        non-blocking copies) and works out on the host what would otherwise need a device sync per forward: whether
        anything is padded, and which positions are scored."""
        if not self.fast_path:
            batch = host.to(self.device)
            return _Prepared(batch, batch.attention_mask, None)
        if self.device.type == "cuda":
            move = lambda t: t.pin_memory().to(self.device, non_blocking=True)  # noqa: E731
        else:
            move = lambda t: t.to(self.device)  # noqa: E731
        batch = SequenceBatch(move(host.input_ids), move(host.attention_mask), move(host.completion_mask),
                              move(host.weights))
        rows, positions = host.completion_mask[:, 1:].nonzero(as_tuple=True)
        mask = batch.attention_mask
        if bool(host.attention_mask.all()):
            # Nothing padded: plain causal attention (SDPA's flash kernel). Handing the decoder its per-layer-type
            # masks (all None) also skips transformers' mask building, which syncs with the device.
            layer_types = getattr(self.model.get_base_model().config, "layer_types", None)
            mask = {t: None for t in layer_types} if layer_types else None
        return _Prepared(batch, mask, (move(rows), move(positions)))

    def _completion_logps(self, prepared: _Prepared) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed completion log-probs per row: the decoder's hidden states through the chunked LM head, never the
        model's full logits."""
        causal = self.model.get_base_model()
        decoder, head = causal.get_decoder(), causal.get_output_embeddings()
        batch = prepared.batch
        hidden = decoder(input_ids=batch.input_ids, attention_mask=prepared.attention_mask, use_cache=False)[0]
        return sequence_logprobs(hidden, head.weight, batch.input_ids, batch.completion_mask,
                                 bias=getattr(head, "bias", None), chunk_tokens=self.config.logprob_chunk_tokens,
                                 softcap=getattr(causal.config, "final_logit_softcapping", None),
                                 fused=self.fast_path, scored_index=prepared.scored)

    def tokenize(self, pairs: Sequence[PreferenceExample | TokenizedPair]) -> list[TokenizedPair]:
        return [p if isinstance(p, TokenizedPair) else self.pair_tokenizer.pair(p) for p in pairs]

    @torch.no_grad()
    def pair_logps(self, pairs: Sequence[PreferenceExample | TokenizedPair], *, adapter: str = "current",
                   weights: Mapping[str, torch.Tensor] | None = None) -> PairLogps:
        """Log-probabilities of chosen and rejected completions under the current adapter (``"current"``), the base
        model (``"base"``), the DPO reference (``"reference"``), or given adapter ``weights``. No gradients."""
        tokenized = self.tokenize(pairs)
        chosen, rejected = [], []
        was_training = self.model.training
        self.model.eval()
        try:
            for start in range(0, len(tokenized), self.config.micro_batch_size):
                chunk = tokenized[start:start + self.config.micro_batch_size]
                prepared = self._prepare(collate_pairs(chunk, self.tokenizer.pad_token_id))
                if adapter == "base":
                    ctx = self.model.disable_adapter()
                elif adapter == "reference":
                    ctx = self._reference()
                elif adapter == "current":
                    ctx = self._weights(weights)
                else:
                    raise ValueError(f"adapter must be current, base or reference, not {adapter!r}")
                with ctx:
                    logps, _ = self._completion_logps(prepared)
                chosen.append(logps[:len(chunk)].cpu())
                rejected.append(logps[len(chunk):].cpu())
        finally:
            self.model.train(was_training)
        return PairLogps(torch.cat(chosen) if chosen else torch.zeros(0), torch.cat(rejected) if rejected
                         else torch.zeros(0))

    # --- training ---------------------------------------------------------------------------------------------------

    def _optimizer_step(self) -> float:
        params = list(self._lora_params.values())
        if self.config.max_grad_norm is not None:
            norm = float(torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm))
        else:
            norm = float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params if p.grad is not None])))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return norm

    def dpo_step(self, pairs: Sequence[PreferenceExample | TokenizedPair]) -> StepMetrics:
        """One optimizer step of DPO over ``pairs`` (in micro-batches of ``micro_batch_size``, gradients
        accumulated); the loss is the weight-averaged per-pair loss."""
        tokenized = self.tokenize(pairs)
        if not tokenized:
            raise ValueError("dpo_step needs at least one pair")
        cfg = self.config
        started = time.perf_counter()
        total_weight = float(sum(p.weight for p in tokenized))
        if not total_weight > 0:
            raise ValueError("pair weights must be positive")
        loss_sum, tokens = 0.0, 0
        chosen_rewards, rejected_rewards = [], []
        self.optimizer.zero_grad(set_to_none=True)
        for start in range(0, len(tokenized), cfg.micro_batch_size):
            chunk = tokenized[start:start + cfg.micro_batch_size]
            n = len(chunk)
            prepared = self._prepare(collate_pairs(chunk, self.tokenizer.pad_token_id))
            batch = prepared.batch
            with torch.no_grad():
                was_training = self.model.training
                self.model.eval()  # the reference has no dropout
                with self._reference():
                    ref, _ = self._completion_logps(prepared)
                self.model.train(was_training)
            policy, _ = self._completion_logps(prepared)
            losses, cr, rr = dpo_loss(policy[:n], policy[n:], ref[:n], ref[n:], beta=cfg.beta,
                                      loss_type=cfg.loss_type, label_smoothing=cfg.label_smoothing)
            weights = batch.weights
            ((losses * weights).sum() / total_weight).backward()
            # Metrics stay on the device until the step ends: no host sync between micro-batches.
            loss_sum = loss_sum + (losses.detach() * weights).sum()
            tokens += sum(p.num_tokens for p in chunk)  # = batch.num_tokens, counted on the host
            chosen_rewards.append(cr)
            rejected_rewards.append(rr)
        lr = self.scheduler.get_last_lr()[0]
        grad_norm = self._optimizer_step()
        self.pairs_seen += len(tokenized)
        cr, rr = torch.cat(chosen_rewards).cpu(), torch.cat(rejected_rewards).cpu()
        return StepMetrics(step=self.step, loss=float(loss_sum) / total_weight,
                           reward_accuracy=float((cr > rr).float().mean()), reward_margin=float((cr - rr).mean()),
                           chosen_reward=float(cr.mean()), rejected_reward=float(rr.mean()), pairs=len(tokenized),
                           tokens=tokens, seconds=time.perf_counter() - started, grad_norm=grad_norm,
                           learning_rate=lr)

    def train_dpo(self, pairs: Sequence[PreferenceExample | TokenizedPair]) -> list[StepMetrics]:
        """DPO over ``pairs`` in order: one optimizer step per ``micro_batch_size x gradient_accumulation_steps``
        pairs (the last step takes what is left)."""
        n = self.config.pairs_per_step
        return [self.dpo_step(pairs[i:i + n]) for i in range(0, len(pairs), n)]

    def sft_step(self, examples: Sequence[SFTExample | TokenizedSequence]) -> StepMetrics:
        """One optimizer step of supervised fine-tuning (causal-LM loss on completion tokens)."""
        sequences = [e if isinstance(e, TokenizedSequence) else self.pair_tokenizer.sequence(e) for e in examples]
        if not sequences:
            raise ValueError("sft_step needs at least one example")
        started = time.perf_counter()
        total_tokens = sum(len(s.completion_ids) for s in sequences)
        loss_sum, tokens = 0.0, 0
        self.optimizer.zero_grad(set_to_none=True)
        causal = self.model.get_base_model()
        head = causal.get_output_embeddings()
        for start in range(0, len(sequences), self.config.micro_batch_size):
            chunk = sequences[start:start + self.config.micro_batch_size]
            batch = collate_sequences(chunk, self.tokenizer.pad_token_id).to(self.device)
            hidden = causal.get_decoder()(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                                          use_cache=False)[0]
            chunk_tokens = sum(len(s.completion_ids) for s in chunk)
            loss = causal_lm_loss(hidden, head.weight, batch.input_ids, batch.completion_mask,
                                  bias=getattr(head, "bias", None), chunk_tokens=self.config.logprob_chunk_tokens)
            (loss * chunk_tokens / total_tokens).backward()
            loss_sum += float(loss.detach()) * chunk_tokens
            tokens += batch.num_tokens
        lr = self.scheduler.get_last_lr()[0]
        grad_norm = self._optimizer_step()
        self.pairs_seen += len(sequences)
        return StepMetrics(step=self.step, loss=loss_sum / total_tokens, reward_accuracy=float("nan"),
                           reward_margin=float("nan"), chosen_reward=float("nan"), rejected_reward=float("nan"),
                           pairs=len(sequences), tokens=tokens, seconds=time.perf_counter() - started,
                           grad_norm=grad_norm, learning_rate=lr)

    # --- snapshots, saving, resuming --------------------------------------------------------------------------------

    def snapshot(self) -> TrainerSnapshot:
        return TrainerSnapshot(self.lora_weights(), copy.deepcopy(self.optimizer.state_dict()),
                               copy.deepcopy(self.scheduler.state_dict()), self.step, self.pairs_seen)

    def restore(self, snap: TrainerSnapshot) -> None:
        """Puts adapter, optimizer, schedule and counters back to ``snap`` (e.g. after a refused version)."""
        self.load_lora_weights(snap.lora)
        self.optimizer.load_state_dict(copy.deepcopy(snap.optimizer))
        self.scheduler.load_state_dict(copy.deepcopy(snap.scheduler))
        self.step, self.pairs_seen = snap.step, snap.pairs_seen

    def save_lora(self, path: str | os.PathLike) -> AdapterInfo:
        """Writes the adapter as a new directory vLLM loads; returns its :class:`AdapterInfo` (with sha256)."""
        return save_lora(self.model, path, base_model_name=self.config.model)

    def save_state(self, path: str | os.PathLike, extra: Mapping | None = None) -> Path:
        """Writes optimizer, schedule and counters (and ``extra``, e.g. the service's held-out pairs) to ``path``."""
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                 "step": self.step, "pairs_seen": self.pairs_seen, "extra": dict(extra or {}),
                 "param_names": list(self._lora_params)}
        torch.save(state, out / TRAINER_STATE_FILE)
        return out / TRAINER_STATE_FILE

    def load_state(self, path: str | os.PathLike) -> dict:
        """Loads what :meth:`save_state` wrote; returns its ``extra``."""
        file = Path(path) / TRAINER_STATE_FILE
        state = torch.load(file, map_location=self.device, weights_only=False)
        if state["param_names"] != list(self._lora_params):
            raise ValueError(f"{file} was saved for other LoRA parameters than this model has")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.pairs_seen = state["step"], state["pairs_seen"]
        return state["extra"]

    # --- generation -------------------------------------------------------------------------------------------------

    def generate(self, prompts: Sequence[PromptInput], lora_path: str | os.PathLike | None = None, *,
                 max_new_tokens: int = 32, temperature: float = 1.0, top_p: float = 1.0, seed: int | None = None,
                 backend: str = "auto") -> list[str]:
        """Samples one completion per prompt.

        ``backend="vllm"``: vLLM's ``LLM`` with ``LoRARequest(lora_path)`` (the base model if ``lora_path`` is None);
        raises :class:`VLLMUnavailableError` saying why when vLLM or a GPU is missing. ``"hf"``: the in-process model,
        with the adapter at ``lora_path`` swapped in, or the adapter being trained if None. ``"auto"``: vLLM if usable,
        else HF, logging the reason once. ``temperature=0`` is greedy.
        """
        if backend not in ("auto", "vllm", "hf"):
            raise ValueError(f"backend must be auto, vllm or hf, not {backend!r}")
        if backend in ("auto", "vllm"):
            status = vllm_status()
            if status.usable:
                return self._generate_vllm(prompts, lora_path, max_new_tokens, temperature, top_p, seed)
            if backend == "vllm":
                raise VLLMUnavailableError(f"cannot generate with vLLM: {status.reason}")
            if not getattr(self, "_told_fallback", False):
                log.info("generating with HF/PEFT on %s: %s", self.device, status.reason)
                self._told_fallback = True
        return self._generate_hf(prompts, lora_path, max_new_tokens, temperature, top_p, seed)

    def _generate_vllm(self, prompts, lora_path, max_new_tokens, temperature, top_p, seed) -> list[str]:
        api = vllm_api()
        if self._vllm is None:
            self._vllm = api.LLM(model=self.config.model, enable_lora=True, max_lora_rank=max(16, self.config.rank),
                                 max_loras=2, seed=self.config.seed)
        request = None
        if lora_path is not None:
            key = str(Path(lora_path).resolve())
            # One id per directory: vLLM caches adapters by id, so a new directory must never reuse one.
            lora_id = self._vllm_lora_ids.setdefault(key, len(self._vllm_lora_ids) + 1)
            request = api.LoRARequest(f"adapter-{lora_id}", lora_id, key)
        params = api.SamplingParams(max_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed)
        # Token ids, not text: vLLM then sees exactly the prompt tokens training used (no second BOS, same split).
        inputs = [{"prompt_token_ids": encode_prompt(self.tokenizer, p)} for p in prompts]
        outputs = self._vllm.generate(inputs, params, lora_request=request, use_tqdm=False)
        return [o.outputs[0].text for o in outputs]

    @torch.no_grad()
    def _generate_hf(self, prompts, lora_path, max_new_tokens, temperature, top_p, seed) -> list[str]:
        weights = None
        if lora_path is not None:
            from safetensors.torch import load_file

            from vllm_train.lora import ADAPTER_WEIGHTS

            self._check_adapter_matches(lora_path)
            saved = load_file(str(Path(lora_path) / ADAPTER_WEIGHTS))
            # PEFT saves keys without the adapter name; the live parameters carry ".default".
            weights = {n: saved[n.replace(".default", "")].to(self.device) for n in self._lora_params}
        encoded = [encode_prompt(self.tokenizer, p) for p in prompts]
        width = max(len(e) for e in encoded)
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(e)) + e for e in encoded], device=self.device)
        mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded], device=self.device)
        generator_state = None
        if seed is not None:
            generator_state = torch.random.get_rng_state()
            torch.manual_seed(seed)
        was_training = self.model.training
        self.model.eval()
        try:
            with self._weights(weights):
                out = self.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                          do_sample=temperature > 0, temperature=temperature if temperature > 0
                                          else None, top_p=top_p if temperature > 0 else None,
                                          pad_token_id=pad, eos_token_id=self.tokenizer.eos_token_id,
                                          use_cache=True)
        finally:
            self.model.train(was_training)
            if generator_state is not None:
                torch.random.set_rng_state(generator_state)
        return [self.tokenizer.decode(row[width:], skip_special_tokens=True) for row in out]
