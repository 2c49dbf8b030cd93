package io.vllmtrain.inference;

import io.grpc.Status;
import io.grpc.stub.StreamObserver;
import io.vllmtrain.proto.v1.AdapterInfo;
import io.vllmtrain.proto.v1.EngineHealthRequest;
import io.vllmtrain.proto.v1.EngineHealthResponse;
import io.vllmtrain.proto.v1.ListAdaptersRequest;
import io.vllmtrain.proto.v1.ListAdaptersResponse;
import java.time.Duration;
import java.util.HashSet;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.Collectors;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Polls every engine replica's {@code Health} (and, for replicas in service, {@code ListAdapters}) on a fixed
 * interval. A replica that answers ready with our base model is handed to the {@link RolloutController} to join;
 * one that is unreachable, not ready, has lost adapters it should hold (it restarted), or holds one of them with
 * another sha256 than the published version's is taken out of service.
 * A slow answer is not a failure until it happens {@value #SLOW_ANSWERS_TO_FAIL} times in a row: a busy CPU engine
 * answers late, and taking it out would only move its load elsewhere.
 */
public final class EngineHealthMonitor implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(EngineHealthMonitor.class);
  static final int SLOW_ANSWERS_TO_FAIL = 3;
  private static final Duration CHECK_TIMEOUT = Duration.ofSeconds(5);

  private final EngineRouter router;
  private final RolloutController controller;
  private final String baseModel;
  private final Duration interval;
  private final Runnable afterCheck;
  private final ScheduledExecutorService timer;
  private final Map<EngineReplica, AtomicBoolean> checking = new ConcurrentHashMap<>();
  private final Map<EngineReplica, AtomicInteger> slowAnswers = new ConcurrentHashMap<>();
  private final Map<EngineReplica, String> lastProblem = new ConcurrentHashMap<>();
  private final Map<EngineReplica, Long> checkStarted = new ConcurrentHashMap<>();

  /** {@code afterCheck} runs after each replica's check (the server updates its gRPC health status there). */
  public EngineHealthMonitor(EngineRouter router, RolloutController controller, String baseModel, Duration interval,
      Runnable afterCheck) {
    this.router = router;
    this.controller = controller;
    this.baseModel = baseModel;
    this.interval = interval;
    this.afterCheck = afterCheck;
    this.timer = Executors.newSingleThreadScheduledExecutor(r -> {
      Thread t = new Thread(r, "engine-health");
      t.setDaemon(true);
      return t;
    });
    for (EngineReplica r : router.replicas()) {
      checking.put(r, new AtomicBoolean());
      slowAnswers.put(r, new AtomicInteger());
    }
  }

  public void start() {
    timer.scheduleWithFixedDelay(this::checkAll, 0, interval.toMillis(), TimeUnit.MILLISECONDS);
  }

  /** Checks every replica now (tests call this instead of waiting for the timer). */
  public void checkAll() {
    long now = System.nanoTime();
    for (EngineReplica r : router.replicas()) {
      try {
        Long since = checkStarted.get(r);
        if (since != null && now - since > 2 * CHECK_TIMEOUT.toNanos()) {
          // The deadline should have ended it; never let one lost callback stop the checks of a replica.
          log.warn("health check of {} got no answer in {} s; checking again", r.name(),
              2 * CHECK_TIMEOUT.toSeconds());
          checking.get(r).set(false);
        }
        if (checking.get(r).compareAndSet(false, true)) {
          checkStarted.put(r, now);
          check(r);
        }
      } catch (RuntimeException e) {
        // A scheduled task that throws is never run again: log and go on with the next replica.
        checking.get(r).set(false);
        log.error("health check of {} failed to start", r.name(), e);
      }
    }
  }

  private void check(EngineReplica r) {
    r.async().withDeadlineAfter(CHECK_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS)
        .health(EngineHealthRequest.getDefaultInstance(), new StreamObserver<>() {
          EngineHealthResponse health;

          @Override
          public void onNext(EngineHealthResponse value) {
            health = value;
          }

          @Override
          public void onError(Throwable t) {
            Status s = Status.fromThrowable(t);
            if (s.getCode() == Status.Code.DEADLINE_EXCEEDED
                && slowAnswers.get(r).incrementAndGet() < SLOW_ANSWERS_TO_FAIL) {
              done(r);
              return;
            }
            down(r, "health check failed: " + s.getCode() + (s.getDescription() == null ? ""
                : " " + s.getDescription()));
            done(r);
          }

          @Override
          public void onCompleted() {
            slowAnswers.get(r).set(0);
            if (!health.getReady()) {
              down(r, "engine reports not ready");
              done(r);
            } else if (!baseModel.equals(health.getModel())) {
              down(r, "engine serves model '" + health.getModel() + "', not base.model '" + baseModel + "'");
              done(r);
            } else if (r.state() == EngineReplica.State.SERVING) {
              verifyAdapters(r);
            } else {
              if (lastProblem.remove(r) != null) {
                log.info("engine replica {} answers ready again", r.name());
              }
              controller.replicaReady(r);
              done(r);
            }
          }
        });
  }

  /** A replica in service must still hold what it was given; if not, it restarted and must join again. */
  private void verifyAdapters(EngineReplica r) {
    Set<String> expectedBefore = r.adapters();
    r.async().withDeadlineAfter(CHECK_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS)
        .listAdapters(ListAdaptersRequest.getDefaultInstance(), new StreamObserver<>() {
          ListAdaptersResponse list;

          @Override
          public void onNext(ListAdaptersResponse value) {
            list = value;
          }

          @Override
          public void onError(Throwable t) {
            done(r); // the next health check decides
          }

          @Override
          public void onCompleted() {
            Map<String, String> present = list.getAdaptersList().stream()
                .collect(Collectors.toMap(AdapterInfo::getName, AdapterInfo::getSha256, (a, b) -> a));
            // Only adapters it held both before and after the call: a load or unload may have run meanwhile.
            Set<String> expected = new HashSet<>(expectedBefore);
            expected.retainAll(r.adapters());
            Set<String> missing = new TreeSet<>();
            Set<String> replaced = new TreeSet<>();
            for (String name : expected) {
              String held = present.get(name);
              if (held == null) {
                missing.add(name);
              } else if (!controller.expectedDigest(name).map(held::equals).orElse(true)) {
                replaced.add(name);
              }
            }
            if (!missing.isEmpty()) {
              down(r, "engine no longer holds " + missing + " (restarted?)");
            } else if (!replaced.isEmpty()) {
              down(r, "engine holds " + replaced + " with other content than published (sha256 differs)");
            }
            done(r);
          }
        });
  }

  private void down(EngineReplica r, String reason) {
    boolean wasServing = r.markDown(reason);
    String previous = lastProblem.put(r, reason);
    if (wasServing) {
      log.warn("engine replica {} out of service: {}", r.name(), reason);
    } else if (!reason.equals(previous)) {
      log.warn("engine replica {} not available: {}", r.name(), reason);
    }
  }

  private void done(EngineReplica r) {
    checkStarted.remove(r);
    checking.get(r).set(false);
    afterCheck.run();
  }

  @Override
  public void close() {
    timer.shutdownNow();
  }
}
