package io.vllmtrain.inference;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.vllmtrain.proto.v1.ActivateRequest;
import io.vllmtrain.proto.v1.AdapterVersionInfo;
import io.vllmtrain.proto.v1.ChatMessage;
import io.vllmtrain.proto.v1.GenerateRequest;
import io.vllmtrain.proto.v1.GenerateResponse;
import io.vllmtrain.proto.v1.ListVersionsRequest;
import io.vllmtrain.proto.v1.ListVersionsResponse;
import io.vllmtrain.proto.v1.PauseRolloutRequest;
import io.vllmtrain.proto.v1.Prompt;
import io.vllmtrain.proto.v1.ResumeRolloutRequest;
import io.vllmtrain.proto.v1.RollbackRequest;
import io.vllmtrain.proto.v1.VersionStatus;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicBoolean;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/**
 * The rollout controller against in-process engines that can refuse a load, crash and restart: what is loaded
 * where, what serves, and that no request fails on the way. (Real engine workers: RolloutAcceptanceTest.)
 */
class RolloutControllerTest {
  static final String V1 = Versions.id("run-1", 1);
  static final String V2 = Versions.id("run-1", 2);
  InProcessInference service;

  @AfterEach
  void stop() {
    if (service != null) {
      service.close();
    }
  }

  static GenerateRequest hello() {
    return GenerateRequest.newBuilder().setPrompt(Prompt.newBuilder()
        .addMessages(ChatMessage.newBuilder().setRole("user").setContent("hello"))).build();
  }

  /** Clients sending requests back to back until stopped; every answer and every error is kept. */
  static final class Load implements AutoCloseable {
    final ConcurrentLinkedQueue<GenerateResponse> answers = new ConcurrentLinkedQueue<>();
    final ConcurrentLinkedQueue<StatusRuntimeException> errors = new ConcurrentLinkedQueue<>();
    final AtomicBoolean running = new AtomicBoolean(true);
    final List<Thread> clients;

    Load(InProcessInference service, int n) {
      clients = java.util.stream.IntStream.range(0, n).mapToObj(i -> new Thread(() -> {
        while (running.get()) {
          try {
            answers.add(service.inference.generate(hello()));
          } catch (StatusRuntimeException e) {
            errors.add(e);
          }
        }
      }, "client-" + i)).toList();
      clients.forEach(Thread::start);
    }

    @Override
    public void close() throws InterruptedException {
      running.set(false);
      for (Thread t : clients) {
        t.join();
      }
    }
  }

  @Test
  void aVersionRefusedByOneReplicaLeavesTrafficOnTheOldOne() {
    service = InProcessInference.start().started(Versions.of("run-1", 1));
    service.engine(1).loadOutcome = r -> r.getName().equals(V2)
        ? Status.NOT_FOUND.withDescription("adapter directory run-1/v000002 does not exist") : null;
    service.controller().published(Versions.of("run-1", 2));
    Await.until("v2 failed", () -> service.controller().rollout().view(V2)
        .map(v -> v.status() == AdapterRollout.Status.FAILED).orElse(false));
    assertEquals(V1, service.controller().rollout().active());
    assertEquals(V1, service.inference.generate(hello()).getAdapterVersion());
    String reason = service.controller().rollout().view(V2).orElseThrow().failureReason();
    assertTrue(reason.startsWith(service.engine(1).name + ": NOT_FOUND adapter directory"), reason);
    Await.until("the replica that took v2 unloads it", () -> !service.engine(0).adapters.containsKey(V2));
  }

  @Test
  void aRolloutUnderLoadFailsNoRequestAndLabelsEachWithTheVersionThatServedIt() throws Exception {
    service = InProcessInference.start().started(Versions.of("run-1", 1));
    Load load = new Load(service, 8);
    Await.until("answers on v1", () -> load.answers.size() >= 8);
    for (int n = 2; n <= 5; n++) {
      service.rollOut(Versions.of("run-1", n));
      Thread.sleep(100);
    }
    load.close();
    assertEquals(List.of(), List.copyOf(load.errors));
    assertTrue(service.engines.values().stream().allMatch(e -> e.refusedGenerates.get() == 0));
    for (GenerateResponse a : load.answers) {
      assertTrue(a.getResponses(0).getText().startsWith("[" + a.getAdapterVersion() + "]"),
          "labelled with the version that produced the text: " + a);
    }
    Set<String> served = new java.util.TreeSet<>();
    load.answers.forEach(a -> served.add(a.getAdapterVersion()));
    assertTrue(served.contains(V1) && served.contains(Versions.id("run-1", 5)), served.toString());
  }

