package io.vllmtrain.inference;

import io.vllmtrain.schemas.ConfigSource;
import io.vllmtrain.schemas.KafkaSettings;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * Every setting of the inference service, read once at start from a {@code .properties} file plus {@code VT_*}
 * environment variables ({@link ConfigSource}) and validated with a message that names the key. The table of keys,
 * defaults and meanings is in {@code docs/inference.md}; the defaults below are the same.
 *
 * @param host address the public gRPC port binds to ({@code server.host}, default {@code 0.0.0.0})
 * @param port public gRPC port ({@code server.port}, default 50051; 0 picks a free port)
 * @param tls TLS on the public port, present when {@code server.tls.cert} and {@code server.tls.key} are set
 * @param shutdownGrace how long a shutdown waits for requests in flight ({@code server.shutdown.grace.ms}, 30000)
 * @param eventLoopThreads network threads shared by the public port and the engine connections
 *     ({@code server.event.loop.threads}, default: the number of CPUs)
 * @param metricsEnabled whether Prometheus metrics are served over HTTP ({@code metrics.enabled}, true)
 * @param metricsHost address of the metrics HTTP server ({@code metrics.host}, {@code 0.0.0.0})
 * @param metricsPort port of the metrics HTTP server, path {@code /metrics} ({@code metrics.port}, 9464)
 * @param baseModel the base model the engines serve; adapter versions of any other model are refused
 *     ({@code base.model}, required)
 * @param engines engine replicas as {@code host:port} ({@code engine.addresses}, comma-separated, required)
 * @param engineRequestTimeout deadline of one generation on an engine ({@code engine.request.timeout.ms}, 120000)
 * @param engineHealthInterval how often each replica's health is polled ({@code engine.health.interval.ms}, 1000)
 * @param maxN most responses one request may ask for ({@code generate.max.n}, 8)
 * @param defaultMaxTokens max_tokens when a request leaves it 0 ({@code generate.default.max.tokens}, 128)
 * @param maxTokensLimit largest max_tokens a request may ask for ({@code generate.max.tokens.limit}, 4096)
 * @param limits size limits of prompts, stop strings, ids and edited text ({@code limits.*}; see
 *     {@link RequestLimits})
 * @param idsSigningKey the key that signs request ids, so that feedback is checked against its request's user_id
 *     ({@code ids.signing.key}, base64 of at least 32 bytes; unset: a random key per process)
 * @param keepVersions adapter versions kept loaded, the active one included, for instant rollback
 *     ({@code rollout.keep}, 3, at least 2 so that requests still running on the previous version finish on it)
 * @param loadTimeout deadline of one LoadAdapter call ({@code rollout.load.timeout.ms}, 60000)
 * @param loadAttempts attempts per replica before a load counts as failed ({@code rollout.load.attempts}, 3)
 * @param startPaused start with automatic rollout paused ({@code rollout.paused}, false)
 * @param startPinned a version id to activate and pin at start instead of the newest ({@code rollout.pin})
 * @param trustedRuns run ids whose versions may be loaded, {@code prefix*} for a prefix ({@code rollout.trusted.runs},
 *     comma-separated; empty: every run)
 * @param rolloutSigningKey with it, only version records signed with it are loaded ({@code rollout.signing.key},
 *     base64 of at least 32 bytes; see {@link VersionSignature})
 * @param eventBufferCapacity events held while Kafka is slow or unreachable ({@code events.buffer.capacity}, 10000)
 * @param eventBufferBytes estimated heap bytes of the events held ({@code events.buffer.bytes}, 67108864 = 64 MiB)
 * @param feedbackAckTimeout how long SubmitFeedback waits for Kafka to acknowledge its event before it answers
 *     UNAVAILABLE ({@code feedback.ack.timeout.ms}, 10000)
 * @param eventFlushTimeout how long a shutdown waits for buffered events to reach Kafka
 *     ({@code events.flush.timeout.ms}, 10000)
 * @param kafka brokers and schema registry ({@code kafka.*}, {@code registry.*}; see {@link KafkaSettings})
 */
