package io.vllmtrain.streams.bench;

import io.vllmtrain.events.FeedbackEvent;
import io.vllmtrain.events.FeedbackKind;
import io.vllmtrain.events.Prompt;
import io.vllmtrain.events.PromptEvent;
import io.vllmtrain.events.ResponseEvent;
import io.vllmtrain.events.SamplingParams;
import io.vllmtrain.schemas.AvroSerdes;
import io.vllmtrain.schemas.ConfigSource;
import io.vllmtrain.schemas.KafkaSettings;
import io.vllmtrain.schemas.Topics;
import io.vllmtrain.stack.EmbeddedStack;
import io.vllmtrain.streams.EventSerdes;
import io.vllmtrain.streams.StreamsApp;
import io.vllmtrain.streams.StreamsAppConfig;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;
import java.util.UUID;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.locks.LockSupport;
import java.util.stream.Collectors;
import org.apache.avro.specific.SpecificRecord;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.Serializer;

/**
 * The streams benchmark ({@code ./pipeline bench streams}, script {@code streams/bench/run}).
 *
 * <p>Runs the real app (exactly_once_v2, RocksDB, changelogs) in this JVM against the stack of
 * {@code VT_KAFKA_BOOTSTRAP_SERVERS}/{@code VT_REGISTRY_URL}, or an {@link EmbeddedStack} (in-process broker, registry
 * process) when they are unset. It preloads prompts and responses, then measures two phases of feedback:
 *
 * <ol>
 *   <li><b>flood</b>: {@code --flood-events} feedback events as fast as the producer goes; {@code events_per_s} is
 *       events divided by the time from the first send to the last resulting pair being readable (read_committed);
 *   <li><b>steady</b>: {@code --rate} events/s for {@code --seconds}; {@code p50/p99_pair_latency_ms} are the time
 *       from a feedback event's send (its record timestamp, which the pair record inherits) to its pair being read.
 * </ol>
 *
 * <p>The feedback mix per 10 requests: 5 PAIRWISE, 2 EDIT, 3 RATING (thumbs up on one response, down on the other):
 * 13 events, 10 pairs. Also printed: CPU seconds per component (app stream thread, app producer I/O, broker, load
 * generator, registry, JVM native/GC) so that RESULTS.md can say where the time goes. The last line is JSON.
 */
public final class StreamsBench {
  private static final String ANSWER = " It depends on context, but a short answer is that the quantity grows with "
      + "the square of the distance, so doubling the input roughly quadruples the cost; in practice caching, "
      + "batching and keeping the data close to where it is used matter more than the constant factors, and "
      + "measuring before optimising is what tells you which of these dominates in your own system.";

  record Options(int warmupEvents, int floodEvents, int rate, int pacedWarmupSeconds, int seconds) {
    static Options parse(String[] args) {
      int warmup = 150_000;
      int flood = 100_000;
      int rate = 20_000;
      int pacedWarmup = 30;
      int seconds = 10;
      for (int i = 0; i < args.length; i++) {
        String v = i + 1 < args.length ? args[i + 1] : null;
        switch (args[i]) {
          case "--warmup-events" -> warmup = Integer.parseInt(v);
          case "--flood-events" -> flood = Integer.parseInt(v);
          case "--rate" -> rate = Integer.parseInt(v);
          case "--paced-warmup-seconds" -> pacedWarmup = Integer.parseInt(v);
          case "--seconds" -> seconds = Integer.parseInt(v);
          default -> throw new IllegalArgumentException("unknown argument " + args[i] + " (use --warmup-events N, "
              + "--flood-events N, --rate EVENTS_PER_S, --paced-warmup-seconds S, --seconds S)");
        }
        i++;
      }
      return new Options(warmup, flood, rate, pacedWarmup, seconds);
    }
  }

  /** Requests of one phase and their pre-encoded feedback, in send order. */
  static final class Plan {
    final String prefix;
    int requests;
    final List<byte[]> feedbackKeys = new ArrayList<>();
    final List<byte[]> feedbackValues = new ArrayList<>();
    int expectedPairs;