  @Test
  void onlyTheLastKVersionsStayLoaded() {
    service = new InProcessInference(2, Map.of("rollout.keep", "2"), InProcessInference.autoAckKafka())
        .started(Versions.of("run-1", 1));
    service.rollOut(Versions.of("run-1", 2));
    service.rollOut(Versions.of("run-1", 3));
    for (InProcessEngine e : service.engines.values()) {
      Await.until("v1 unloaded from " + e.name, () -> e.adapters.keySet().equals(Set.of(V2, Versions.id("run-1", 3))));
    }
    assertEquals(AdapterRollout.Status.RETIRED, service.controller().rollout().view(V1).orElseThrow().status());
  }

  @Test
  void aRestartedReplicaGetsTheActiveVersionBeforeAnyTraffic() throws Exception {
    service = InProcessInference.start().started(Versions.of("run-1", 1));
    service.rollOut(Versions.of("run-1", 2));
    InProcessEngine b = service.engine(1);
    try (Load load = new Load(service, 4)) {
      b.crash();
      Await.until("b out of service", () -> service.server.router().inService().size() == 1);
      int servedBeforeRestart = b.generated.get();
      b.restart();
      Await.until("b back in service", () -> service.server.router().inService().size() == 2);
      Await.until("b serving again", () -> b.generated.get() > servedBeforeRestart + 10);
      load.close();
      assertEquals(List.of(), List.copyOf(load.errors));
      assertTrue(load.answers.stream().allMatch(a -> a.getAdapterVersion().equals(V2)));
    }
    assertEquals(0, b.refusedGenerates.get(), "no request reached b before it had v2");
    assertEquals(Set.of(V1, V2), b.adapters.keySet(), "the active version and the one kept for rollback");
  }

  @Test
  void aReplicaUnreachableDuringALoadIsTakenOutAndTheRolloutGoesOn() {
    service = InProcessInference.start().started(Versions.of("run-1", 1));
    InProcessEngine b = service.engine(1);
    b.loadOutcome = r -> {
      b.crash(); // dies while loading
      return Status.UNAVAILABLE.withDescription("connection reset");
    };
    service.rollOut(Versions.of("run-1", 2));
    assertEquals(List.of(service.engine(0).name),
        service.server.router().inService().stream().map(EngineReplica::name).toList());
    b.loadOutcome = r -> null;
    b.restart();
    Await.until("b rejoined with v2", () -> service.server.router().inService().size() == 2);
    assertTrue(b.adapters.containsKey(V2));
  }

  static boolean decided(InProcessInference service, String id) {
    return service.controller().rollout().view(id).map(v -> v.status() == AdapterRollout.Status.FAILED
        || v.status() == AdapterRollout.Status.ACTIVE).orElse(false);
  }

  @Test
  void aReplicaHoldingTheVersionsNameWithOtherContentFailsTheVersionInsteadOfServingIt() {
    service = InProcessInference.start().started(Versions.of("run-1", 1));
    InProcessEngine b = service.engine(1);
    b.adapters.put(V2, InProcessEngine.otherContent(V2)); // the engine answers ALREADY_EXISTS for V2
    service.controller().published(Versions.of("run-1", 2));
    Await.until("v2 decided", () -> decided(service, V2));
    AdapterRollout.VersionView v2 = service.controller().rollout().view(V2).orElseThrow();
    assertEquals(AdapterRollout.Status.FAILED, v2.status(), "never ACTIVE with the wrong content");
    assertTrue(v2.failureReason().startsWith(b.name + ": holds " + V2 + " with sha256 " + Versions.sha(999_999)
        .substring(0, 12)), v2.failureReason());
    assertEquals(V1, service.controller().rollout().active());
    for (int i = 0; i < 6; i++) {
      GenerateResponse r = service.inference.generate(hello());
      assertEquals(V1, r.getAdapterVersion());
    }
  }

  @Test
  void aReplicaThatComesBackHoldingTheActiveNameWithOtherContentDoesNotJoin() {
    service = InProcessInference.start().started(Versions.of("run-1", 1));
    service.rollOut(Versions.of("run-1", 2));
    InProcessEngine b = service.engine(1);
    b.crash();
    Await.until("b out of service", () -> service.server.router().inService().size() == 1);
    int lists = b.listCalls.get();
    b.restartHolding(service.engine(0).adapters.get(V1), InProcessEngine.otherContent(V2));
    Await.until("b tried to join twice", () -> b.listCalls.get() >= lists + 2);
    assertEquals(List.of(service.engine(0).name),
        service.server.router().inService().stream().map(EngineReplica::name).toList(),
        "b holds another " + V2 + ": it must not serve it");
    assertEquals(0, b.generated.get());
    b.adapters.remove(V2); // an operator unloads the impostor
    Await.until("b joins with the real v2", () -> service.server.router().inService().size() == 2);
    assertEquals(Versions.sha(2), b.adapters.get(V2).getSha256());
  }

