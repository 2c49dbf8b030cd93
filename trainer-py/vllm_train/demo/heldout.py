"""The held-out evaluation that ends a demo run: does the last adapter version beat the base model on prompts the
simulated users never asked, and do its answers stay fluent and on topic?

**Win rate.** For every held-out prompt of the preference, ``samples`` answers are drawn from the base model and the
same number from the last version, through the public API with the version pinned (``adapter_version``), at the
demo's temperature, one request of n = ``samples`` per prompt with the same seed for both. Answer k of the version is compared with answer k of
the base model under the preference's score: a win, a loss or a tie. The win rate counts ties as half:
``(wins + ties / 2) / comparisons``. The p-value is the exact one-sided sign test on the comparisons that are not
ties (under "no better than base", wins ~ Binomial(wins + losses, 1/2)).

**Drift guard.** A preference can be met by degenerate text (a keyword list, a canned reply), so three checks watch
the answers themselves, computed with the base model and the adapter in this process (HF + PEFT):

- ``kl_per_token``: a Monte-Carlo estimate of KL(version ‖ base) per token on the version's own answers,
  mean over answers of ``(log p_version(y|x) − log p_base(y|x)) / |y|``. How far the policy moved, in nats per token.
- ``base_nll_per_token``: the base model's negative log-likelihood per token of the version's answers, against the
  same figure for the base model's own answers: text the base model finds implausible (word salad, lists of
  keywords) scores far higher.
- ``sentence_share``: the share of answers that contain at least one sentence (a run of 4+ words ending in
  ``.``, ``!`` or ``?``), against the base model's.

The guard holds when ``kl_per_token <= KL_BOUND``, ``base_nll_per_token <= NLL_RATIO_BOUND x`` the base model's and
``sentence_share >= SENTENCE_SHARE_RATIO x`` the base model's.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import grpc

from vllm_train.demo.preference import Preference
from vllm_train.proto.v1 import common_pb2, inference_pb2, inference_pb2_grpc

KL_BOUND = 1.0            # nats per token
NLL_RATIO_BOUND = 1.5
SENTENCE_SHARE_RATIO = 0.8
_SENTENCE = re.compile(r"(?:\b\w+\b[\s,;:'\"()-]+){3,}\b\w+\b[.!?]")


@dataclass
class Comparison:
    wins: int
    losses: int
    ties: int

    @property
    def n(self) -> int:
        return self.wins + self.losses + self.ties

    @property
    def win_rate(self) -> float:
        return (self.wins + self.ties / 2) / self.n if self.n else 0.0

    @property
    def p_value(self) -> float:
        return sign_test_p(self.wins, self.losses)


def sign_test_p(wins: int, losses: int) -> float:
    """One-sided exact sign test: P(X >= wins) for X ~ Binomial(wins + losses, 1/2); 1.0 without comparisons."""
    n = wins + losses
    if n == 0:
        return 1.0
    return sum(math.comb(n, k) for k in range(wins, n + 1)) / 2 ** n


def compare(preference: Preference, questions: list[str], base: list[str], version: list[str]) -> Comparison:
    wins = losses = ties = 0
    for q, b, v in zip(questions, base, version, strict=True):
        sb, sv = preference.score(b, q), preference.score(v, q)
        wins += sv > sb
        losses += sv < sb
        ties += sv == sb
    return Comparison(wins, losses, ties)


def sentence_share(answers: list[str]) -> float:
    return sum(bool(_SENTENCE.search(a)) for a in answers) / len(answers) if answers else 0.0


def pin(address: str, version: str) -> None:
    """Activates and pins ``version`` on the inference service (AdapterService.Activate), so that no newer version
    replaces it and it stays loaded while it is evaluated."""
    from vllm_train.proto.v1 import adapter_pb2, adapter_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        adapter_pb2_grpc.AdapterServiceStub(channel).Activate(adapter_pb2.ActivateRequest(version_id=version),
                                                              timeout=120)


def sample_answers(address: str, version: str, prompts: tuple[str, ...], samples: int, *, max_tokens: int,
                   temperature: float, seed: int = 0, concurrency: int = 4) -> tuple[list[str], list[str]]:
    """(questions, answers): ``samples`` answers to each prompt from ``version`` (``"base"`` for the base model)
    through the public API, one request of n=samples per prompt, prompt i with seed ``seed + i``. Raises if any
    reply was served by another version."""
    from concurrent.futures import ThreadPoolExecutor

    with grpc.insecure_channel(address) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)

        def ask(indexed):
            i, question = indexed
            reply = stub.Generate(inference_pb2.GenerateRequest(
                prompt=common_pb2.Prompt(messages=[common_pb2.ChatMessage(role="user", content=question)]),
                sampling=common_pb2.SamplingParams(n=samples, temperature=temperature, max_tokens=max_tokens,
                                                   seed=seed + i),
                user_id="heldout-eval", adapter_version=version), timeout=600)
            if (reply.adapter_version or "base") != version:
                raise RuntimeError(f"asked for {version} but was served by {reply.adapter_version or 'base'}")
            return [(question, r.text) for r in reply.responses]

        with ThreadPoolExecutor(concurrency) as pool:
            rows = [row for rows in pool.map(ask, enumerate(prompts)) for row in rows]
    return [q for q, _ in rows], [a for _, a in rows]


def answer_logprobs(model_path: str, adapter_dir: Path | None, questions: list[str], answers: list[str],
                    device: str) -> tuple[list[float], list[float], list[int]]:
    """(log p_base(a|q), log p_adapter(a|q), tokens of a) for each answer, summed over its tokens; the prompt is
    rendered with the model's chat template as the engines render it. ``adapter_dir`` None gives base twice."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype).to(device).eval()
    if adapter_dir is not None:
        model = PeftModel.from_pretrained(model, str(adapter_dir)).eval()
    base_lp, adapter_lp, lengths = [], [], []
    with torch.inference_mode():
        for q, a in zip(questions, answers):
            prompt = tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False,
                                                   add_generation_prompt=True)
            prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
            answer_ids = tokenizer(a, add_special_tokens=False)["input_ids"] or [tokenizer.eos_token_id]
            ids = torch.tensor([prompt_ids + answer_ids], device=device)
            targets = ids[0, len(prompt_ids):]

            def logprob() -> float:
                logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1:-1].float()
                return float(torch.log_softmax(logits, -1).gather(1, targets[:, None]).sum())

            if adapter_dir is not None:
                adapter_lp.append(logprob())
                with model.disable_adapter():
                    base_lp.append(logprob())
            else:
                base_lp.append(logprob())
                adapter_lp.append(base_lp[-1])
            lengths.append(len(answer_ids))
    return base_lp, adapter_lp, lengths


