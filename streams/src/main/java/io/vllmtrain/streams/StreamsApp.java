package io.vllmtrain.streams;

import io.prometheus.metrics.core.metrics.GaugeWithCallback;
import io.prometheus.metrics.exporter.httpserver.HTTPServer;
import io.prometheus.metrics.model.registry.PrometheusRegistry;
import io.vllmtrain.schemas.Topics;
import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicBoolean;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.common.Metric;
import org.apache.kafka.common.MetricName;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The streams service: {@code main} reads the config and runs {@link PreferenceTopology} with exactly-once
 * processing until SIGTERM/SIGINT.
 *
 * <pre>java -cp 'streams/target/streams.jar:streams/target/lib/*' io.vllmtrain.streams.StreamsApp --config FILE</pre>
 *
 * <p>The config file is optional (environment variables {@code VT_*} alone work); {@code --describe} prints the
 * topology and exits.
 */
public final class StreamsApp implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(StreamsApp.class);

  private final StreamsAppConfig config;
  private final PairingMetrics metrics;
  private final Topology topology;
  private final KafkaStreams streams;
  private final Backoff transientBackoff = new Backoff(Duration.ofSeconds(1), Duration.ofSeconds(30));
  private HTTPServer metricsServer;

  public StreamsApp(StreamsAppConfig config, EventSerdes serdes) {
    this.config = config;
    this.metrics = new PairingMetrics(new PrometheusRegistry());
    this.topology = PreferenceTopology.build(config.rules(), config.batching(), config.limits(), serdes, metrics);
    this.streams = new KafkaStreams(topology, config.streamsProperties());
  }

  public static void main(String[] args) {
    Path file = null;
    boolean describe = false;
    for (int i = 0; i < args.length; i++) {
      switch (args[i]) {
        case "--config" -> {
          if (i + 1 >= args.length) {
            usage("--config needs a file");
          }
          file = Path.of(args[++i]);
        }
        case "--describe" -> describe = true;
        case "-h", "--help" -> usage(null);
        default -> usage("unknown argument " + args[i]);
      }
    }
    StreamsAppConfig config;
    try {
      config = StreamsAppConfig.load(file, System.getenv());
    } catch (IllegalArgumentException e) {
      System.err.println("streams: config error: " + e.getMessage());
      System.exit(2);
      return;
    }
    StreamsApp app = new StreamsApp(config, EventSerdes.registry(config.kafka()));
    if (describe) {
      System.out.println(app.topology.describe());
      app.close();
      return;
    }
    CountDownLatch stopped = new CountDownLatch(1);
    AtomicBoolean failed = new AtomicBoolean();
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      app.close();
      stopped.countDown();
    }, "streams-shutdown"));
    // Kafka Streams accepts a state listener only before start(). The listener runs on a stream thread, which must
    // not call System.exit itself (the shutdown hook would wait for that very thread): it wakes main instead.
    app.streams.setStateListener((now, before) -> {
      if (now == KafkaStreams.State.ERROR) {
        failed.set(true);
        stopped.countDown();
      }
    });
    try {
      app.start();
    } catch (RuntimeException e) {
      System.err.println("streams: cannot start: " + e.getMessage());
      System.exit(1);
    }
    try {
      stopped.await();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    if (failed.get()) {
      LOG.error("Kafka Streams stopped with an error; exiting so that a supervisor restarts the app");
      app.close();
      System.exit(1);
    }
  }

  /** Checks that the topics exist, starts the metrics endpoint and the stream threads; returns at once. */
  public void start() {
    requireTopics();
    registerLagGauge();
    if (config.metricsPort() > 0) {
      try {
        metricsServer = HTTPServer.builder().port(config.metricsPort()).registry(metrics.registry()).buildAndStart();
      } catch (IOException e) {
        throw new IllegalStateException("cannot open the metrics port " + config.metricsPort()
            + " (streams.metrics.port; 0 turns it off): " + e.getMessage(), e);
      }
    }
    // The failed thread's transaction aborts, so nothing is half-written either way. A registry without a definite
    // answer is retried (a new thread reads the records again, after a pause that doubles up to 30 s while the
    // failures go on); anything else that escapes the processors (they route bad records to the DLQ) is a bug or a
    // fatal Kafka error: stop rather than skip records.
    streams.setUncaughtExceptionHandler(e -> {
      if (TransientFailure.isCause(e)) {
        Duration pause = transientBackoff.next(System.nanoTime());
        LOG.warn("stream thread failed on a registry or network error, replacing it in {} ms: {}", pause.toMillis(),
            e.getMessage());
        try {
          Thread.sleep(pause.toMillis());
        } catch (InterruptedException interrupted) {
          Thread.currentThread().interrupt();
        }
        return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.REPLACE_THREAD;
      }
      LOG.error("stream thread failed", e);
      return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
    });
    LOG.info("starting {} (exactly_once_v2, state in {}) against {}", config.applicationId(), config.stateDir(),
        config.kafka().bootstrapServers());
    streams.start();
  }

  /** Blocks until the app is RUNNING (all tasks assigned and restored) or fails. */
  public void awaitRunning(Duration timeout) throws TimeoutException {
    long deadline = System.nanoTime() + timeout.toNanos();
    while (streams.state() != KafkaStreams.State.RUNNING) {
      if (streams.state() == KafkaStreams.State.ERROR || streams.state() == KafkaStreams.State.NOT_RUNNING
          || System.nanoTime() > deadline) {
        throw new TimeoutException("streams app is " + streams.state() + ", not RUNNING, after " + timeout);
      }
      try {
        TimeUnit.MILLISECONDS.sleep(50);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new TimeoutException("interrupted");
      }
    }
  }

  public KafkaStreams.State state() {
    return streams.state();
  }

  public PairingMetrics metrics() {
    return metrics;
  }

  /** Kafka Streams' own metrics (thread, task, store, client), e.g. for a benchmark's report. */
  public Map<MetricName, ? extends Metric> kafkaMetrics() {
    return streams.metrics();
  }

  @Override
  public synchronized void close() {
    streams.close(Duration.ofSeconds(30));
    if (metricsServer != null) {
      metricsServer.close();
      metricsServer = null;
    }
  }

  private void requireTopics() {
    List<String> needed = List.of(Topics.PROMPTS.name(), Topics.RESPONSES.name(), Topics.FEEDBACK.name(),
        Topics.PREFERENCE_PAIRS.name(), Topics.PREFERENCE_BATCHES.name(), Topics.DLQ.name());
    try (Admin admin = Admin.create(config.kafka().clientProperties())) {
      Set<String> existing = admin.listTopics().names().get(30, TimeUnit.SECONDS);
      Set<String> missing = new TreeSet<>(needed);
      missing.removeAll(existing);
      if (!missing.isEmpty()) {
        throw new IllegalStateException("topics " + missing + " do not exist on " + config.kafka().bootstrapServers()
            + "; create the topics of schemas/src/main/resources/vllm_train/topics.json first (./pipeline up does)");
      }
    } catch (ExecutionException | TimeoutException e) {
      throw new IllegalStateException("cannot reach Kafka at " + config.kafka().bootstrapServers() + ": "
          + e.getMessage(), e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException("interrupted while checking topics", e);
    }
  }

  /** Consumer lag per input partition, read from the Kafka consumer's own {@code records-lag} metric. */
  private void registerLagGauge() {
    GaugeWithCallback.builder().name("vt_streams_consumer_lag").help("Records not yet read, per input partition")
        .labelNames("topic", "partition")
        .callback(cb -> {
          for (var entry : streams.metrics().entrySet()) {
            MetricName name = entry.getKey();
            if (name.name().equals("records-lag") && name.group().equals("consumer-fetch-manager-metrics")
                && name.tags().containsKey("topic") && name.tags().containsKey("partition")) {
              Metric m = entry.getValue();
              if (m.metricValue() instanceof Double lag && !lag.isNaN()) {
                cb.call(lag, name.tags().get("topic"), name.tags().get("partition"));
              }
            }
          }
        })
        .register(metrics.registry());
  }

  private static void usage(String problem) {
    if (problem != null) {
      System.err.println("streams: " + problem);
    }
    System.err.println("usage: StreamsApp [--config FILE] [--describe]\n"
        + "  Config keys (file or VT_* environment): kafka.bootstrap.servers, registry.url, streams.* (docs/streams.md)");
    System.exit(problem == null ? 0 : 2);
  }
}