  @Test
  void aReplicaWhoseAdapterContentChangesUnderItsNameLeavesService() {
    service = InProcessInference.start().started(Versions.of("run-1", 1));
    service.rollOut(Versions.of("run-1", 2));
    InProcessEngine b = service.engine(1);
    b.adapters.put(V2, InProcessEngine.otherContent(V2)); // e.g. restarted between two checks, reloaded by another
    Await.until("b out of service", Duration.ofSeconds(10), () -> service.server.router().inService().size() == 1);
    assertEquals(service.engine(0).name, service.server.router().inService().get(0).name());
  }

  @Test
  void aForgedVersionPointingNowhereDoesNotBlockTheRunsRealVersions() {
    service = InProcessInference.start().started(Versions.of("run-1", 1));
    for (InProcessEngine e : service.engines.values()) {
      e.loadOutcome = r -> r.getUri().equals("nowhere")
          ? Status.NOT_FOUND.withDescription("adapter directory nowhere does not exist") : null;
    }
    String forged = Versions.id("run-1", 999_999);
    service.controller().published(Versions.builder("run-1", 999_999).setUri("nowhere").build());
    Await.until("the forged version failed", () -> service.controller().rollout().view(forged)
        .map(v -> v.status() == AdapterRollout.Status.FAILED).orElse(false));
    service.rollOut(Versions.of("run-1", 2));
    service.rollOut(Versions.of("run-1", 3));
    assertEquals(Versions.id("run-1", 3), service.inference.generate(hello()).getAdapterVersion());
  }

  @Test
  void aVersionWhoseLoadFindsNoReplicaReachableWaitsAndLoadsWhenTheyReturn() {
    service = InProcessInference.start().started(Versions.of("run-1", 1));
    for (InProcessEngine e : service.engines.values()) {
      e.loadOutcome = r -> {
        e.crash(); // the whole pool goes away during the load
        return Status.UNAVAILABLE.withDescription("connection reset");
      };
    }
    service.controller().published(Versions.of("run-1", 2));
    Await.until("both replicas out of service", () -> service.server.router().inService().isEmpty());
    Await.until("the load given up for now", () -> service.controller().rollout().view(V2)
        .map(v -> v.status() != AdapterRollout.Status.LOADING).orElse(false));
    assertEquals(AdapterRollout.Status.PUBLISHED, service.controller().rollout().view(V2).orElseThrow().status(),
        "an outage of the engines is not a fault of the version");
    for (InProcessEngine e : service.engines.values()) {
      e.loadOutcome = r -> null;
      e.restart();
    }
    service.awaitActive(V2);
    assertEquals(V2, service.inference.generate(hello()).getAdapterVersion());
  }

  @Test
  void aTransientRefusalIsRetriedWithBackoffNotFailedAndTheReplicaStaysInService() {
    service = new InProcessInference(2, Map.of("rollout.load.attempts", "1"), InProcessInference.autoAckKafka())
        .started(Versions.of("run-1", 1));
    InProcessEngine b = service.engine(1);
    java.util.concurrent.atomic.AtomicInteger busy = new java.util.concurrent.atomic.AtomicInteger(2);
    b.loadOutcome = r -> busy.getAndDecrement() > 0
        ? Status.RESOURCE_EXHAUSTED.withDescription("adapter slots busy") : null;
    long t0 = System.nanoTime();
    service.controller().published(Versions.of("run-1", 2));
    service.awaitActive(V2);
    assertTrue(System.nanoTime() - t0 > 1_000_000_000L, "the retry waited for its backoff");
    assertEquals(2, service.server.router().inService().size(), "a busy replica is not taken out of service");
    assertTrue(service.engines.values().stream().allMatch(e -> e.adapters.containsKey(V2)));
  }

  @Test
  void atStartTheServiceWaitsForTheVersionItShouldServeButNotLongerThanALoadDeadline() {
    service = new InProcessInference(2, Map.of("rollout.load.attempts", "1", "rollout.load.timeout.ms", "1500"),
        InProcessInference.autoAckKafka());
    for (InProcessEngine e : service.engines.values()) {
      e.loadOutcome = r -> Status.RESOURCE_EXHAUSTED.withDescription("adapter slots busy");
    }
    service.controller().published(Versions.of("run-1", 1));
    service.controller().caughtUp();
    Await.until("v1 deferred", () -> service.controller().rollout().view(V1)
        .map(v -> v.failureReason().startsWith("not loaded yet")).orElse(false));
    assertFalse(service.controller().started(), "not serving the base model while v1 may still come");
    service.awaitStarted();
    assertEquals("", service.inference.generate(hello()).getAdapterVersion(), "v1 stuck: the base model serves");
    for (InProcessEngine e : service.engines.values()) {
      e.loadOutcome = r -> null;
    }
    service.awaitActive(V1);
  }