public record InferenceConfig(
    String host,
    int port,
    Optional<Tls> tls,
    Duration shutdownGrace,
    int eventLoopThreads,
    boolean metricsEnabled,
    String metricsHost,
    int metricsPort,
    String baseModel,
    List<String> engines,
    Duration engineRequestTimeout,
    Duration engineHealthInterval,
    int maxN,
    int defaultMaxTokens,
    int maxTokensLimit,
    RequestLimits limits,
    Optional<Secret> idsSigningKey,
    int keepVersions,
    Duration loadTimeout,
    int loadAttempts,
    boolean startPaused,
    Optional<String> startPinned,
    List<String> trustedRuns,
    Optional<Secret> rolloutSigningKey,
    int eventBufferCapacity,
    int eventBufferBytes,
    Duration feedbackAckTimeout,
    Duration eventFlushTimeout,
    KafkaSettings kafka) {

  /**
   * TLS on the public port: PEM certificate chain and PKCS#8 PEM private key; with a client CA file, clients must
   * present a certificate it signed (mutual TLS).
   */
  public record Tls(Path certChain, Path privateKey, Optional<Path> clientCa) {
    public boolean mutual() {
      return clientCa.isPresent();
    }
  }

  public InferenceConfig {
    engines = List.copyOf(engines);
    trustedRuns = List.copyOf(trustedRuns);
  }

  /** Reads {@code file} (may be null) and the {@code VT_*} variables of {@code env}. */
  public static InferenceConfig load(Path file, Map<String, String> env) {
    return fromMap(ConfigSource.load(file, env));
  }

  /** Builds and validates the config from a flat key map; every problem is reported at once. */
  public static InferenceConfig fromMap(Map<String, String> values) {
    Reader r = new Reader(values);
    String host = r.string("server.host", "0.0.0.0");
    int port = r.integer("server.port", 50051, 0, 65535);
    Optional<Path> cert = r.file("server.tls.cert");
    Optional<Path> key = r.file("server.tls.key");
    Optional<Path> clientCa = r.file("server.tls.client.ca");
    Optional<Tls> tls = Optional.empty();
    if (cert.isPresent() && key.isPresent()) {
      tls = Optional.of(new Tls(cert.get(), key.get(), clientCa));
    } else if (cert.isPresent() || key.isPresent()) {
      r.problem("server.tls.cert and server.tls.key must be set together (TLS needs both the certificate chain and "
          + "its private key)");
    } else if (clientCa.isPresent()) {
      r.problem("server.tls.client.ca needs server.tls.cert and server.tls.key (mutual TLS is TLS plus client "
          + "certificates)");
    }
    Duration grace = r.millis("server.shutdown.grace.ms", 30_000);
    int eventLoopThreads = r.integer("server.event.loop.threads", Runtime.getRuntime().availableProcessors(), 1, 1024);
    boolean metricsEnabled = r.bool("metrics.enabled", true);
    String metricsHost = r.string("metrics.host", "0.0.0.0");
    int metricsPort = r.integer("metrics.port", 9464, 0, 65535);
    String baseModel = r.required("base.model", "the base model name the engines serve, e.g. Qwen/Qwen2.5-0.5B");
    List<String> engines = r.addresses("engine.addresses");
    Duration engineTimeout = r.millis("engine.request.timeout.ms", 120_000);
    Duration healthInterval = r.millis("engine.health.interval.ms", 1_000);
    int maxN = r.integer("generate.max.n", 8, 1, 128);
    int maxTokensLimit = r.integer("generate.max.tokens.limit", 4096, 1, 1_000_000);
    int defaultMaxTokens = r.integer("generate.default.max.tokens", 128, 1, maxTokensLimit);
    RequestLimits d = RequestLimits.DEFAULTS;
    RequestLimits limits = new RequestLimits(
        r.integer("limits.prompt.bytes", d.promptBytes(), 1, 64 * 1024 * 1024),
        r.integer("limits.prompt.messages", d.promptMessages(), 1, 100_000),
        r.integer("limits.stop.strings", d.stopStrings(), 0, 1_024),
        r.integer("limits.stop.bytes", d.stopBytes(), 1, 64 * 1024),
        r.integer("limits.id.chars", d.idChars(), 64, 64 * 1024),
        r.integer("limits.edited.text.bytes", d.editedTextBytes(), 1, 64 * 1024 * 1024));
    Optional<Secret> idsSigningKey = r.secret("ids.signing.key", Ids.MIN_KEY_BYTES);
    int keep = r.integer("rollout.keep", 3, 2, 64);
    Duration loadTimeout = r.millis("rollout.load.timeout.ms", 60_000);
    int loadAttempts = r.integer("rollout.load.attempts", 3, 1, 100);
    boolean paused = r.bool("rollout.paused", false);
    Optional<String> pin = Optional.ofNullable(values.get("rollout.pin")).map(String::trim).filter(s -> !s.isEmpty());
    List<String> trustedRuns = Arrays.stream(r.string("rollout.trusted.runs", "").split(",")).map(String::trim)
        .filter(t -> !t.isEmpty()).toList();
    Optional<Secret> rolloutSigningKey = r.secret("rollout.signing.key", Ids.MIN_KEY_BYTES);
    int bufferCapacity = r.integer("events.buffer.capacity", 10_000, 1, 10_000_000);
    // At least 1 MiB: the largest event the default limits allow must fit.
    int bufferBytes = r.integer("events.buffer.bytes", 64 * 1024 * 1024, 1024 * 1024, 1 << 30);
    Duration feedbackAckTimeout = r.millis("feedback.ack.timeout.ms", 10_000);
    Duration flushTimeout = r.millis("events.flush.timeout.ms", 10_000);
    String bootstrap = r.required("kafka.bootstrap.servers", "the Kafka brokers, e.g. 127.0.0.1:9092");
    String registry = r.required("registry.url", "the schema registry's base URL, e.g. http://127.0.0.1:8081");
    KafkaSettings kafka = null;
    if (!bootstrap.isEmpty() && !registry.isEmpty()) {
      try {
        kafka = KafkaSettings.fromConfig(values);
      } catch (IllegalArgumentException e) {
        r.problem(e.getMessage());
      }
    }
    r.failIfProblems();
    return new InferenceConfig(host, port, tls, grace, eventLoopThreads, metricsEnabled, metricsHost, metricsPort, baseModel, engines,
        engineTimeout, healthInterval, maxN, defaultMaxTokens, maxTokensLimit, limits, idsSigningKey, keep, loadTimeout, loadAttempts,
        paused, pin, trustedRuns, rolloutSigningKey, bufferCapacity, bufferBytes, feedbackAckTimeout, flushTimeout, kafka);
  }

  /** Typed reads that collect problems instead of failing on the first, so one start shows them all. */
  private static final class Reader {
    private final Map<String, String> values;
    private final List<String> problems = new ArrayList<>();

    Reader(Map<String, String> values) {
      this.values = values;
    }

    void problem(String message) {
      problems.add(message);
    }

    void failIfProblems() {
      if (!problems.isEmpty()) {
        throw new IllegalArgumentException("invalid inference config:\n  - " + String.join("\n  - ", problems));
      }
    }

    private Optional<String> raw(String key) {
      String v = values.get(key);
      return v == null || v.isBlank() ? Optional.empty() : Optional.of(v.trim());
    }

    private static String where(String key) {
      return key + " (env " + ConfigSource.envName(key) + ")";
    }

    String string(String key, String dflt) {
      return raw(key).orElse(dflt);
    }

    String required(String key, String what) {
      Optional<String> v = raw(key);
      if (v.isEmpty()) {
        problem(where(key) + " is not set: " + what);
        return "";
      }
      return v.get();
    }

    int integer(String key, int dflt, int min, int max) {
      Optional<String> v = raw(key);
      if (v.isEmpty()) {
        return dflt;
      }
      try {
        int i = Integer.parseInt(v.get());
        if (i < min || i > max) {
          problem(where(key) + " = " + i + " is outside [" + min + ", " + max + "]");
          return dflt;
        }
        return i;
      } catch (NumberFormatException e) {
        problem(where(key) + " = '" + v.get() + "' is not an integer");
        return dflt;
      }
    }

    Duration millis(String key, long dflt) {
      Optional<String> v = raw(key);
      if (v.isEmpty()) {
        return Duration.ofMillis(dflt);
      }
      try {
        long ms = Long.parseLong(v.get());
        if (ms <= 0) {
          problem(where(key) + " = " + ms + " must be a positive number of milliseconds");
          return Duration.ofMillis(dflt);
        }
        return Duration.ofMillis(ms);
      } catch (NumberFormatException e) {
        problem(where(key) + " = '" + v.get() + "' is not a number of milliseconds");
        return Duration.ofMillis(dflt);
      }
    }

    boolean bool(String key, boolean dflt) {
      Optional<String> v = raw(key);
      if (v.isEmpty()) {
        return dflt;
      }
      switch (v.get().toLowerCase()) {
        case "true":
          return true;
        case "false":
          return false;
        default:
          problem(where(key) + " = '" + v.get() + "' is not true or false");
          return dflt;
      }
    }

    /** A base64 key of at least {@code minBytes} bytes; a problem never shows the value. */
    Optional<Secret> secret(String key, int minBytes) {
      Optional<String> v = raw(key);
      if (v.isEmpty()) {
        return Optional.empty();
      }
      byte[] bytes;
      try {
        bytes = v.get().contains("-") || v.get().contains("_")
            ? Base64.getUrlDecoder().decode(v.get()) : Base64.getDecoder().decode(v.get());
      } catch (IllegalArgumentException e) {
        problem(where(key) + " is not base64 (make one with: openssl rand -base64 32)");
        return Optional.empty();
      }
      if (bytes.length < minBytes) {
        problem(where(key) + " holds " + bytes.length + " bytes; at least " + minBytes + " are needed (make one "
            + "with: openssl rand -base64 32)");
        return Optional.empty();
      }
      return Optional.of(new Secret(bytes));
    }

    Optional<Path> file(String key) {
      Optional<String> v = raw(key);
      if (v.isEmpty()) {
        return Optional.empty();
      }
      Path p = Path.of(v.get());
      if (!Files.isReadable(p)) {
        problem(where(key) + " = " + p + ": no readable file there");
      }
      return Optional.of(p);
    }

    List<String> addresses(String key) {
      Optional<String> v = raw(key);
      if (v.isEmpty()) {
        problem(where(key) + " is not set: the engine replicas as host:port, comma-separated, e.g. "
            + "127.0.0.1:50061,127.0.0.1:50062");
        return List.of();
      }
      List<String> out = new ArrayList<>();
      for (String a : Arrays.stream(v.get().split(",")).map(String::trim).filter(s -> !s.isEmpty()).toList()) {
        int colon = a.lastIndexOf(':');
        boolean ok = colon > 0 && colon < a.length() - 1;
        if (ok) {
          try {
            int p = Integer.parseInt(a.substring(colon + 1));
            ok = p > 0 && p <= 65535;
          } catch (NumberFormatException e) {
            ok = false;
          }
        }
        if (!ok) {
          problem(where(key) + ": '" + a + "' is not host:port");
        } else if (out.contains(a)) {
          problem(where(key) + ": '" + a + "' is listed twice");
        } else {
          out.add(a);
        }
      }
      if (out.isEmpty() && problems.isEmpty()) {
        problem(where(key) + " lists no engine replica");
      }
      return out;
    }
  }
}