@dataclass
class HeldoutReport:
    version: str
    prompts: int
    samples_per_prompt: int
    wins: int
    losses: int
    ties: int
    win_rate: float
    p_value: float
    base_mean_score: float
    version_mean_score: float
    kl_per_token: float
    base_nll_per_token_of_version_answers: float
    base_nll_per_token_of_base_answers: float
    sentence_share_version: float
    sentence_share_base: float
    drift_guard_holds: bool
    bounds: dict
    examples: list[dict]

    def as_dict(self) -> dict:
        return asdict(self)


def evaluate(address: str, preference: Preference, version: str, *, model_path: str, adapter_dir: Path,
             samples: int, max_tokens: int, temperature: float, device: str) -> HeldoutReport:
    prompts = preference.heldout_prompts
    questions, base = sample_answers(address, "base", prompts, samples, max_tokens=max_tokens,
                                     temperature=temperature)
    _, mine = sample_answers(address, version, prompts, samples, max_tokens=max_tokens, temperature=temperature)
    result = compare(preference, questions, base, mine)
    base_of_mine, mine_lp, mine_len = answer_logprobs(model_path, adapter_dir, questions, mine, device)
    base_of_base, _, base_len = answer_logprobs(model_path, None, questions, base, device)
    kl = sum((m - b) / n for m, b, n in zip(mine_lp, base_of_mine, mine_len)) / len(mine)
    nll_mine = sum(-b / n for b, n in zip(base_of_mine, mine_len)) / len(mine)
    nll_base = sum(-b / n for b, n in zip(base_of_base, base_len)) / len(base)
    share_mine, share_base = sentence_share(mine), sentence_share(base)
    holds = kl <= KL_BOUND and nll_mine <= NLL_RATIO_BOUND * nll_base and share_mine >= SENTENCE_SHARE_RATIO * share_base
    scores = lambda answers: sum(preference.score(a, q) for q, a in zip(questions, answers)) / len(answers)  # noqa: E731
    return HeldoutReport(
        version=version, prompts=len(prompts), samples_per_prompt=samples, wins=result.wins, losses=result.losses,
        ties=result.ties, win_rate=round(result.win_rate, 4), p_value=result.p_value,
        base_mean_score=round(scores(base), 4), version_mean_score=round(scores(mine), 4),
        kl_per_token=round(kl, 4), base_nll_per_token_of_version_answers=round(nll_mine, 4),
        base_nll_per_token_of_base_answers=round(nll_base, 4), sentence_share_version=round(share_mine, 4),
        sentence_share_base=round(share_base, 4), drift_guard_holds=bool(holds),
        bounds={"kl_per_token_max": KL_BOUND, "nll_ratio_max": NLL_RATIO_BOUND,
                "sentence_share_ratio_min": SENTENCE_SHARE_RATIO},
        examples=[{"question": q, "base": b, "version": v} for q, b, v in list(zip(questions, base, mine))[::samples][:6]])