    Plan(String prefix, int events, Serializer<SpecificRecord> ser) {
      this.prefix = prefix;
      int set = 0;
      while (feedbackValues.size() < events) {
        String q = prefix + "-q" + set;
        switch (set % 10) {
          case 0, 1, 2, 3, 4 -> add(ser, q, FeedbackKind.PAIRWISE, q + "-f", null, null, q + "-a", q + "-b", null);
          case 5, 6 -> add(ser, q, FeedbackKind.EDIT, q + "-f", q + "-a", null, null, null, "A corrected answer " + set);
          default -> {
            add(ser, q, FeedbackKind.RATING, q + "-fa", q + "-a", 1.0, null, null, null);
            add(ser, q, FeedbackKind.RATING, q + "-fb", q + "-b", 0.0, null, null, null);
          }
        }
        expectedPairs++;
        set++;
      }
      requests = set;
    }

    private void add(Serializer<SpecificRecord> ser, String q, FeedbackKind kind, String id, String responseId,
                     Double rating, String chosen, String rejected, String edited) {
      FeedbackEvent f = FeedbackEvent.newBuilder().setFeedbackId(id).setRequestId(q).setUserId("user-" + q)
          .setKind(kind).setResponseId(responseId).setRating(rating).setChosenResponseId(chosen)
          .setRejectedResponseId(rejected).setEditedText(edited).setCreatedAt(Instant.now()).build();
      feedbackKeys.add(q.getBytes(StandardCharsets.UTF_8));
      feedbackValues.add(ser.serialize(Topics.FEEDBACK.name(), f));
    }

    int events() {
      return feedbackValues.size();
    }
  }

  /** Reads pairs (read_committed, bytes only) and records each one's latency from its record timestamp. */
  static final class PairReader implements Runnable {
    private final KafkaConsumer<byte[], byte[]> consumer;
    private final AtomicBoolean running = new AtomicBoolean(true);
    private volatile long[] latencies = new long[0];
    private volatile long[] sentMs = new long[0];
    private volatile int count;
    private volatile long lastReceiveMs;

    PairReader(KafkaSettings settings) {
      Map<String, Object> props = new HashMap<>(settings.clientProperties());
      props.put("isolation.level", "read_committed");
      props.put("client.id", "bench-pair-reader");
      props.put("fetch.max.wait.ms", "20");
      consumer = new KafkaConsumer<>(props, new ByteArrayDeserializer(), new ByteArrayDeserializer());
      List<TopicPartition> parts = consumer.partitionsFor(Topics.PREFERENCE_PAIRS.name()).stream()
          .map(p -> new TopicPartition(p.topic(), p.partition())).toList();
      consumer.assign(parts);
      consumer.seekToEnd(parts);
      parts.forEach(consumer::position); // resolve now: only pairs written from here on count
    }

    /** Starts counting a new phase of {@code expected} pairs. */
    synchronized void expect(int expected) {
      latencies = new long[expected];
      sentMs = new long[expected];
      count = 0;
    }

    @Override
    public void run() {
      while (running.get()) {
        var records = consumer.poll(Duration.ofMillis(50));
        long now = System.currentTimeMillis();
        synchronized (this) {
          for (ConsumerRecord<byte[], byte[]> r : records) {
            if (count < latencies.length) {
              latencies[count] = now - r.timestamp();
              sentMs[count] = r.timestamp();
            }
            count++;
            lastReceiveMs = now;
          }
        }
      }
      consumer.close(Duration.ofSeconds(2));
    }

    void stop() {
      running.set(false);
    }

    int count() {
      return count;
    }

    long lastReceiveMs() {
      return lastReceiveMs;
    }

