package io.vllmtrain.inference;

import io.prometheus.metrics.core.metrics.Counter;
import io.prometheus.metrics.core.metrics.CounterWithCallback;
import io.prometheus.metrics.core.metrics.GaugeWithCallback;
import io.prometheus.metrics.core.metrics.Histogram;
import io.prometheus.metrics.model.registry.PrometheusRegistry;
import io.prometheus.metrics.model.snapshots.Unit;

/**
 * The service's Prometheus metrics, in a registry of its own (so that tests can run several services in one JVM):
 * requests and their latency per method and status, engine replicas, the active version, rollouts, the event
 * buffer. Served at {@code /metrics} on {@code metrics.port}.
 */
public final class InferenceMetrics {
  private final PrometheusRegistry registry = new PrometheusRegistry();

  final Counter requests = Counter.builder()
      .name("vt_inference_requests_total")
      .help("RPCs answered, by method and gRPC status code")
      .labelNames("method", "code")
      .register(registry);

  final Histogram requestDuration = Histogram.builder()
      .name("vt_inference_request_duration_seconds")
      .help("Time from an RPC's arrival to its last message, by method")
      .unit(Unit.SECONDS)
      .labelNames("method")
      .classicUpperBounds(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
      .register(registry);

  final Histogram rolloutDuration = Histogram.builder()
      .name("vt_inference_rollout_duration_seconds")
      .help("Time to load an adapter version into every replica in service and switch traffic to it")
      .unit(Unit.SECONDS)
      .classicUpperBounds(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120)
      .register(registry);

  final Counter rollouts = Counter.builder()
      .name("vt_inference_rollouts_total")
      .help("Adapter version loads by outcome: activated, loaded (kept READY, not switched), failed, deferred (no "
          + "replica could take it for now; retried)")
      .labelNames("outcome")
      .register(registry);

  final Counter versionRecordsSkipped = Counter.builder()
      .name("vt_inference_adapter_version_records_skipped_total")
      .help("Records on llm.adapter-versions that could not be read (bad bytes or tombstones)")
      .register(registry);

  public PrometheusRegistry registry() {
    return registry;
  }

  void registerRollout(AdapterRollout rollout) {
    GaugeWithCallback.builder()
        .name("vt_inference_active_version")
        .help("1 for the adapter version serving traffic (label version; empty for the base model)")
        .labelNames("version")
        .callback(cb -> cb.call(1, rollout.active()))
        .register(registry);
    GaugeWithCallback.builder()
        .name("vt_inference_active_version_number")
        .help("Number of the active adapter version within its run; 0 for the base model")
        .callback(cb -> cb.call(rollout.view(rollout.active()).map(v -> (double) v.spec().getVersion()).orElse(0.0)))
        .register(registry);
  }

  void registerEngines(EngineRouter router) {
    GaugeWithCallback.builder()
        .name("vt_inference_engine_outstanding_requests")
        .help("Requests outstanding on each engine replica")
        .labelNames("replica")
        .callback(cb -> router.replicas().forEach(r -> cb.call(r.outstanding(), r.name())))
        .register(registry);
    GaugeWithCallback.builder()
        .name("vt_inference_engine_in_service")
        .help("1 when the engine replica takes traffic, 0 when it is down or joining")
        .labelNames("replica")
        .callback(cb -> router.replicas().forEach(
            r -> cb.call(r.state() == EngineReplica.State.SERVING ? 1 : 0, r.name())))
        .register(registry);
  }

  void registerEvents(EventRecorder events) {
    GaugeWithCallback.builder()
        .name("vt_inference_events_buffered")
        .help("Events accepted but not yet acknowledged by Kafka")
        .callback(cb -> cb.call(events.stats().buffered()))
        .register(registry);
    GaugeWithCallback.builder()
        .name("vt_inference_events_buffer_capacity")
        .help("Most events the buffer holds; beyond it events are dropped (counted and logged)")
        .callback(cb -> cb.call(events.capacity()))
        .register(registry);
    GaugeWithCallback.builder()
        .name("vt_inference_events_buffered_bytes")
        .help("Estimated heap bytes of the events accepted but not yet acknowledged by Kafka")
        .callback(cb -> cb.call(events.bufferedBytes()))
        .register(registry);
    GaugeWithCallback.builder()
        .name("vt_inference_events_buffer_bytes_capacity")
        .help("Most estimated bytes the buffer holds (events.buffer.bytes); beyond it events are dropped")
        .callback(cb -> cb.call(events.maxBytes()))
        .register(registry);
    CounterWithCallback.builder()
        .name("vt_inference_events_total")
        .help("Events by outcome: sent (acknowledged by Kafka), dropped (buffer full or shut down), failed "
            + "(Kafka or the registry refused them for good)")
        .labelNames("outcome")
        .callback(cb -> {
          EventRecorder.Stats s = events.stats();
          cb.call(s.sent(), "sent");
          cb.call(s.dropped(), "dropped");
          cb.call(s.failed(), "failed");
        })
        .register(registry);
  }
}
