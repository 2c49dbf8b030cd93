"""The feedback simulator: an app that uses the public gRPC API as a real one would.

Each worker loops: ``Generate`` (n=2, temperature 0.7 as a typical app sets it, one of the preference's training
prompts) on the inference service, then ``SubmitFeedback`` with the PAIRWISE choice of the hidden
:class:`~vllm_train.demo.preference.Preference` (no feedback when the two score the same). Every response's score is
recorded with the adapter version that served it, which is how the demo watches learning live; the held-out
evaluation at the end (:mod:`vllm_train.demo.heldout`) is what measures it.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

import grpc

from vllm_train.demo.preference import Preference
from vllm_train.proto.v1 import common_pb2, feedback_pb2, feedback_pb2_grpc, inference_pb2, inference_pb2_grpc

BASE = "base"


@dataclass
class SimulatorStats:
    """What the simulator saw; shared by its workers and read by the view (guarded by ``lock``)."""

    started: float = field(default_factory=time.monotonic)
    started_wall: float = field(default_factory=time.time)      # the same instant on the wall clock
    generate_calls: int = 0
    failed_generate_calls: int = 0
    feedback_events: int = 0
    failed_feedback_calls: int = 0
    ties: int = 0
    feedback_ids: set[str] = field(default_factory=set)
    request_ids: set[str] = field(default_factory=set)
    # (seconds since start, version id or "base", score) for every response.
    scores: list[tuple[float, str, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def by_version(self) -> dict[str, list[float]]:
        out: dict[str, list[float]] = defaultdict(list)
        with self.lock:
            for _, version, s in self.scores:
                out[version].append(s)
        return out


class FeedbackSimulator:
    def __init__(self, address: str, preference: Preference, workers: int = 3, max_tokens: int = 24,
                 temperature: float = 0.7, seed: int = 0):
        self.address = address
        self.preference = preference
        self.temperature = temperature
        self.workers = workers
        self.max_tokens = max_tokens
        self.seed = seed
        self.stats = SimulatorStats()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for i in range(self.workers):
            t = threading.Thread(target=self._run, args=(i,), name=f"simulator-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)

    def _run(self, worker: int) -> None:
        rng = random.Random(self.seed * 1000 + worker)
        with grpc.insecure_channel(self.address) as channel:
            generate = inference_pb2_grpc.InferenceServiceStub(channel)
            feedback = feedback_pb2_grpc.FeedbackServiceStub(channel)
            while not self._stop.is_set():
                self._one(generate, feedback, rng, worker)

    def _one(self, generate, feedback, rng: random.Random, worker: int) -> None:
        s = self.stats
        question = rng.choice(self.preference.prompts)
        request = inference_pb2.GenerateRequest(
            prompt=common_pb2.Prompt(messages=[common_pb2.ChatMessage(role="user", content=question)]),
            sampling=common_pb2.SamplingParams(n=2, temperature=self.temperature, max_tokens=self.max_tokens),
            user_id=f"sim-user-{worker}")
        try:
            reply = generate.Generate(request, timeout=60)
        except grpc.RpcError as e:
            with s.lock:
                s.failed_generate_calls += 1
                s.errors.append(f"Generate: {e.code().name}: {e.details()}")
            time.sleep(0.5)
            return
        texts = [r.text for r in reply.responses]
        version = reply.adapter_version or BASE
        now = time.monotonic() - s.started
        with s.lock:
            s.generate_calls += 1
            s.request_ids.add(reply.request_id)
            s.scores.extend((now, version, self.preference.score(t, question)) for t in texts)
        choice = self.preference.choose(question, texts) if len(texts) >= 2 else None
        if choice is None:
            with s.lock:
                s.ties += 1
            return
        feedback_id = str(uuid.uuid4())
        try:
            feedback.SubmitFeedback(feedback_pb2.SubmitFeedbackRequest(
                request_id=reply.request_id, user_id=request.user_id, kind=feedback_pb2.PAIRWISE,
                chosen_response_id=reply.responses[choice.chosen].response_id,
                rejected_response_id=reply.responses[choice.rejected].response_id, feedback_id=feedback_id), timeout=30)
        except grpc.RpcError as e:
            with s.lock:
                s.failed_feedback_calls += 1
                s.errors.append(f"SubmitFeedback: {e.code().name}: {e.details()}")
            return
        with s.lock:
            s.feedback_events += 1
            s.feedback_ids.add(feedback_id)
