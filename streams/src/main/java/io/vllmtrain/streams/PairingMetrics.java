package io.vllmtrain.streams;

import io.prometheus.metrics.core.metrics.Counter;
import io.prometheus.metrics.model.registry.PrometheusRegistry;

/**
 * The app's own counters (Prometheus): records in and out per topic, feedback by verdict, pairs by rule, batches,
 * dead letters by reason. Consumer lag is added by {@link StreamsApp} from the Kafka client metrics.
 */
public final class PairingMetrics {
  private final PrometheusRegistry registry;
  private final Counter recordsIn;
  private final Counter recordsOut;
  private final Counter feedback;
  private final Counter pairs;
  private final Counter batches;
  private final Counter deadLetters;

  public PairingMetrics(PrometheusRegistry registry) {
    this.registry = registry;
    recordsIn = Counter.builder().name("vt_streams_records_in").help("Input records read, by topic")
        .labelNames("topic").register(registry);
    recordsOut = Counter.builder().name("vt_streams_records_out").help("Records written, by topic")
        .labelNames("topic").register(registry);
    feedback = Counter.builder().name("vt_streams_feedback").help("Feedback events by what became of them")
        .labelNames("verdict").register(registry);
    pairs = Counter.builder().name("vt_streams_pairs").help("Preference pairs formed, by rule")
        .labelNames("source").register(registry);
    batches = Counter.builder().name("vt_streams_batches").help("Preference batches emitted").register(registry);
    deadLetters = Counter.builder().name("vt_streams_dlq").help("Records sent to the DLQ, by reason")
        .labelNames("reason").register(registry);
  }

  public PrometheusRegistry registry() {
    return registry;
  }

  void recordIn(String topic) {
    recordsIn.labelValues(topic).inc();
  }

  void recordOut(String topic) {
    recordsOut.labelValues(topic).inc();
  }

  void feedback(String verdict) {
    feedback.labelValues(verdict).inc();
  }

  void pair(String source) {
    pairs.labelValues(source).inc();
  }

  void batch() {
    batches.inc();
  }

  void deadLetter(DlqReason reason) {
    deadLetters.labelValues(reason.name()).inc();
  }

  public double recordsIn(String topic) {
    return recordsIn.labelValues(topic).get();
  }

  public double deadLetters(DlqReason reason) {
    return deadLetters.labelValues(reason.name()).get();
  }

  public double pairs(String source) {
    return pairs.labelValues(source).get();
  }

  public double batches() {
    return batches.get();
  }

  public double feedback(PreferencePairer.Verdict verdict) {
    return feedback.labelValues(verdict.name()).get();
  }
}
