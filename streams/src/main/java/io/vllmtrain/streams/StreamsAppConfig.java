package io.vllmtrain.streams;

import io.vllmtrain.schemas.ConfigSource;
import io.vllmtrain.schemas.KafkaSettings;
import java.nio.file.Path;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.streams.StreamsConfig;

/**
 * The one typed configuration of the streams app, read from a {@code .properties} file plus {@code VT_*}
 * environment variables ({@link ConfigSource}) and validated at start. Every key, its default and its meaning is
 * in {@link #KEYS}; docs/streams.md lists the same table.
 *
 * <p>{@code kafka.*} keys are Kafka client settings (security included) and pass through to Kafka Streams, so
 * {@code kafka.producer.linger.ms} or {@code kafka.rocksdb.config.setter} work as in any Streams app; only
 * {@code application.id}, {@code processing.guarantee} and the keys below are owned by this class.
 */
public record StreamsAppConfig(
    KafkaSettings kafka,
    String applicationId,
    Path stateDir,
    int threads,
    Duration commitInterval,
    BatchPolicy batching,
    PairingRules rules,
    int metricsPort) {

  /** key → {default, meaning}. Durations take ms, s, m, h or d (e.g. {@code 30s}, {@code 7d}) or ISO-8601. */
  public static final Map<String, String[]> KEYS = keys(
      "streams.application.id", "vllm-train-streams", "Kafka Streams application id (consumer group, state and internal topic prefix).",
      "streams.state.dir", System.getProperty("user.home") + "/.vllm-train/streams-state", "Directory of the RocksDB state stores (not under /tmp: the OS may clean it).",
      "streams.threads", "1", "Stream threads.",
      "streams.commit.interval", "100ms", "How often a transaction commits: pairs become visible to read_committed consumers at each commit.",
      "streams.batch.size", "32", "N: a batch is emitted as soon as it holds this many pairs.",
      "streams.batch.max.wait", "30s", "T: ...or this long (wall clock) after its first pair, whichever comes first.",
      "streams.rating.margin", "0.25", "Two ratings of responses to one request pair when they differ by at least this.",
      "streams.cross.request.enabled", "true", "Also pair rated responses to the same normalised prompt from different requests.",
      "streams.cross.request.margin", "0.5", "Rating gap needed for a cross-request pair.",
      "streams.cross.request.candidates", "16", "Latest rated responses kept per normalised prompt for cross-request pairing.",
      "streams.pairwise.weight", "1.0", "Weight of a PAIRWISE pair (rating pairs weigh by their rating gap).",
      "streams.edit.weight", "1.0", "Weight of an EDIT pair.",
      "streams.feedback.grace", "5m", "How long feedback waits for its prompt/responses (out of order) before it goes to the DLQ.",
      "streams.retention", "7d", "How long a request's prompt, responses and feedback are kept for late feedback.",
      "streams.metrics.port", "9404", "Port of the Prometheus /metrics endpoint; 0 turns it off.");

  public StreamsAppConfig {
    PairingRules.require(applicationId != null && !applicationId.isBlank(), "streams.application.id is empty");
    PairingRules.require(threads >= 1, "streams.threads must be >= 1, got " + threads);
    PairingRules.require(commitInterval.toMillis() >= 1, "streams.commit.interval must be >= 1ms");
    PairingRules.require(metricsPort >= 0 && metricsPort <= 65535, "streams.metrics.port must be in 0..65535");
  }

  /** Builds the config from a flat key map (file + environment); any problem is one clear message. */
  public static StreamsAppConfig from(Map<String, String> config) {
    TreeSet<String> unknown = new TreeSet<>();
    config.keySet().stream().filter(k -> k.startsWith("streams.") && !KEYS.containsKey(k)).forEach(unknown::add);
    if (!unknown.isEmpty()) {
      throw new IllegalArgumentException("unknown config key(s) " + unknown + "; known streams.* keys: " + KEYS.keySet());
    }
    Reader r = new Reader(config);
    return new StreamsAppConfig(
        KafkaSettings.fromConfig(config),
        r.string("streams.application.id"),
        Path.of(r.string("streams.state.dir")),
        r.integer("streams.threads"),
        r.duration("streams.commit.interval"),
        new BatchPolicy(r.integer("streams.batch.size"), r.duration("streams.batch.max.wait")),
        new PairingRules(
            r.decimal("streams.rating.margin"),
            r.bool("streams.cross.request.enabled"),
            r.decimal("streams.cross.request.margin"),
            r.integer("streams.cross.request.candidates"),
            r.decimal("streams.pairwise.weight"),
            r.decimal("streams.edit.weight"),
            r.duration("streams.feedback.grace"),
            r.duration("streams.retention")),
        r.integer("streams.metrics.port"));
  }

  /** The producer's batch size unless {@code kafka.producer.batch.size} or {@code kafka.batch.size} is set. */
  static final int PRODUCER_BATCH_BYTES = 256 * 1024;

  /** Reads {@code file} (may be null) and the {@code VT_*} variables of {@code env}. */
  public static StreamsAppConfig load(Path file, Map<String, String> env) {
    return from(ConfigSource.load(file, env));
  }

  /** The Kafka Streams properties: client settings from {@code kafka.*}, then what this app requires. */
  public Properties streamsProperties() {
    Properties p = new Properties();
    p.putAll(kafka.clientProperties());
    p.put(StreamsConfig.APPLICATION_ID_CONFIG, applicationId);
    p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
    p.put(StreamsConfig.STATE_DIR_CONFIG, stateDir.toString());
    p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, threads);
    p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, commitInterval.toMillis());
    // Process whatever is buffered instead of waiting to line up timestamps across the task's partitions: the rules
    // already handle feedback that arrives before its response (grace period), and the wait's bookkeeping cost
    // ~7% of the stream thread's CPU (Kafka builds its log lines with String.format on every check).
    p.putIfAbsent(StreamsConfig.MAX_TASK_IDLE_MS_CONFIG, -1L);
    // Larger producer batches: at the default 16 KB every batch of pairs (~1.2 KB each) is split into several
    // producer batches, and the per-batch work on the producer's I/O thread and in the broker halved when they were
    // 256 KB (streams/bench/RESULTS.md). kafka.producer.batch.size or kafka.batch.size still set it.
    if (!p.containsKey(ProducerConfig.BATCH_SIZE_CONFIG)) {
      p.putIfAbsent(StreamsConfig.producerPrefix(ProducerConfig.BATCH_SIZE_CONFIG), PRODUCER_BATCH_BYTES);
    }
    // Incremental compaction at low CPU priority (RocksDBSettings); kafka.rocksdb.config.setter replaces it.
    p.putIfAbsent(StreamsConfig.ROCKSDB_CONFIG_SETTER_CLASS_CONFIG, RocksDBSettings.class);
    return p;
  }

  /** Parses {@code 250ms}, {@code 30s}, {@code 5m}, {@code 2h}, {@code 7d}, a bare number of ms, or ISO-8601. */
  static Duration parseDuration(String key, String text) {
    Matcher m = Pattern.compile("(\\d+)\\s*(ms|s|m|h|d)?").matcher(text.trim().toLowerCase(Locale.ROOT));
    if (m.matches()) {
      long n = Long.parseLong(m.group(1));
      String unit = m.group(2) == null ? "ms" : m.group(2);
      return switch (unit) {
        case "ms" -> Duration.ofMillis(n);
        case "s" -> Duration.ofSeconds(n);
        case "m" -> Duration.ofMinutes(n);
        case "h" -> Duration.ofHours(n);
        default -> Duration.ofDays(n);
      };
    }
    try {
      return Duration.parse(text.trim());
    } catch (RuntimeException e) {
      throw new IllegalArgumentException(key + " = '" + text + "' is not a duration (e.g. 250ms, 30s, 5m, 2h, 7d)");
    }
  }

  private static Map<String, String[]> keys(String... triples) {
    Map<String, String[]> m = new LinkedHashMap<>();
    for (int i = 0; i < triples.length; i += 3) {
      m.put(triples[i], new String[] {triples[i + 1], triples[i + 2]});
    }
    return java.util.Collections.unmodifiableMap(m);
  }

  /** Typed reads of one key with its default, each failure naming the key and its environment variable. */
  private record Reader(Map<String, String> config) {
    String string(String key) {
      String v = config.get(key);
      return v == null || v.isBlank() ? KEYS.get(key)[0] : v.trim();
    }

    int integer(String key) {
      String v = string(key);
      try {
        return Integer.parseInt(v);
      } catch (NumberFormatException e) {
        throw bad(key, v, "an integer");
      }
    }

    double decimal(String key) {
      String v = string(key);
      try {
        return Double.parseDouble(v);
      } catch (NumberFormatException e) {
        throw bad(key, v, "a number");
      }
    }

    boolean bool(String key) {
      String v = string(key).toLowerCase(Locale.ROOT);
      if (!v.equals("true") && !v.equals("false")) {
        throw bad(key, v, "true or false");
      }
      return v.equals("true");
    }

    Duration duration(String key) {
      return parseDuration(key + " (" + ConfigSource.envName(key) + ")", string(key));
    }

    private static IllegalArgumentException bad(String key, String value, String expected) {
      return new IllegalArgumentException(key + " (" + ConfigSource.envName(key) + ") = '" + value
          + "' is not " + expected);
    }
  }
}