  @Test
  void anActivateThatReachesNoReplicaIsUnavailableAndDoesNotFailTheVersion() {
    service = InProcessInference.start().started(Versions.of("run-1", 1));
    service.controller().pause();
    service.controller().published(Versions.of("run-1", 2));
    Await.until("v2 listed", () -> service.controller().rollout().view(V2).isPresent());
    for (InProcessEngine e : service.engines.values()) {
      e.loadOutcome = r -> Status.DEADLINE_EXCEEDED.withDescription("load took too long");
    }
    StatusRuntimeException e = org.junit.jupiter.api.Assertions.assertThrows(StatusRuntimeException.class,
        () -> service.adapters.activate(ActivateRequest.newBuilder().setVersionId(V2).build()));
    assertEquals(Status.Code.UNAVAILABLE, e.getStatus().getCode());
    assertEquals(AdapterRollout.Status.PUBLISHED, service.controller().rollout().view(V2).orElseThrow().status());
    for (InProcessEngine engine : service.engines.values()) {
      engine.loadOutcome = r -> null;
    }
    assertEquals(V2, service.adapters.activate(ActivateRequest.newBuilder().setVersionId(V2).build())
        .getVersionId());
  }

  @Test
  void operatorsActivateRollBackPauseAndResume() {
    service = InProcessInference.start().started(Versions.of("run-1", 1));
    service.rollOut(Versions.of("run-1", 2));
    var adapters = service.adapters;

    AdapterVersionInfo back = adapters.rollback(RollbackRequest.getDefaultInstance());
    assertEquals(V1, back.getVersionId());
    assertEquals(VersionStatus.ACTIVE, back.getStatus());
    assertEquals(V1, service.inference.generate(hello()).getAdapterVersion());
    ListVersionsResponse list = adapters.listVersions(ListVersionsRequest.getDefaultInstance());
    assertEquals(VersionStatus.FAILED, list.getVersions(1).getStatus());
    assertEquals("rolled back by an operator", list.getVersions(1).getFailureReason());
    assertEquals(V1, list.getRollout().getPinnedVersion());

    service.controller().published(Versions.of("run-1", 3));
    Await.until("v3 listed", () -> service.controller().rollout().versions().size() == 3);
    assertEquals(V1, service.controller().rollout().active(), "pinned: v3 waits");
    assertFalse(adapters.resumeRollout(ResumeRolloutRequest.getDefaultInstance()).getPaused());
    service.awaitActive(Versions.id("run-1", 3));

    assertTrue(adapters.pauseRollout(PauseRolloutRequest.getDefaultInstance()).getPaused());
    service.controller().published(Versions.of("run-1", 4));
    Await.until("v4 listed", () -> service.controller().rollout().versions().size() == 4);
    assertEquals(VersionStatus.PUBLISHED, adapters.listVersions(ListVersionsRequest.getDefaultInstance())
        .getVersions(3).getStatus());

    AdapterVersionInfo pinned = adapters.activate(ActivateRequest.newBuilder().setVersionId(V2).build());
    assertEquals(V2, pinned.getVersionId(), "an operator may bring back a rolled-back version explicitly");
    assertEquals(VersionStatus.ACTIVE, pinned.getStatus());
    assertEquals(0.67, pinned.getLoss(), 1e-9);
    assertEquals(V2, service.inference.generate(hello()).getAdapterVersion());
  }

  @Test
  void anActivateThatAReplicaRefusesIsAFailedPreconditionAndChangesNothing() {
    service = InProcessInference.start().started(Versions.of("run-1", 1));
    service.controller().pause();
    service.controller().published(Versions.of("run-1", 2));
    service.engine(0).loadOutcome = r -> Status.FAILED_PRECONDITION.withDescription("rank 128 above max 64");
    StatusRuntimeException e = org.junit.jupiter.api.Assertions.assertThrows(StatusRuntimeException.class,
        () -> service.adapters.activate(ActivateRequest.newBuilder().setVersionId(V2).build()));
    assertEquals(Status.Code.FAILED_PRECONDITION, e.getStatus().getCode());
    assertTrue(e.getStatus().getDescription().contains("rank 128 above max 64"), e.getStatus().getDescription());
    assertEquals(V1, service.controller().rollout().active());
  }

  @Test
  void rolloutPinStartsOnTheConfiguredVersion() {
    service = new InProcessInference(2, Map.of("rollout.pin", V1), InProcessInference.autoAckKafka())
        .started(Versions.of("run-1", 1), Versions.of("run-1", 2));
    assertEquals(V1, service.controller().rollout().active());
    assertEquals(V1, service.inference.generate(hello()).getAdapterVersion());
  }
}
