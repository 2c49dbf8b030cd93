package io.vllmtrain.streams;

import io.vllmtrain.schemas.ConfigSource;
import io.vllmtrain.schemas.KafkaSettings;
import io.vllmtrain.schemas.Topics;
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
import org.apache.kafka.common.config.TopicConfig;
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
    RecordLimits limits,
    int metricsPort) {

  static final String BATCH_MAX_BYTES = "streams.batch.max.bytes";
  static final String STATE_MAX_BYTES = "streams.state.max.bytes";
  static final String FEEDBACK_PER_REQUEST = "streams.feedback.max.per.request";
  static final String ORPHAN_RETENTION = "streams.feedback.orphan.retention";

  /** key → {default, meaning}. Durations take ms, s, m, h or d (e.g. {@code 30s}, {@code 7d}) or ISO-8601. */
  public static final Map<String, String[]> KEYS = keys(
      "streams.application.id", "vllm-train-streams", "Kafka Streams application id (consumer group, state and internal topic prefix).",
      "streams.state.dir", System.getProperty("user.home") + "/.vllm-train/streams-state", "Directory of the RocksDB state stores (not under /tmp: the OS may clean it).",
      "streams.threads", "1", "Stream threads.",
      "streams.commit.interval", "100ms", "How often a transaction commits: pairs become visible to read_committed consumers at each commit.",
      "streams.batch.size", "32", "N: a batch is emitted as soon as it holds this many pairs.",
      "streams.batch.max.wait", "30s", "T: ...or this long (wall clock) after its first pair, whichever comes first.",
      BATCH_MAX_BYTES, Integer.toString(BatchPolicy.DEFAULT_MAX_BYTES), "Largest batch in bytes: a batch closes early rather than grow past it; a pair larger than a batch on its own goes to the DLQ (PAIR_TOO_LARGE).",
      "streams.rating.margin", "0.25", "Two ratings of responses to one request pair when they differ by at least this.",
      "streams.cross.request.enabled", "true", "Also pair rated responses to the same normalised prompt from different requests.",
      "streams.cross.request.margin", "0.5", "Rating gap needed for a cross-request pair.",
      "streams.cross.request.candidates", "16", "Latest rated responses kept per normalised prompt for cross-request pairing.",
      "streams.pairwise.weight", "1.0", "Weight of a PAIRWISE pair (rating pairs weigh by their rating gap).",
      "streams.edit.weight", "1.0", "Weight of an EDIT pair.",
      "streams.feedback.grace", "5m", "How long feedback waits for its prompt/responses (out of order) before it goes to the DLQ.",
      "streams.retention", "7d", "How long a request's prompt, responses and feedback are kept for late feedback.",
      FEEDBACK_PER_REQUEST, "100", "Feedback events one request takes; more go to the DLQ (FEEDBACK_LIMIT).",
      ORPHAN_RETENTION, "1h", "How long feedback on a request never seen (no prompt, no response) is kept; what still waits then goes to the DLQ.",
      STATE_MAX_BYTES, Integer.toString(RecordLimits.DEFAULT_STATE_MAX_BYTES), "Largest state value (a request's prompt and responses, or its feedback) in bytes; a record that would outgrow it goes to the DLQ (STATE_TOO_LARGE).",
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
    KafkaSettings kafka = KafkaSettings.fromConfig(config);
    int recordMax = producerMaxRequestBytes(kafka);
    int internalMax = internalTopicMaxBytes(kafka);
    int batchMax = r.integer(BATCH_MAX_BYTES);
    int batchLimit = Math.min(Math.min(recordMax, internalMax),
        Math.min(Topics.PREFERENCE_BATCHES.maxMessageBytes(), Topics.PREFERENCE_PAIRS.maxMessageBytes()))
        - RecordLimits.RECORD_OVERHEAD;
    PairingRules.require(batchMax <= batchLimit, BATCH_MAX_BYTES + " (" + ConfigSource.envName(BATCH_MAX_BYTES)
        + ") = " + batchMax + " is more than Kafka takes: at most " + batchLimit + " (the producer's max.request.size "
        + recordMax + ", the internal topics' max.message.bytes " + internalMax + " and the limits of "
        + Topics.PREFERENCE_BATCHES.name() + " and " + Topics.PREFERENCE_PAIRS.name() + " in the topic table)");
    int stateMax = r.integer(STATE_MAX_BYTES);
    // A changelog record is a request id and a value; the value holds the request id too.
    int stateLimit = (Math.min(recordMax, internalMax) - RecordLimits.RECORD_OVERHEAD) / 2;
    PairingRules.require(stateMax <= stateLimit, STATE_MAX_BYTES + " (" + ConfigSource.envName(STATE_MAX_BYTES)
        + ") = " + stateMax + " is more than a changelog record can hold: at most " + stateLimit
        + " (half the producer's max.request.size " + recordMax + " or the internal topics' max.message.bytes "
        + internalMax + ")");
    RecordLimits limits = new RecordLimits(stateMax,
        Math.min(recordMax, Topics.DLQ.maxMessageBytes()) - RecordLimits.RECORD_OVERHEAD);
    return new StreamsAppConfig(
        kafka,
        r.string("streams.application.id"),
        Path.of(r.string("streams.state.dir")),
        r.integer("streams.threads"),
        r.duration("streams.commit.interval"),
        new BatchPolicy(r.integer("streams.batch.size"), r.duration("streams.batch.max.wait"), batchMax),
        new PairingRules(
            r.decimal("streams.rating.margin"),
            r.bool("streams.cross.request.enabled"),
            r.decimal("streams.cross.request.margin"),
            r.integer("streams.cross.request.candidates"),
            r.decimal("streams.pairwise.weight"),
            r.decimal("streams.edit.weight"),
            r.duration("streams.feedback.grace"),
            r.duration("streams.retention"),
            r.integer(FEEDBACK_PER_REQUEST),
            r.duration(ORPHAN_RETENTION)),
        limits,
        r.integer("streams.metrics.port"));
  }

  /** The producer's batch size unless {@code kafka.producer.batch.size} or {@code kafka.batch.size} is set. */
  static final int PRODUCER_BATCH_BYTES = 256 * 1024;

  /**
   * The producer's {@code max.request.size} unless {@code kafka.producer.max.request.size} or
   * {@code kafka.max.request.size} is set: the largest record limit of the topics the app writes (topic table), where
   * Kafka's default (1 MB) would refuse batches and dead letters those topics take.
   */
  static final int PRODUCER_MAX_REQUEST_BYTES = Math.max(Topics.PREFERENCE_BATCHES.maxMessageBytes(),
      Math.max(Topics.PREFERENCE_PAIRS.maxMessageBytes(), Topics.DLQ.maxMessageBytes()));

  private static final String INTERNAL_TOPIC_MAX_BYTES = StreamsConfig.topicPrefix(TopicConfig.MAX_MESSAGE_BYTES_CONFIG);

  private static int producerMaxRequestBytes(KafkaSettings kafka) {
    Map<String, String> c = kafka.client();
    String v = c.getOrDefault(StreamsConfig.producerPrefix(ProducerConfig.MAX_REQUEST_SIZE_CONFIG),
        c.get(ProducerConfig.MAX_REQUEST_SIZE_CONFIG));
    return v == null ? PRODUCER_MAX_REQUEST_BYTES : kafkaInt("kafka." + ProducerConfig.MAX_REQUEST_SIZE_CONFIG, v);
  }

  /** {@code max.message.bytes} of the changelog and repartition topics that Kafka Streams creates. */
  private static int internalTopicMaxBytes(KafkaSettings kafka) {
    String v = kafka.client().get(INTERNAL_TOPIC_MAX_BYTES);
    return v == null ? producerMaxRequestBytes(kafka) : kafkaInt("kafka." + INTERNAL_TOPIC_MAX_BYTES, v);
  }

  private static int kafkaInt(String key, String v) {
    try {
      return Integer.parseInt(v.trim());
    } catch (NumberFormatException e) {
      throw new IllegalArgumentException(key + " (" + ConfigSource.envName(key) + ") = '" + v + "' is not an integer");
    }
  }

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
    // Records as large as the topic table allows (batches, dead letters, changelog values under the limits above);
    // the app's own limits keep every record below these, so nothing it sends is refused as too large.
    int recordMax = producerMaxRequestBytes(kafka);
    if (!p.containsKey(ProducerConfig.MAX_REQUEST_SIZE_CONFIG)) {
      p.putIfAbsent(StreamsConfig.producerPrefix(ProducerConfig.MAX_REQUEST_SIZE_CONFIG), recordMax);
    }
    p.putIfAbsent(INTERNAL_TOPIC_MAX_BYTES, Integer.toString(recordMax));
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