    /** The worst latency of the pairs of each second of sending, from {@code startMs}: shows when a tail happened. */
    synchronized List<Long> maxLatencyBySecond(long startMs) {
      List<Long> worst = new ArrayList<>();
      for (int i = 0; i < Math.min(count, latencies.length); i++) {
        int second = (int) Math.max(0, (sentMs[i] - startMs) / 1000);
        while (worst.size() <= second) {
          worst.add(0L);
        }
        worst.set(second, Math.max(worst.get(second), latencies[i]));
      }
      return worst;
    }

    synchronized long[] sortedLatencies() {
      long[] copy = Arrays.copyOf(latencies, Math.min(count, latencies.length));
      Arrays.sort(copy);
      return copy;
    }
  }

  public static void main(String[] args) {
    int status = 0;
    try {
      run(Options.parse(args));
    } catch (Exception e) {
      System.err.println("[bench] failed: " + e);
      e.printStackTrace();
      status = 1;
    }
    System.exit(status); // also stops the embedded broker and registry (shutdown hook) and any client threads left
  }

  /** Sends {@code plan}'s feedback at {@code rate} events/s. */
  private static void sendPaced(KafkaProducer<byte[], byte[]> producer, Plan plan, int rate) {
    long start = System.nanoTime();
    int sent = 0;
    while (sent < plan.events()) {
      long due = Math.min(plan.events(), (long) (seconds(System.nanoTime() - start) * rate));
      while (sent < due) {
        producer.send(new ProducerRecord<>(Topics.FEEDBACK.name(), plan.feedbackKeys.get(sent),
            plan.feedbackValues.get(sent)));
        sent++;
      }
      LockSupport.parkNanos(500_000);
    }
  }

