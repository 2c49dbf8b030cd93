package io.vllmtrain.inference;

import com.fasterxml.jackson.databind.ObjectMapper;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.Server;
import io.grpc.stub.StreamObserver;
import io.vllmtrain.events.AdapterVersion;
import io.vllmtrain.events.TrainingMetrics;
import io.vllmtrain.proto.v1.ChatMessage;
import io.vllmtrain.proto.v1.EngineGenerateRequest;
import io.vllmtrain.proto.v1.EngineServiceGrpc;
import io.vllmtrain.proto.v1.GenerateRequest;
import io.vllmtrain.proto.v1.GenerateResponse;
import io.vllmtrain.proto.v1.InferenceServiceGrpc;
import io.vllmtrain.proto.v1.Prompt;
import io.vllmtrain.proto.v1.SamplingParams;
import io.vllmtrain.stack.EmbeddedStack;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The inference service's benchmark ({@code inference/bench/run}, {@code ./pipeline bench inference}), on the
 * embedded stack (events really go to Kafka):
 *
 * <ol>
 *   <li>warm-up, not measured: the service in front of two instant echo engines, 64 requests in flight, so that
 *       the phases below see its request path compiled (a JVM runs it interpreted for its first thousands of
 *       requests, which a few hundred requests to a real engine cannot get past);
 *   <li>added latency over an echo engine (the service's own cost) and routed requests/s: the service in front of
 *       two instant echo engines (the only place an echo engine stands in), 64 requests in flight;
 *   <li>rollout time: from sending an AdapterVersion record to llm.adapter-versions until a request is answered
 *       by that version, with two real engine workers (hf backend, tiny model) and a client sending requests;
 *   <li>added latency: the same greedy request sent alternately straight to an engine worker and through the
 *       service (one client, sequential), p50/p99 of each; added = through − direct.
 * </ol>
 *
 * Writes the summary as one JSON object to {@code --out} (the run script prints it as its last line).
 */
public final class InferenceBench {
  private static final GenerateRequest GREEDY = GenerateRequest.newBuilder()
      .setPrompt(Prompt.newBuilder().addMessages(ChatMessage.newBuilder().setRole("user").setContent("Name a colour.")))
      .setSampling(SamplingParams.newBuilder().setTemperature(0).setMaxTokens(4))
      .build();

  private static String eventLoopThreads;
  /** false with --events none: events go to an in-memory producer (to see what Kafka's share of the cost is). */
  private static boolean kafkaEvents;

  private InferenceBench() {}

  public static void main(String[] args) throws Exception {
    Map<String, String> opts = new HashMap<>(Map.of("--latency-requests", "600", "--rps-seconds", "10",
        "--warmup-seconds", "10", "--versions", "5", "--out", "target/bench-result.json", "--events", "kafka",
        "--echo-delay-ms", "0", "--event-loop-threads", String.valueOf(Runtime.getRuntime().availableProcessors())));
    for (int i = 0; i + 1 < args.length; i += 2) {
      if (!opts.containsKey(args[i])) {
        throw new IllegalArgumentException("unknown option " + args[i] + "; options: " + opts.keySet());
      }
      opts.put(args[i], args[i + 1]);
    }
    int latencyRequests = Integer.parseInt(opts.get("--latency-requests"));
    int rpsSeconds = Integer.parseInt(opts.get("--rps-seconds"));
    int versions = Integer.parseInt(opts.get("--versions"));
    Path out = Path.of(opts.get("--out"));
    eventLoopThreads = opts.get("--event-loop-threads");
    kafkaEvents = !opts.get("--events").equals("none");
    if (EngineWorkers.python().isEmpty()) {
      throw new IllegalStateException(EngineWorkers.MISSING_PYTHON);
    }

    double loadBefore = java.lang.management.ManagementFactory.getOperatingSystemMXBean().getSystemLoadAverage();
    say("starting the embedded stack (Kafka + schema registry)");
    EmbeddedStack stack = EmbeddedStack.shared();
    String tag = UUID.randomUUID().toString().substring(0, 8);
    String servedModel = "tiny-bench-" + tag;
    String run = "bench-" + tag;
    Path work = Files.createDirectories(Path.of("inference", "target", "bench-" + tag)).toAbsolutePath();
    Path root = Files.createDirectories(work.resolve("adapters"));
    long[] numbers = new long[versions];
    Arrays.setAll(numbers, i -> i + 1);
    say("writing " + versions + " adapter versions of the tiny model");
    EngineWorkers.Fixture fixture = EngineWorkers.makeAdapters(root, run, 3, numbers);
    Map<String, Object> result = new LinkedHashMap<>();

    // Echo engines first, after a warm-up: their tens of thousands of requests bring the service's code to its
    // compiled (steady) state, which a few hundred requests to a real engine cannot. Measured on interpreted or
    // profiling-tier code, the service looked three times slower over a real engine than it is.
    echoPhases(result, stack, Integer.parseInt(opts.get("--warmup-seconds")), latencyRequests * 5, rpsSeconds,
        Long.parseLong(opts.get("--echo-delay-ms")));
    enginePhases(result, stack, fixture, servedModel, run, work, root, latencyRequests);

    result.put("cpus", Runtime.getRuntime().availableProcessors());
    // Other work on the machine moves every latency figure; the 1-minute load average says how much there was.
    result.put("load_avg_start", round(loadBefore, 1));
    result.put("load_avg_end", round(
        java.lang.management.ManagementFactory.getOperatingSystemMXBean().getSystemLoadAverage(), 1));
    String json = new ObjectMapper().writeValueAsString(result);
    Files.createDirectories(out.toAbsolutePath().getParent());
    Files.writeString(out, json + "\n");
    say("result: " + json);
    System.exit(0);
  }

  /** Routed requests/s and the pure overhead, with instant echo engines (the only place one stands in). */
  static void echoPhases(Map<String, Object> result, EmbeddedStack stack, int warmupSeconds, int latencyRequests,
      int rpsSeconds, long echoDelay) throws Exception {
    int pa = TcpForwarder.freePort();
    int pb = TcpForwarder.freePort();
    Server echoA = InProcessEngine.onPort("echo-a", pa, echoDelay);
    Server echoB = InProcessEngine.onPort("echo-b", pb, echoDelay);
    InferenceServer service = startService(Versions.BASE_MODEL, List.of("127.0.0.1:" + pa, "127.0.0.1:" + pb),
        stack);
    InferenceServer single = startService(Versions.BASE_MODEL, List.of("127.0.0.1:" + pa), stack);
    ManagedChannel channel = channel(service.port());
    ManagedChannel singleChannel = channel(single.port());
    ManagedChannel echoChannel = channel(pa);
    try {
      say("warming up: routing for " + warmupSeconds + " s (echo engines), not measured");
      routedRps(InferenceServiceGrpc.newStub(channel), warmupSeconds, false);
      Map<String, double[]> lat = compare(latencyRequests, InferenceServiceGrpc.newBlockingStub(singleChannel),
          EngineServiceGrpc.newBlockingStub(echoChannel), "");
      report(result, "echo_", lat);
      say("routing for " + rpsSeconds + " s with 64 requests in flight (echo engines)");
      double rps = routedRps(InferenceServiceGrpc.newStub(channel), rpsSeconds, true);
      result.put("routed_rps", Math.round(rps));
      EventRecorder.Stats events = service.events().stats();
      result.put("events_sent", events.sent());
      result.put("events_dropped", events.dropped());
    } finally {
      channel.shutdownNow();
      echoChannel.shutdownNow();
      singleChannel.shutdownNow();
      single.stop();
      service.stop();
      echoA.shutdownNow();
      echoB.shutdownNow();
    }
  }

  /**
   * With two real engine workers: rollout time, then the latency added over a direct call to one of them.
   */
  static void enginePhases(Map<String, Object> result, EmbeddedStack stack, EngineWorkers.Fixture fixture,
      String servedModel, String run, Path work, Path root, int latencyRequests) throws Exception {
    try (EngineWorkers workers = new EngineWorkers(work.resolve("logs"))) {
      say("starting two engine workers (vllm-train serve --backend hf)");
      EngineWorkers.Worker a = workers.start("engine-a", fixture.model(), servedModel, root);
      EngineWorkers.Worker b = workers.start("engine-b", fixture.model(), servedModel, root);
      InferenceServer service = startService(servedModel, List.of(a.address(), b.address()), stack);
      ManagedChannel channel = channel(service.port());
      try {
        var inference = InferenceServiceGrpc.newBlockingStub(channel);
        // 1. rollout time
        List<Double> rollouts = new ArrayList<>();
        StackTopics.Publisher publisher = new StackTopics.Publisher(stack.settings());
        // Warm-up, not timed: registers the schema (publisher) and fetches it (the service's follower), one-time
        // costs of a fresh registry client. The service refuses this record: it is for another base model.
        publisher.publish(record(new EngineWorkers.Adapter("warm-up/v000001", 1, "warm-up/v000001",
            fixture.adapters().get(0).sha256(), 8, 16, List.of("q_proj")), "warm-up", "bench-warm-up-model"));
        Thread.sleep(2_000);
        for (EngineWorkers.Adapter v : fixture.adapters()) {
          AdapterVersion record = record(v, run, servedModel);
          long t0 = System.nanoTime();
          publisher.publish(record);
          while (!inference.generate(GREEDY).getAdapterVersion().equals(v.versionId())) {
            // a request every engine-turn: the first answer by the new version ends the clock
          }
          double s = (System.nanoTime() - t0) / 1e9;
          rollouts.add(s);
          say(String.format("rollout %s: serving %.3f s after the record was sent", v.versionId(), s));
        }
        publisher.close();
        result.put("rollout_s", round(median(rollouts), 3));
        result.put("rollout_max_s", round(rollouts.stream().mapToDouble(d -> d).max().orElse(0), 3));

        // 2. added latency over a direct call to a real engine: a second service in front of engine A alone
        String active = fixture.adapters().get(fixture.adapters().size() - 1).versionId();
        InferenceServer single = startService(servedModel, List.of(a.address()), stack);
        ManagedChannel singleChannel = channel(single.port());
        ManagedChannel channelA = channel(a.port());
        Map<String, double[]> lat = compare(latencyRequests, InferenceServiceGrpc.newBlockingStub(singleChannel),
            EngineServiceGrpc.newBlockingStub(channelA), active);
        channelA.shutdownNow();
        singleChannel.shutdownNow();
        single.stop();
        report(result, "", lat);
      } finally {
        channel.shutdownNow();
        service.stop();
      }
    }

  }

  static InferenceServer startService(String baseModel, List<String> engines, EmbeddedStack stack) throws Exception {
    Map<String, String> config = new HashMap<>(Map.of(
        "server.host", "127.0.0.1", "server.port", "0", "metrics.enabled", "false",
        "base.model", baseModel, "engine.addresses", String.join(",", engines),
        "engine.health.interval.ms", "200", "events.buffer.capacity", "100000",
        "server.event.loop.threads", eventLoopThreads,
        "kafka.bootstrap.servers", stack.bootstrapServers(), "registry.url", stack.registryUrl()));
    InferenceConfig c = InferenceConfig.fromMap(config);
    InferenceServer service = (kafkaEvents ? InferenceServer.create(c)
        : InferenceServer.create(c, new EventRecorder(InProcessInference.autoAckKafka(), c.eventBufferCapacity(), c.eventBufferBytes())))
        .start();
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
    while (!(service.controller().started() && service.router().inService().size() == engines.size())) {
      if (System.nanoTime() > deadline) {
        throw new IllegalStateException("service did not start");
      }
      Thread.sleep(50);
    }
    return service;
  }

  static ManagedChannel channel(int port) {
    return Grpc.newChannelBuilder("127.0.0.1:" + port, InsecureChannelCredentials.create()).build();
  }

  static AdapterVersion record(EngineWorkers.Adapter a, String run, String baseModel) {
    return AdapterVersion.newBuilder()
        .setVersionId(a.versionId()).setRunId(run).setVersion(a.version()).setBaseModel(baseModel)
        .setUri(a.uri()).setSha256(a.sha256()).setRank(a.rank()).setAlpha(a.alpha())
        .setTargetModules(a.targetModules()).setMetrics(new TrainingMetrics(0.6, 0.6, 0.1, 1L, 8L))
        .setCreatedAt(Instant.now()).build();
  }

  /**
   * Sends the same request to one engine directly and through a service in front of that engine alone, in pairs
   * whose order is random (so neither path always meets a just-warmed engine), sequentially, after a warm-up.
   * Returns the sorted latencies of both paths in ms.
   */
  static Map<String, double[]> compare(int n, InferenceServiceGrpc.InferenceServiceBlockingStub via,
      EngineServiceGrpc.EngineServiceBlockingStub direct, String adapter) {
    EngineGenerateRequest engineRequest = EngineGenerateRequest.newBuilder().setRequestId("bench")
        .setPrompt(GREEDY.getPrompt()).setSampling(GREEDY.getSampling().toBuilder().setN(1)).setAdapter(adapter)
        .build();
    java.util.Random order = new java.util.Random(42);
    int warmup = Math.max(50, n / 10);
    double[] d = new double[n];
    double[] v = new double[n];
    double[] added = new double[n];
    for (int i = -warmup; i < n; i++) {
      boolean directFirst = order.nextBoolean();
      double directMs = 0;
      if (directFirst) {
        directMs = time(() -> direct.generate(engineRequest));
      }
      long t0 = System.nanoTime();
      GenerateResponse r = via.generate(GREEDY);
      double viaMs = (System.nanoTime() - t0) / 1e6;
      if (!directFirst) {
        directMs = time(() -> direct.generate(engineRequest));
      }
      if (!r.getAdapterVersion().equals(adapter)) {
        throw new IllegalStateException("served by " + r.getAdapterVersion() + ", expected " + adapter);
      }
      if (i >= 0) {
        d[i] = directMs;
        v[i] = viaMs;
        added[i] = viaMs - directMs;
      }
    }
    Arrays.sort(d);
    Arrays.sort(v);
    Arrays.sort(added);
    return Map.of("direct", d, "via", v, "added", added);
  }

  static double time(Runnable call) {
    long t0 = System.nanoTime();
    call.run();
    return (System.nanoTime() - t0) / 1e6;
  }

  /**
   * The added latency of a request is its time through the service minus the direct call next to it (same engine,
   * adjacent in time); its p50 and p99 are the headline. The two paths' own percentiles are kept for reference.
   */
  static void report(Map<String, Object> result, String prefix, Map<String, double[]> lat) {
    double[] d = lat.get("direct");
    double[] v = lat.get("via");
    double[] added = lat.get("added");
    say(String.format("%sdirect p50 %.3f ms p99 %.3f ms; through the service p50 %.3f ms p99 %.3f ms; added per "
        + "request p50 %.3f ms p99 %.3f ms (n=%d)", prefix.isEmpty() ? "engine " : "echo engine ", pct(d, 50),
        pct(d, 99), pct(v, 50), pct(v, 99), pct(added, 50), pct(added, 99), d.length));
    result.put(prefix + "added_latency_p50_ms", round(pct(added, 50), 3));
    result.put(prefix + "added_latency_p99_ms", round(pct(added, 99), 3));
    result.put(prefix + "direct_p50_ms", round(pct(d, 50), 3));
    result.put(prefix + "via_p50_ms", round(pct(v, 50), 3));
  }

  static double routedRps(InferenceServiceGrpc.InferenceServiceStub stub, int seconds, boolean print)
      throws InterruptedException {
    Semaphore inFlight = new Semaphore(64);
    AtomicLong ok = new AtomicLong();
    AtomicLong failed = new AtomicLong();
    long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds);
    long t0 = System.nanoTime();
    while (System.nanoTime() < end) {
      inFlight.acquire();
      stub.generate(GREEDY, new StreamObserver<>() {
        @Override
        public void onNext(GenerateResponse value) {}

        @Override
        public void onError(Throwable t) {
          failed.incrementAndGet();
          inFlight.release();
        }

        @Override
        public void onCompleted() {
          ok.incrementAndGet();
          inFlight.release();
        }
      });
    }
    inFlight.acquire(64);
    double elapsed = (System.nanoTime() - t0) / 1e9;
    if (print) {
      say(String.format("routed %d requests in %.1f s: %.0f requests/s (%d failed)", ok.get(), elapsed,
          ok.get() / elapsed, failed.get()));
    }
    if (failed.get() > 0) {
      throw new IllegalStateException(failed.get() + " routed requests failed");
    }
    return ok.get() / elapsed;
  }

  static double pct(double[] sorted, double p) {
    int i = (int) Math.ceil(p / 100.0 * sorted.length) - 1;
    return sorted[Math.max(0, Math.min(sorted.length - 1, i))];
  }

  static double median(List<Double> values) {
    double[] a = values.stream().mapToDouble(x -> x).sorted().toArray();
    return a.length % 2 == 1 ? a[a.length / 2] : (a[a.length / 2 - 1] + a[a.length / 2]) / 2;
  }

  static double round(double v, int digits) {
    double f = Math.pow(10, digits);
    return Math.round(v * f) / f;
  }

  static void say(String line) {
    System.out.println("[bench] " + line);
    System.out.flush();
  }
}
