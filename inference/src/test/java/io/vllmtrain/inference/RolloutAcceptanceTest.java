package io.vllmtrain.inference;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.StatusRuntimeException;
import io.vllmtrain.events.AdapterVersion;
import io.vllmtrain.events.TrainingMetrics;
import io.vllmtrain.proto.v1.AdapterServiceGrpc;
import io.vllmtrain.proto.v1.AdapterVersionInfo;
import io.vllmtrain.proto.v1.ChatMessage;
import io.vllmtrain.proto.v1.EngineServiceGrpc;
import io.vllmtrain.proto.v1.GenerateRequest;
import io.vllmtrain.proto.v1.GenerateResponse;
import io.vllmtrain.proto.v1.GetActiveRequest;
import io.vllmtrain.proto.v1.InferenceServiceGrpc;
import io.vllmtrain.proto.v1.ListAdaptersRequest;
import io.vllmtrain.proto.v1.ListVersionsRequest;
import io.vllmtrain.proto.v1.LoadAdapterRequest;
import io.vllmtrain.proto.v1.Prompt;
import io.vllmtrain.proto.v1.ResumeRolloutRequest;
import io.vllmtrain.proto.v1.RollbackRequest;
import io.vllmtrain.proto.v1.SamplingParams;
import io.vllmtrain.proto.v1.VersionStatus;
import io.vllmtrain.stack.EmbeddedStack;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.stream.Collectors;
import java.util.stream.IntStream;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestMethodOrder;

