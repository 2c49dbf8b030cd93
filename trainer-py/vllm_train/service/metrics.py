"""The trainer service's Prometheus metrics, in a registry of their own (so tests can run several services)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


class TrainerMetrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.steps = Counter("vllm_train_steps", "Optimizer steps taken", registry=r)
        self.pairs_trained = Counter("vllm_train_pairs_trained", "Preference pairs trained on", registry=r)
        self.tokens = Counter("vllm_train_tokens", "Tokens through the policy forward", registry=r)
        self.batches = Counter("vllm_train_batches", "Preference batches consumed, by outcome", ["outcome"],
                               registry=r)
        self.pairs_dropped = Counter("vllm_train_pairs_dropped", "Pairs not trained on, by reason", ["reason"],
                                     registry=r)
        self.pairs_truncated = Counter("vllm_train_pairs_truncated", "Pairs cut to the length limits", registry=r)
        self.versions = Counter("vllm_train_versions", "Candidate versions, by outcome (published, refused)",
                                ["outcome"], registry=r)
        self.dlq_records = Counter("vllm_train_dlq_records", "Records sent to the dead-letter topic", registry=r)
        self.loss = Gauge("vllm_train_loss", "Loss of the last step", registry=r)
        self.reward_accuracy = Gauge("vllm_train_reward_accuracy", "Reward accuracy of the last step", registry=r)
        self.reward_margin = Gauge("vllm_train_reward_margin", "Mean reward margin of the last step", registry=r)
        self.tokens_per_second = Gauge("vllm_train_tokens_per_second", "Throughput of the last step", registry=r)
        self.consumer_lag = Gauge("vllm_train_consumer_lag", "Preference batches not yet consumed", registry=r)
        self.published_version = Gauge("vllm_train_published_version", "Number of the last published version",
                                       registry=r)
        self.publish_seconds = Histogram("vllm_train_publish_seconds", "Time to gate, write and commit a version",
                                         registry=r)

    def serve(self, port: int, host: str = "127.0.0.1") -> int | None:
        """Starts the HTTP endpoint (``/metrics``); port 0 picks a free one, -1 serves nothing. Returns the port."""
        if port < 0:
            return None
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self._server = server
        return server.server_port

    def close(self) -> None:
        server = getattr(self, "_server", None)
        if server is not None:
            server.shutdown()
            server.server_close()