  private static void run(Options o) throws Exception {
    log("starting the stack (VT_KAFKA_BOOTSTRAP_SERVERS/VT_REGISTRY_URL, else an embedded broker + registry)");
    EmbeddedStack stack = EmbeddedStack.shared();
    KafkaSettings settings = stack.settings();
    String run = "bench-" + UUID.randomUUID().toString().substring(0, 8);
    Path stateDir = Files.createTempDirectory("vt-streams-bench-");

    Map<String, String> cfg = new TreeMap<>(ConfigSource.load(null, System.getenv())); // VT_STREAMS_* tune it
    cfg.put("kafka.bootstrap.servers", settings.bootstrapServers());
    cfg.put("registry.url", settings.registryUrl());
    if (settings.confluentRegistry()) {
      cfg.put("registry.flavor", "confluent");
    }
    cfg.put("streams.application.id", "vt-streams-" + run);
    cfg.put("streams.state.dir", stateDir.toString());
    cfg.put("streams.metrics.port", "0");
    cfg.putIfAbsent("kafka.auto.offset.reset", "latest"); // a shared stack may hold older runs' events
    StreamsAppConfig config = StreamsAppConfig.from(cfg);

    Serializer<SpecificRecord> ser = AvroSerdes.valueSerializer(settings);
    Plan warmup = new Plan(run + "-warmup", o.warmupEvents(), ser);
    Plan flood = new Plan(run + "-flood", o.floodEvents(), ser);
    Plan pacedWarmup = new Plan(run + "-paced-warmup", o.rate() * o.pacedWarmupSeconds(), ser);
    Plan steady = new Plan(run + "-steady", o.rate() * o.seconds(), ser);

    Map<String, Object> producerProps = new HashMap<>(settings.clientProperties());
    // The load comes the way the product sends feedback: the inference service's event recorder (idempotent,
    // acks=all, linger.ms=5; EventRecorder.producerProperties). The linger is inside the measured latency.
    producerProps.put("client.id", "bench-producer");
    producerProps.put("enable.idempotence", "true");
    producerProps.put("acks", "all");
    producerProps.put("linger.ms", "5");
    producerProps.put("batch.size", "65536");
    PairReader reader = new PairReader(settings);
    Thread readerThread = new Thread(reader, "bench-pair-reader");
    readerThread.setDaemon(true);
    readerThread.start();

    try (StreamsApp app = new StreamsApp(config, EventSerdes.registry(settings));
         KafkaProducer<byte[], byte[]> producer =
             new KafkaProducer<>(producerProps, new ByteArraySerializer(), new ByteArraySerializer())) {
      app.start();
      app.awaitRunning(Duration.ofSeconds(120));
      log("app running: " + config.applicationId() + ", commit interval " + config.commitInterval().toMillis()
          + " ms, batch size " + config.batching().size());

      // Preload: every request's prompt and two responses, before any feedback.
      long t0 = System.nanoTime();
      int preloaded = 0;
      for (Plan plan : List.of(warmup, flood, pacedWarmup, steady)) {
        for (int i = 0; i < plan.requests; i++) {
          String q = plan.prefix + "-q" + i;
          byte[] key = q.getBytes(StandardCharsets.UTF_8);
          producer.send(new ProducerRecord<>(Topics.PROMPTS.name(), key, ser.serialize(Topics.PROMPTS.name(),
              prompt(q, "Bench question " + i + " of " + plan.prefix + ": why does this cost grow so fast?"))));
          producer.send(new ProducerRecord<>(Topics.RESPONSES.name(), key, ser.serialize(Topics.RESPONSES.name(),
              response(q, q + "-a", 0, "Answer A." + ANSWER))));
          producer.send(new ProducerRecord<>(Topics.RESPONSES.name(), key, ser.serialize(Topics.RESPONSES.name(),
              response(q, q + "-b", 1, "Answer B, which is worse." + ANSWER))));
          preloaded += 3;
        }
      }
      producer.flush();
      final int preloadTarget = preloaded;
      waitFor("the app to read the preloaded prompts and responses", Duration.ofMinutes(5),
          () -> app.metrics().recordsIn(Topics.PROMPTS.name()) + app.metrics().recordsIn(Topics.RESPONSES.name())
              >= preloadTarget);
      double ingestPerS = preloaded / seconds(System.nanoTime() - t0);
      log(String.format(Locale.ROOT, "preloaded %d prompt/response events at %.0f events/s", preloaded, ingestPerS));

      // Warm-up: the same work, unmeasured, so that the JIT has compiled the hot paths (on 2 cores, C2 compiling
      // takes a core for tens of seconds) and RocksDB and the broker are past their first flushes.
      long w0 = System.nanoTime();
      reader.expect(warmup.expectedPairs);
      for (int i = 0; i < warmup.events(); i++) {
        producer.send(new ProducerRecord<>(Topics.FEEDBACK.name(), warmup.feedbackKeys.get(i),
            warmup.feedbackValues.get(i)));
      }
      producer.flush();
      waitFor("the warm-up's pairs", Duration.ofMinutes(5), () -> reader.count() >= warmup.expectedPairs);
      log(String.format(Locale.ROOT, "warm-up: %d events in %.1f s", warmup.events(), seconds(System.nanoTime() - w0)));
      Thread.sleep(2000);

      // Phase 1: flood. VT_BENCH_JFR=file records a CPU profile of the measured phases (jfr print --events ...).
      String jfrFile = System.getenv("VT_BENCH_JFR");
      jdk.jfr.Recording jfr = null;
      if (jfrFile != null && !jfrFile.isBlank()) {
        jfr = new jdk.jfr.Recording(jdk.jfr.Configuration.getConfiguration("profile"));
        jfr.setDestination(Path.of(jfrFile));
        jfr.start();
      }
      Cpu cpu0 = Cpu.snapshot();
      reader.expect(flood.expectedPairs);
      long floodStartMs = System.currentTimeMillis();
      for (int i = 0; i < flood.events(); i++) {
        producer.send(new ProducerRecord<>(Topics.FEEDBACK.name(), flood.feedbackKeys.get(i),
            flood.feedbackValues.get(i)));
      }
      producer.flush();
      waitFor("the flood's pairs", Duration.ofMinutes(5), () -> reader.count() >= flood.expectedPairs);
      double floodSeconds = (reader.lastReceiveMs() - floodStartMs) / 1000.0;
      double eventsPerS = flood.events() / floodSeconds;
      Cpu cpu1 = Cpu.snapshot();
      log(String.format(Locale.ROOT, "flood: %d feedback events -> %d pairs in %.2f s: %.0f events/s",
          flood.events(), flood.expectedPairs, floodSeconds, eventsPerS));
      log("flood CPU seconds: " + cpu1.minus(cpu0));
      log("flood stream thread: " + threadMetrics(app));

      // Phase 2: steady rate, latency. First the same rate unmeasured: a paced load has a different branch profile
      // from a flood, and on 2 cores the JIT recompiling for it takes CPU for several seconds.
      Thread.sleep(1000);
      reader.expect(pacedWarmup.expectedPairs);
      sendPaced(producer, pacedWarmup, o.rate());
      producer.flush();
      waitFor("the paced warm-up's pairs", Duration.ofMinutes(5), () -> reader.count() >= pacedWarmup.expectedPairs);
      log(String.format(Locale.ROOT, "paced warm-up: %d events at %d/s", pacedWarmup.events(), o.rate()));
      reader.expect(steady.expectedPairs);
      Cpu cpu2 = Cpu.snapshot();
      long steadyStartMs = System.currentTimeMillis();
      sendPaced(producer, steady, o.rate());
      producer.flush();
      waitFor("the steady phase's pairs", Duration.ofMinutes(5), () -> reader.count() >= steady.expectedPairs);
      double steadySeconds = (reader.lastReceiveMs() - steadyStartMs) / 1000.0;
      Cpu cpu3 = Cpu.snapshot();
      long[] lat = reader.sortedLatencies();
      double achieved = steady.events() / steadySeconds;
      log(String.format(Locale.ROOT, "steady: %d events offered at %d/s, done in %.2f s (%.0f events/s); pair "
              + "latency p50 %d ms, p99 %d ms, max %d ms", steady.events(), o.rate(), steadySeconds, achieved,
          pct(lat, 50), pct(lat, 99), lat.length == 0 ? -1 : lat[lat.length - 1]));
      log("steady CPU seconds: " + cpu3.minus(cpu2));
      log("steady worst latency of each second's feedback (ms): " + reader.maxLatencyBySecond(steadyStartMs));
      Map<String, Double> steadyThread = threadMetrics(app);
      log("steady stream thread: " + steadyThread);
      Thread.sleep(1500);
      int extra = reader.count() - steady.expectedPairs;
      if (jfr != null) {
        jfr.stop();
        jfr.close();
        log("CPU profile of the measured phases: " + jfrFile);
      }

      Map<String, Object> result = new LinkedHashMap<>();
      result.put("events_per_s", Math.round(eventsPerS));
      result.put("p50_pair_latency_ms", pct(lat, 50));
      result.put("p99_pair_latency_ms", pct(lat, 99));
      result.put("max_pair_latency_ms", lat.length == 0 ? -1 : lat[lat.length - 1]);
      result.put("steady_offered_events_per_s", o.rate());
      result.put("steady_achieved_events_per_s", Math.round(achieved));
      result.put("flood_events", flood.events());
      result.put("steady_events", steady.events());
      result.put("pairs", flood.expectedPairs + steady.expectedPairs);
      result.put("unexpected_extra_pairs", extra);
      result.put("batches", (long) app.metrics().batches());
      result.put("ingest_events_per_s", Math.round(ingestPerS));
      result.put("commit_interval_ms", config.commitInterval().toMillis());
      result.put("cores", Runtime.getRuntime().availableProcessors());
      Map<String, Double> floodCpu = cpu1.minus(cpu0);
      double jvmAndRegistry = floodCpu.entrySet().stream().filter(e -> !e.getKey().startsWith("machine"))
          .mapToDouble(Map.Entry::getValue).sum();
      result.put("flood_cpu_us_per_event", Math.round(jvmAndRegistry * 1e6 / flood.events()));
      result.put("flood_machine_busy_pct_of_all_cores", Math.round(100 * floodCpu.get("machine busy (all processes)")
          / (floodSeconds * Runtime.getRuntime().availableProcessors())));
      // The machine may be shared: how much of its busy time was this benchmark's (JVM + registry).
      result.put("flood_bench_share_of_busy_pct", Math.round(100 * jvmAndRegistry
          / Math.max(1e-9, floodCpu.get("machine busy (all processes)"))));
      result.put("load_average_1m_at_end", loadAverage());
      result.put("flood_cpu_s", floodCpu);
      result.put("steady_cpu_s", cpu3.minus(cpu2));
      result.put("steady_stream_thread", steadyThread);
      System.out.println(json(result));
      String out = System.getenv("VT_BENCH_RESULT"); // the run script prints it again after the JVM's shutdown logs
      if (out != null && !out.isBlank()) {
        Files.writeString(Path.of(out), json(result) + "\n");
      }
    } finally {
      reader.stop();
      readerThread.join(5000);
    }
  }