/**
 * Adapter rollout end to end, against real parts: two engine worker processes ({@code vllm-train serve}, hf backend,
 * the tiny model), the real broker and registry, the service over Netty. Versions are published to
 * llm.adapter-versions as the trainer publishes them. One story, in order: a rollout under load; a version one
 * replica cannot load; a restart of the service; a rollback; a replica that crashes and comes back; a replica that
 * holds a new version's name with other content.
 *
 * <p>Each version has its own random weights, so a greedy answer identifies the version that produced it: every
 * response's label is checked against the text that version gives when asked directly.
 */
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class RolloutAcceptanceTest {
  static final GenerateRequest GREEDY = GenerateRequest.newBuilder()
      .setPrompt(Prompt.newBuilder().addMessages(ChatMessage.newBuilder().setRole("user").setContent("Name a colour.")))
      .setSampling(SamplingParams.newBuilder().setTemperature(0).setMaxTokens(6))
      .build();

  static EngineWorkers workers;
  static EmbeddedStack stack;
  static String servedModel;
  static String run;
  static Path rootA;
  static Path rootB;
  static Path model;
  static EngineWorkers.Worker engineA;
  static EngineWorkers.Worker engineB;
  static final Map<Long, EngineWorkers.Adapter> adapters = new HashMap<>();
  /** Greedy answer of each version to GREEDY, measured by pinning it. */
  static final Map<String, String> expected = new ConcurrentHashMap<>();
  static InferenceServer service;
  static ManagedChannel channel;

  @BeforeAll
  static void start() throws Exception {
    assumeTrue(EngineWorkers.python().isPresent(), EngineWorkers.MISSING_PYTHON);
    stack = EmbeddedStack.shared();
    String tag = UUID.randomUUID().toString().substring(0, 8);
    servedModel = "tiny-" + tag;  // versions of other tests on the shared topic are for other models
    run = "accept-" + tag;
    Path work = Files.createDirectories(Path.of("target", "acceptance-" + tag)).toAbsolutePath();
    rootA = Files.createDirectories(work.resolve("adapters-a"));
    rootB = Files.createDirectories(work.resolve("adapters-b"));
    EngineWorkers.Fixture fixture = EngineWorkers.makeAdapters(rootA, run, 1, 1, 2, 3, 4, 5);
    model = fixture.model();
    fixture.adapters().forEach(a -> adapters.put(a.version(), a));
    // Replica B's adapter root lacks v4: B refuses it (NOT_FOUND), A loads it.
    for (long v : new long[] {1, 2, 3, 5}) {
      copyTree(rootA.resolve(adapters.get(v).uri()), rootB.resolve(adapters.get(v).uri()));
    }
    workers = new EngineWorkers(work.resolve("logs"));
    engineA = workers.start("engine-a", model, servedModel, rootA);
    engineB = workers.start("engine-b", model, servedModel, rootB);
    startService();
  }

  static void startService() throws IOException {
    Map<String, String> config = new HashMap<>(Map.of(
        "server.host", "127.0.0.1",
        "server.port", "0",
        "metrics.host", "127.0.0.1",
        "metrics.port", "0",
        "base.model", servedModel,
        "engine.addresses", engineA.address() + "," + engineB.address(),
        "engine.health.interval.ms", "200",
        "kafka.bootstrap.servers", stack.bootstrapServers(),
        "registry.url", stack.registryUrl()));
    service = InferenceServer.create(InferenceConfig.fromMap(config)).start();
    channel = Grpc.newChannelBuilder("127.0.0.1:" + service.port(), InsecureChannelCredentials.create()).build();
    Await.until("the service to start", Duration.ofSeconds(120), () -> service.controller().started());
  }

  static void stopService() {
    channel.shutdownNow();
    service.stop();
  }

  @AfterAll
  static void stop() {
    if (service != null) {
      stopService();
    }
    if (workers != null) {
      workers.close();
    }
  }

  static void copyTree(Path from, Path to) throws IOException {
    try (Stream<Path> files = Files.walk(from)) {
      for (Path p : files.toList()) {
        Path target = to.resolve(from.relativize(p).toString());
        if (Files.isDirectory(p)) {
          Files.createDirectories(target);
        } else {
          Files.copy(p, target);
        }
      }
    }
  }

  static AdapterVersion record(long n) {
    EngineWorkers.Adapter a = adapters.get(n);
    return AdapterVersion.newBuilder()
        .setVersionId(a.versionId()).setRunId(run).setVersion(n).setBaseModel(servedModel)
        .setUri(a.uri()).setSha256(a.sha256()).setRank(a.rank()).setAlpha(a.alpha())
        .setTargetModules(a.targetModules())
        .setMetrics(new TrainingMetrics(0.69, 0.5, 0.0, n, n * 8)).setCreatedAt(Instant.now())
        .build();
  }

  static String id(long n) {
    return adapters.get(n).versionId();
  }

  static InferenceServiceGrpc.InferenceServiceBlockingStub inference() {
    return InferenceServiceGrpc.newBlockingStub(channel);
  }

  static AdapterServiceGrpc.AdapterServiceBlockingStub adapterService() {
    return AdapterServiceGrpc.newBlockingStub(channel);
  }

  static String active() {
    return adapterService().getActive(GetActiveRequest.getDefaultInstance()).getVersionId();
  }

  static double awaitActive(long n) {
    long t0 = System.nanoTime();
    Await.until(id(n) + " active", Duration.ofSeconds(120), () -> active().equals(id(n)), () -> "active " + active());
    return (System.nanoTime() - t0) / 1e9;
  }

  static AdapterVersionInfo info(long n) {
    return adapterService().listVersions(ListVersionsRequest.getDefaultInstance()).getVersionsList().stream()
        .filter(v -> v.getVersionId().equals(id(n))).findFirst().orElseThrow();
  }

  static Set<String> adaptersOn(EngineWorkers.Worker w) {
    ManagedChannel ch = Grpc.newChannelBuilder(w.address(), InsecureChannelCredentials.create()).build();
    try {
      return EngineServiceGrpc.newBlockingStub(ch).listAdapters(ListAdaptersRequest.getDefaultInstance())
          .getAdaptersList().stream().map(a -> a.getName()).collect(Collectors.toSet());
    } finally {
      ch.shutdownNow();
    }
  }

  /** The greedy answer of version {@code n}, asked for by pinning it. */
  static String answerOf(long n) {
    return expected.computeIfAbsent(id(n), v -> {
      GenerateResponse r = inference().generate(GREEDY.toBuilder().setAdapterVersion(v).build());
      assertEquals(v, r.getAdapterVersion());
      return r.getResponses(0).getText();
    });
  }

  /** Clients that send GREEDY back to back, each on its own stub, until closed. */
  static final class Clients implements AutoCloseable {
    final ConcurrentLinkedQueue<GenerateResponse> answers = new ConcurrentLinkedQueue<>();
    final ConcurrentLinkedQueue<StatusRuntimeException> errors = new ConcurrentLinkedQueue<>();
    final AtomicBoolean running = new AtomicBoolean(true);
    final List<Thread> threads;

    Clients(int n) {
      threads = IntStream.range(0, n).mapToObj(i -> new Thread(() -> {
        var stub = inference();
        while (running.get()) {
          try {
            answers.add(stub.generate(GREEDY));
          } catch (StatusRuntimeException e) {
            errors.add(e);
          }
        }
      }, "client-" + i)).toList();
      threads.forEach(Thread::start);
    }

    @Override
    public void close() throws InterruptedException {
      running.set(false);
      for (Thread t : threads) {
        t.join();
      }
    }
  }

  @Test
  @Order(1)
  void aRolloutUnderLoadOfEightClientsFailsNoRequestAndLabelsEachWithTheVersionThatServedIt() throws Exception {
    StackTopics.publish(stack.settings(), record(1));
    awaitActive(1);
    Clients clients = new Clients(8);
    Thread.sleep(1_000);
    StackTopics.publish(stack.settings(), record(2));
    double toV2 = awaitActive(2);
    Thread.sleep(1_000);
    StackTopics.publish(stack.settings(), record(3));
    double toV3 = awaitActive(3);
    Thread.sleep(1_000);
    clients.close();
    System.out.printf("rollout under load: v2 serving %.2f s after publish, v3 %.2f s; %d requests%n", toV2, toV3,
        clients.answers.size());

    assertEquals(List.of(), List.copyOf(clients.errors), "no request failed");
    Set<String> served = new TreeSet<>();
    for (GenerateResponse a : clients.answers) {
      served.add(a.getAdapterVersion());
    }
    assertEquals(new TreeSet<>(Set.of(id(1), id(2), id(3))), served, "traffic moved through every version");
    Map<String, String> answers = Map.of(id(1), answerOf(1), id(2), answerOf(2), id(3), answerOf(3));
    assertEquals(3, new java.util.HashSet<>(answers.values()).size(), "the versions answer differently");
    for (GenerateResponse a : clients.answers) {
      assertEquals(answers.get(a.getAdapterVersion()), a.getResponses(0).getText(),
          "the label names the version that produced the text");
    }
  }

  @Test
  @Order(2)
  void aVersionOneReplicaCannotLoadIsFailedAndTrafficStaysOnTheOldOne() {
    StackTopics.publish(stack.settings(), record(4));
    Await.until("v4 failed", Duration.ofSeconds(120), () -> adapterService().listVersions(
        ListVersionsRequest.getDefaultInstance()).getVersionsList().stream()
        .anyMatch(v -> v.getVersionId().equals(id(4)) && v.getStatus() == VersionStatus.FAILED));
    String reason = info(4).getFailureReason();
    assertTrue(reason.startsWith(engineB.address() + ": NOT_FOUND"), reason);
    assertEquals(id(3), active());
    GenerateResponse r = inference().generate(GREEDY);
    assertEquals(id(3), r.getAdapterVersion());
    assertEquals(answerOf(3), r.getResponses(0).getText());
    Await.until("engine A drops v4 again", () -> !adaptersOn(engineA).contains(id(4)));
  }

  @Test
  @Order(3)
  void aRestartedServiceRecoversTheActiveVersionFromTheTopic() throws Exception {
    stopService();
    startService();
    assertEquals(id(3), active(), "the newest version every replica can load (v4 is refused again)");
    assertEquals(VersionStatus.FAILED, info(4).getStatus());
    GenerateResponse r = inference().generate(GREEDY);
    assertEquals(id(3), r.getAdapterVersion());
    assertEquals(answerOf(3), r.getResponses(0).getText());
  }

  @Test
  @Order(4)
  void rollbackReturnsTrafficToThePreviousVersion() throws Exception {
    AdapterVersionInfo back = adapterService().rollback(RollbackRequest.getDefaultInstance());
    assertEquals(id(2), back.getVersionId());
    GenerateResponse r = inference().generate(GREEDY);
    assertEquals(id(2), r.getAdapterVersion());
    assertEquals(answerOf(2), r.getResponses(0).getText());
    assertEquals(VersionStatus.FAILED, info(3).getStatus());
    assertEquals("rolled back by an operator", info(3).getFailureReason());
    var state = adapterService().listVersions(ListVersionsRequest.getDefaultInstance()).getRollout();
    assertEquals(id(2), state.getPinnedVersion());

    String metrics = HttpClient.newHttpClient().send(HttpRequest.newBuilder(
        URI.create("http://127.0.0.1:" + service.metricsPort() + "/metrics")).build(),
        HttpResponse.BodyHandlers.ofString()).body();
    assertTrue(metrics.contains("vt_inference_active_version{version=\"" + id(2) + "\"} 1"), metrics);
    assertTrue(metrics.contains("vt_inference_requests_total{code=\"OK\",method=\"InferenceService/Generate\"}"),
        metrics);
  }

  @Test
  @Order(6)
  void aReplicaHoldingTheNameOfANewVersionWithOtherContentFailsItAndTrafficStays() {
    // Someone loaded v1's directory into engine B under v5's name; the engine answers ALREADY_EXISTS for v5 then.
    ManagedChannel ch = Grpc.newChannelBuilder(engineB.address(), InsecureChannelCredentials.create()).build();
    try {
      EngineServiceGrpc.newBlockingStub(ch).loadAdapter(LoadAdapterRequest.newBuilder().setName(id(5))
          .setUri(adapters.get(1L).uri()).setSha256(adapters.get(1L).sha256()).build());
    } finally {
      ch.shutdownNow();
    }
    adapterService().resumeRollout(ResumeRolloutRequest.getDefaultInstance());
    StackTopics.publish(stack.settings(), record(5));
    Await.until("v5 decided", Duration.ofSeconds(120), () -> adapterService().listVersions(
        ListVersionsRequest.getDefaultInstance()).getVersionsList().stream().anyMatch(v -> v.getVersionId()
        .equals(id(5)) && (v.getStatus() == VersionStatus.FAILED || v.getStatus() == VersionStatus.ACTIVE)));
    assertEquals(VersionStatus.FAILED, info(5).getStatus(), "never ACTIVE while a replica holds other content");
    String reason = info(5).getFailureReason();
    assertTrue(reason.startsWith(engineB.address() + ": holds " + id(5) + " with sha256 "
        + adapters.get(1L).sha256().substring(0, 12)), reason);
    assertEquals(id(2), active());
    GenerateResponse r = inference().generate(GREEDY);
    assertEquals(id(2), r.getAdapterVersion());
    assertEquals(answerOf(2), r.getResponses(0).getText());
    Await.until("engine A drops v5 again", () -> !adaptersOn(engineA).contains(id(5)));
  }

  @Test
  @Order(5)
  void aCrashedReplicaThatComesBackGetsTheActiveVersionBeforeTraffic() throws Exception {
    try (Clients clients = new Clients(4)) {
      Thread.sleep(500);
      workers.kill(engineB);
      Await.until("B out of service", Duration.ofSeconds(30), () -> service.router().inService().size() == 1);
      engineB = workers.start("engine-b", model, servedModel, rootB, engineB.port());
      Await.until("B back in service", Duration.ofSeconds(60), () -> service.router().inService().size() == 2);
      assertTrue(adaptersOn(engineB).contains(id(2)), "B holds the active version");
      Thread.sleep(1_000);
      clients.close();
      assertEquals(List.of(), List.copyOf(clients.errors), "no request failed");
      assertTrue(clients.answers.stream().allMatch(a -> a.getAdapterVersion().equals(id(2))
          && a.getResponses(0).getText().equals(answerOf(2))));
    }
  }
}