  private static PromptEvent prompt(String q, String text) {
    return PromptEvent.newBuilder().setRequestId(q).setUserId("user-" + q)
        .setPrompt(Prompt.newBuilder().setText(text).setMessages(List.of()).build())
        .setBaseModel("tiny-qwen").setAdapterVersion("bench/v000001")
        .setSampling(SamplingParams.newBuilder().setN(2).build()).setCreatedAt(Instant.now()).build();
  }

  private static ResponseEvent response(String q, String id, int index, String text) {
    return ResponseEvent.newBuilder().setResponseId(id).setRequestId(q).setIndex(index).setText(text)
        .setFinishReason("stop").setPromptTokens(20).setCompletionTokens(80).setBaseModel("tiny-qwen")
        .setAdapterVersion(index == 0 ? "bench/v000001" : null).setEngineReplica("engine-0").setLatencyMs(40)
        .setCreatedAt(Instant.now()).build();
  }

  /** CPU seconds by component: threads of this JVM by name, the JVM's native/GC rest, and child processes. */
  record Cpu(Map<String, Long> nanos) {
    static Cpu snapshot() {
      ThreadMXBean mx = ManagementFactory.getThreadMXBean();
      Map<String, Long> by = new TreeMap<>();
      long threads = 0;
      for (long id : mx.getAllThreadIds()) {
        var info = mx.getThreadInfo(id);
        long t = mx.getThreadCpuTime(id);
        if (info == null || t < 0) {
          continue;
        }
        by.merge(component(info.getThreadName()), t, Long::sum);
        threads += t;
      }
      var os = (com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean();
      Map<String, Long> nativeThreads = nativeThreadNanos();
      long named = nativeThreads.values().stream().mapToLong(Long::longValue).sum();
      by.putAll(nativeThreads);
      by.put("jvm other native", Math.max(0, os.getProcessCpuTime() - threads - named));
      long children = ProcessHandle.current().descendants()
          .mapToLong(p -> p.info().totalCpuDuration().map(Duration::toNanos).orElse(0L)).sum();
      by.put("registry process", children);
      by.put("machine busy (all processes)", machineBusyNanos());
      return new Cpu(by);
    }

    private static String component(String thread) {
      if (thread.contains("StreamThread")) {
        return thread.contains("producer") ? "app producer I/O" : "app stream thread";
      }
      if (thread.contains("bench-producer")) {
        return "load producer I/O";
      }
      if (thread.contains("bench-pair-reader")) {
        return "pair reader";
      }
      if (thread.equals("main")) {
        return "load generator (main)";
      }
      if (thread.contains("kafka-streams") || thread.contains("vt-streams")) {
        return "app other";
      }
      return "broker and other JVM threads";
    }

    /** CPU of this JVM's threads that are not Java threads (RocksDB, JIT, GC), from /proc/self/task. */
    private static Map<String, Long> nativeThreadNanos() {
      Map<String, Long> by = new TreeMap<>();
      try (var tasks = Files.list(Path.of("/proc/self/task"))) {
        for (Path task : tasks.toList()) {
          String stat;
          try {
            stat = Files.readString(task.resolve("stat"));
          } catch (Exception gone) {
            continue;
          }
          String comm = stat.substring(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
          String[] f = stat.substring(stat.lastIndexOf(')') + 2).split(" ");
          long ticks = Long.parseLong(f[11]) + Long.parseLong(f[12]); // utime, stime
          String group = comm.startsWith("rocksdb") ? "RocksDB background threads"
              : comm.contains("CompilerThre") ? "JIT compiler threads"
              : comm.startsWith("G1 ") || comm.startsWith("GC Thread") ? "GC threads" : null;
          if (group != null) {
            by.merge(group, ticks * 10_000_000L, Long::sum);
          }
        }
      } catch (Exception e) {
        // not Linux: everything stays in "jvm other native"
      }
      return by;
    }

    /** Busy CPU time of the whole machine (all cores, all processes) from /proc/stat; 0 where unavailable. */
    private static long machineBusyNanos() {
      try {
        String[] f = Files.readAllLines(Path.of("/proc/stat")).get(0).trim().split("\\s+");
        long busy = 0;
        for (int i = 1; i < f.length; i++) {
          if (i != 4 && i != 5) { // idle, iowait
            busy += Long.parseLong(f[i]);
          }
        }
        return busy * 10_000_000L; // USER_HZ = 100
      } catch (Exception e) {
        return 0;
      }
    }

    Map<String, Double> minus(Cpu before) {
      Map<String, Double> d = new TreeMap<>();
      nanos.forEach((k, v) -> d.put(k, Math.round((v - before.nanos.getOrDefault(k, 0L)) / 1e7) / 100.0));
      return d;
    }
  }

  /** Where the stream thread spends its time (Kafka Streams' thread metrics, averaged over a recent window). */
  private static Map<String, Double> threadMetrics(StreamsApp app) {
    List<String> wanted = List.of("process-ratio", "punctuate-ratio", "poll-ratio", "commit-ratio",
        "commit-latency-avg", "commit-latency-max", "process-rate", "poll-records-avg", "commit-rate");
    Map<String, Double> out = new TreeMap<>();
    app.kafkaMetrics().forEach((name, metric) -> {
      if (name.group().equals("stream-thread-metrics") && wanted.contains(name.name())
          && metric.metricValue() instanceof Double d && !d.isNaN()) {
        out.merge(name.name(), Math.round(d * 1000) / 1000.0, Double::sum);
      }
    });
    return out;
  }

  private static double loadAverage() {
    try {
      return Double.parseDouble(Files.readString(Path.of("/proc/loadavg")).split(" ")[0]);
    } catch (Exception e) {
      return -1;
    }
  }

  private static long pct(long[] sorted, int p) {
    if (sorted.length == 0) {
      return -1;
    }
    int i = (int) Math.ceil(p / 100.0 * sorted.length) - 1;
    return sorted[Math.max(0, Math.min(sorted.length - 1, i))];
  }

  private static double seconds(long nanos) {
    return nanos / 1e9;
  }

  private static void waitFor(String what, Duration timeout, java.util.function.BooleanSupplier done)
      throws InterruptedException {
    long deadline = System.nanoTime() + timeout.toNanos();
    while (!done.getAsBoolean()) {
      if (System.nanoTime() > deadline) {
        throw new IllegalStateException("timed out after " + timeout + " waiting for " + what);
      }
      Thread.sleep(5);
    }
  }

  private static void log(String line) {
    System.out.println("[bench] " + line);
  }

  @SuppressWarnings("unchecked")
  private static String json(Object v) {
    if (v instanceof Map<?, ?> m) {
      return m.entrySet().stream().map(e -> "\"" + e.getKey() + "\": " + json(e.getValue()))
          .collect(Collectors.joining(", ", "{", "}"));
    }
    if (v instanceof String s) {
      return "\"" + s.replace("\"", "\\\"") + "\"";
    }
    return String.valueOf(v);
  }
}
