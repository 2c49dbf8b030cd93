package io.vllmtrain.inference;

import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.vllmtrain.events.AdapterVersion;
import io.vllmtrain.inference.AdapterRollout.State;
import io.vllmtrain.inference.AdapterRollout.Switch;
import io.vllmtrain.inference.AdapterRollout.VersionView;
import io.vllmtrain.proto.v1.AdapterInfo;
import io.vllmtrain.proto.v1.ListAdaptersRequest;
import io.vllmtrain.proto.v1.LoadAdapterRequest;
import io.vllmtrain.proto.v1.UnloadAdapterRequest;
import io.vllmtrain.proto.v1.UnloadAdapterResponse;
import io.grpc.stub.StreamObserver;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Carries out {@link AdapterRollout}'s decisions on the engine replicas: loads each new version into every replica
 * in service in parallel (with deadline and retries), switches traffic only when all have it, unloads versions
 * beyond the last K, and brings a replica that (re)joins to the loaded versions before it takes traffic. A replica
 * has a version only if it holds its name with the published sha256. A refusal for good fails the version; a load
 * no replica could take for now is deferred and run again (timer or a replica joining).
 *
 * <p>Every change of rollout state and of the replicas' adapter sets runs on one worker thread, in order: a join
 * never races a switch, so a replica never enters service without the version that is active when it does.
 * Loading waits until the history of {@code llm.adapter-versions} has been read ({@link #caughtUp()}), so that a
 * restart goes straight to the newest version instead of replaying every one.
 */
public final class RolloutController implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(RolloutController.class);
  private static final Duration LIST_TIMEOUT = Duration.ofSeconds(10);
  private static final Duration UNLOAD_TIMEOUT = Duration.ofSeconds(60);

  private final AdapterRollout rollout;
  private final EngineRouter router;
  private final InferenceMetrics metrics;
  private final Duration loadTimeout;
  private final int loadAttempts;
  private final ScheduledExecutorService worker;
  private final ExecutorService loads;
  private volatile boolean caughtUp;
  private volatile boolean started;
  private volatile Optional<String> startPin;
  private volatile Runnable onServingChange = () -> {};
  // The advance() scheduled for a deferred load's retry, if any (touched on the worker thread only).
  private ScheduledFuture<?> retry;
  private long retryScheduledAtMs;
  private long startWaitSinceMs;

  public RolloutController(AdapterRollout rollout, EngineRouter router, InferenceMetrics metrics,
      Duration loadTimeout, int loadAttempts, Optional<String> startPin) {
    this.rollout = rollout;
    this.router = router;
    this.metrics = metrics;
    this.loadTimeout = loadTimeout;
    this.loadAttempts = loadAttempts;
    this.startPin = startPin;
    this.worker = Executors.newSingleThreadScheduledExecutor(daemon("rollout"));
    this.loads = Executors.newCachedThreadPool(daemon("adapter-load"));
  }

  public AdapterRollout rollout() {
    return rollout;
  }

  /** Runs after a replica joins or the service starts serving (the server updates its gRPC health there). */
  void onServingChange(Runnable listener) {
    this.onServingChange = listener;
  }

  /**
   * Whether the service may take requests: the adapter-version history has been read and the version it names is
   * active on at least one replica (until then a restarted service would serve the wrong version).
   */
  public boolean started() {
    return started;
  }

  /** A trusted record read from {@code llm.adapter-versions}. */
  public void published(AdapterVersion version) {
    published(version, null);
  }

  /**
   * A record read from {@code llm.adapter-versions}; {@code untrusted} says why it failed the trust checks of the
   * follower (its signature), or is null.
   */
  public void published(AdapterVersion version, String untrusted) {
    worker.execute(() -> {
      Optional<VersionView> before = rollout.view(version.getVersionId());
      VersionView v = rollout.publish(version, untrusted);
      if (before.isPresent() && v.spec() != version) {
        if (!before.get().spec().getSha256().equals(version.getSha256())) {
          log.warn("version {} was published again with another sha256 ({} instead of {}){}",
              version.getVersionId(), version.getSha256(), before.get().spec().getSha256(),
              untrusted != null ? " by an untrusted record (" + untrusted + "); ignored"
                  : before.get().status() == AdapterRollout.Status.LOADING
                  ? " during its load; it takes the version's place only if that load fails"
                  : " after it loaded; ignored: a version id names the content that loaded under it");
        }
        return;
      }
      if (before.isPresent()) {
        log.info("version {} published again; the new record replaces one that never loaded ({})",
            version.getVersionId(), before.get().status());
      }
      if (v.status() == AdapterRollout.Status.FAILED) {
        log.warn("adapter version {} refused: {}", v.id(), v.failureReason());
      } else {
        log.info("adapter version {} published (uri {})", v.id(), version.getUri());
      }
      advance();
    });
  }

  /** The history of the topic has been read: from now on, load. */
  public void caughtUp() {
    worker.execute(() -> {
      if (!caughtUp) {
        caughtUp = true;
        log.info("adapter version history read: {} versions, newest good: {}", rollout.versions().size(),
            rollout.nextAutomaticLoad(System.currentTimeMillis()).map(AdapterVersion::getVersionId).orElse("none"));
      }
      advance();
    });
  }

  /** An operator's Activate: loads the version where it is missing, switches to it, pins it. */
  public CompletableFuture<VersionView> activate(String versionId) {
    return submit(() -> {
      VersionView v = activateNow(versionId);
      log.info("version {} activated and pinned by an operator", versionId);
      return v;
    });
  }

  /** An operator's Rollback: back to the previous good version, pinned; the version left is marked FAILED. */
  public CompletableFuture<VersionView> rollback() {
    return submit(() -> {
      String target = rollout.rollbackTarget();
      if (!target.equals(AdapterRollout.BASE)) {
        ensureLoaded(rollout.activationTarget(target));
      }
      Switch s = rollout.rollBackTo(target, System.currentTimeMillis());
      apply(s);
      log.warn("rolled back from {} to {} by an operator (pinned)", label(s.previous()), label(s.active()));
      return activeView();
    });
  }

  public State pause() {
    State s = rollout.pause();
    log.info("automatic rollout paused (active {})", label(s.active()));
    return s;
  }

  public State resume() {
    State s = rollout.resume();
    log.info("automatic rollout resumed (active {})", label(s.active()));
    worker.execute(this::advance);
    return s;
  }

  /** The health check found {@code replica} ready: bring it to the loaded versions, then give it traffic. */
  public void replicaReady(EngineReplica replica) {
    if (replica.startJoin()) {
      worker.execute(() -> join(replica));
    }
  }

  /** The version serving now, as the API shows it (a synthetic entry for the base model). */
  public VersionView activeView() {
    String id = rollout.active();
    return rollout.view(id).orElseGet(() -> baseView());
  }

  private VersionView baseView() {
    AdapterVersion base = AdapterVersion.newBuilder()
        .setVersionId(AdapterRollout.BASE).setRunId("").setVersion(0).setBaseModel(rollout.baseModel())
        .setUri("").setSha256("").setRank(0).setAlpha(0).setTargetModules(List.of())
        .setMetrics(new io.vllmtrain.events.TrainingMetrics(0.0, 0.0, 0.0, 0L, 0L))
        .setCreatedAt(java.time.Instant.EPOCH)
        .build();
    return new VersionView(base, AdapterRollout.Status.ACTIVE, "", 0, true);
  }

  private VersionView activateNow(String versionId) {
    if (versionId.equals(AdapterRollout.BASE) || versionId.equals(AdapterRollout.BASE_REQUEST)) {
      apply(rollout.activatePinned(AdapterRollout.BASE, System.currentTimeMillis()));
      return activeView();
    }
    AdapterVersion v = rollout.activationTarget(versionId);
    ensureLoaded(v);
    apply(rollout.activatePinned(versionId, System.currentTimeMillis()));
    return activeView();
  }

  /**
   * Loads {@code v} on every replica in service that lacks it. Throws FAILED_PRECONDITION (and marks it FAILED)
   * when a replica refuses it for good, UNAVAILABLE (the version stays as it was) when no replica could take it now.
   */
  private void ensureLoaded(AdapterVersion v) {
    String id = v.getVersionId();
    List<EngineReplica> replicas = router.inService();
    if (replicas.isEmpty()) {
      throw Status.UNAVAILABLE.withDescription("no engine replica in service").asRuntimeException();
    }
    boolean missing = replicas.stream().anyMatch(r -> !r.adapters().contains(id));
    if (!missing && rollout.view(id).map(VersionView::loaded).orElse(false)) {
      return;
    }
    rollout.loadStarted(id);
    try {
      loadEverywhere(v, replicas);
      rollout.loadSucceeded(id);
    } catch (LoadFailure f) {
      if (!f.definite()) {
        rollout.loadDeferred(id, f.getMessage(), System.currentTimeMillis());
        throw Status.UNAVAILABLE.withDescription("version " + id + " could not be loaded now (not a fault of the "
            + "version; retry): " + f.getMessage()).asRuntimeException();
      }
      rollout.loadFailed(id, f.getMessage());
      throw Status.FAILED_PRECONDITION.withDescription("version " + id + " could not be loaded: " + f.getMessage())
          .asRuntimeException();
    }
  }

  /** Automatic rollout: load and activate the newest good version until there is nothing newer. */
  private void advance() {
    if (!caughtUp || router.inService().isEmpty()) {
      return;
    }
    Optional<String> pin = startPin;
    if (pin.isPresent()) {
      startPin = Optional.empty();
      try {
        activateNow(pin.get());
        log.info("version {} activated and pinned at start (rollout.pin)", pin.get());
      } catch (RuntimeException e) {
        log.error("rollout.pin = {} cannot be activated ({}); rolling out automatically instead", pin.get(),
            e.getMessage());
      }
    }
    for (Optional<AdapterVersion> next = rollout.nextAutomaticLoad(System.currentTimeMillis()); next.isPresent();
        next = rollout.nextAutomaticLoad(System.currentTimeMillis())) {
      AdapterVersion v = next.get();
      List<EngineReplica> replicas = router.inService();
      if (replicas.isEmpty()) {
        break;
      }
      long t0 = System.nanoTime();
      rollout.loadStarted(v.getVersionId());
      try {
        loadEverywhere(v, replicas);
      } catch (LoadFailure f) {
        if (f.definite()) {
          rollout.loadFailed(v.getVersionId(), f.getMessage());
          metrics.rollouts.labelValues("failed").inc();
          log.warn("adapter version {} failed to load, traffic stays on {}: {}", v.getVersionId(),
              label(rollout.active()), f.getMessage());
          continue;
        }
        long delay = rollout.loadDeferred(v.getVersionId(), f.getMessage(), System.currentTimeMillis());
        metrics.rollouts.labelValues("deferred").inc();
        log.warn("adapter version {} not loaded for now (no fault of the version), traffic stays on {}; retrying in "
            + "{} s or when a replica joins: {}", v.getVersionId(), label(rollout.active()), delay / 1000,
            f.getMessage());
        break;
      }
      rollout.loadSucceeded(v.getVersionId());
      Optional<Switch> s = rollout.activateAutomatically(v.getVersionId(), System.currentTimeMillis());
      double seconds = (System.nanoTime() - t0) / 1e9;
      if (s.isPresent()) {
        apply(s.get());
        metrics.rolloutDuration.observe(seconds);
        metrics.rollouts.labelValues("activated").inc();
        log.info("adapter version {} active on {} replicas after {} ms (was {})", v.getVersionId(), replicas.size(),
            Math.round(seconds * 1000), label(s.get().previous()));
      } else {
        metrics.rollouts.labelValues("loaded").inc();
        log.info("adapter version {} loaded but not activated (rollout paused or pinned)", v.getVersionId());
      }
    }
    Optional<Long> retryAt = rollout.retryAt();
    retryAt.ifPresent(this::scheduleRetry);
    // A restart comes back on the newest good version: while its load waits for the engines, do not start, but for
    // no longer than one load's deadline (a load that never gets through must not keep the service down).
    long now = System.currentTimeMillis();
    if (retryAt.isPresent() && startWaitSinceMs == 0) {
      startWaitSinceMs = now;
    }
    boolean waitedEnough = startWaitSinceMs > 0 && now - startWaitSinceMs >= loadTimeout.toMillis();
    if (!started && (retryAt.isEmpty() || waitedEnough)) {
      if (retryAt.isPresent()) {
        log.warn("starting on {} while the newest version waits to load (retried in the background)",
            label(rollout.active()));
      }
      sweepStaleAdapters();
      started = true;
      log.info("serving: active version {} on {} replicas", label(rollout.active()), router.inService().size());
      onServingChange.run();
    }
  }

  /** Runs advance() again at {@code atMs}, unless one is due earlier already. */
  private void scheduleRetry(long atMs) {
    // A timer due in the past may be the one running this very advance(): it does not count.
    if (retry != null && !retry.isDone() && retryScheduledAtMs > System.currentTimeMillis()
        && retryScheduledAtMs <= atMs) {
      return;
    }
    if (retry != null) {
      retry.cancel(false);
    }
    retryScheduledAtMs = atMs;
    retry = worker.schedule(this::advance, Math.max(0, atMs - System.currentTimeMillis()), TimeUnit.MILLISECONDS);
  }

  private void join(EngineReplica replica) {
    try {
      Map<String, String> present = listAdapters(replica);
      List<AdapterVersion> wanted = rollout.loadedVersions();
      String active = rollout.active();
      Set<String> have = new HashSet<>();
      for (AdapterVersion v : wanted) {
        String id = v.getVersionId();
        try {
          String held = present.get(id);
          if (held == null) {
            loadOn(replica, v);
          } else if (!held.equals(v.getSha256())) {
            throw new LoadFailure(otherContent(replica, id, held, v.getSha256()));
          }
          have.add(id);
        } catch (LoadFailure f) {
          if (id.equals(active)) {
            throw f;
          }
          log.warn("replica {} joins without version {} (kept for rollback): {}", replica.name(), id, f.getMessage());
        }
      }
      if (caughtUp) {
        unloadStale(replica, present.keySet(), have);
      }
      if (replica.finishJoin(have)) {
        log.info("engine replica {} in service with active version {} ({} adapters)", replica.name(), label(active),
            have.size());
        rollout.replicaJoined();
        onServingChange.run();
      }
    } catch (LoadFailure | StatusRuntimeException e) {
      String reason = "join failed: " + e.getMessage();
      boolean news = !reason.equals(replica.downReason());
      replica.markDown(reason);
      if (news) {
        log.warn("engine replica {} cannot join yet: {}", replica.name(), e.getMessage());
      }
      return;
    }
    advance();
  }

  /** The adapters {@code replica} holds, name to sha256 (the digest it verified when it loaded each). */
  private static Map<String, String> listAdapters(EngineReplica replica) {
    Map<String, String> held = new HashMap<>();
    for (AdapterInfo a : replica.blocking().withDeadlineAfter(LIST_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS)
        .listAdapters(ListAdaptersRequest.getDefaultInstance()).getAdaptersList()) {
      held.put(a.getName(), a.getSha256());
    }
    return held;
  }

  /** The digest the rollout expects under version id {@code id}, if it knows the version. */
  Optional<String> expectedDigest(String id) {
    return rollout.view(id).map(v -> v.spec().getSha256());
  }

  /** Why a replica that holds {@code id} with another digest cannot serve it. */
  static String otherContent(EngineReplica replica, String id, String held, String expected) {
    return replica.name() + ": holds " + id + " with sha256 " + shortDigest(held) + ", not the published "
        + shortDigest(expected) + " (one version id names one content; the engine must unload or restart before it "
        + "can load the published one)";
  }

  private static String shortDigest(String sha256) {
    return sha256.isEmpty() ? "(none)" : sha256.substring(0, Math.min(12, sha256.length())) + "...";
  }

  /**
   * Unloads what this service does not keep but the engine still holds: versions of the topic that are neither
   * active nor kept for rollback, typically left by an earlier run of this service. Names unknown to the topic are
   * left alone (they are not ours to manage).
   */
  private void unloadStale(EngineReplica replica, Set<String> present, Set<String> keep) {
    for (String name : present) {
      Optional<VersionView> v = rollout.view(name);
      if (v.isPresent() && !keep.contains(name) && !v.get().loaded()) {
        log.info("unloading {} from {}: not kept by this service", name, replica.name());
        unloadOn(replica, name);
      }
    }
  }

  /** Replicas that joined before the history was read keep what they had; now it is known what to keep. */
  private void sweepStaleAdapters() {
    for (EngineReplica r : router.inService()) {
      try {
        unloadStale(r, listAdapters(r).keySet(), r.adapters());
      } catch (StatusRuntimeException e) {
        log.warn("cannot list the adapters of {}: {}", r.name(), e.getStatus());
      }
    }
  }

  /**
   * Why a version could not be loaded on some replica. {@code definite}: the replica refused it for good (the version
   * FAILS); otherwise no replica could take it for now (unreachable, deadline, busy: the load is retried later).
   */
  static class LoadFailure extends Exception {
    private final boolean definite;

    LoadFailure(String message) {
      this(message, true);
    }

    LoadFailure(String message, boolean definite) {
      super(message, null, false, false);
      this.definite = definite;
    }

    boolean definite() {
      return definite;
    }
  }

  /**
   * Codes with which an engine refuses a version for good; any other failure may pass. ALREADY_EXISTS is not one:
   * with the name listed, the digest decides; unlisted (loading or draining there), it may pass.
   */
  private static final Set<Status.Code> DEFINITE_REFUSALS = Set.of(Status.Code.INVALID_ARGUMENT,
      Status.Code.FAILED_PRECONDITION, Status.Code.NOT_FOUND, Status.Code.PERMISSION_DENIED, Status.Code.OUT_OF_RANGE,
      Status.Code.UNIMPLEMENTED);

  /**
   * Loads {@code v} on all {@code replicas} at once. A replica that refuses it for good fails the version: those
   * that took it unload it again. A replica that has become unreachable is taken out of service instead (it gets the
   * active version when it rejoins), as long as some replica took the version. When none took it, or one failed it
   * only for now (deadline, busy), nothing is decided: those that took it unload it and the load is deferred.
   */
  private void loadEverywhere(AdapterVersion v, List<EngineReplica> replicas) throws LoadFailure {
    String id = v.getVersionId();
    List<Future<?>> futures = new ArrayList<>();
    for (EngineReplica r : replicas) {
      futures.add(loads.submit(() -> {
        loadOn(r, v);
        return null;
      }));
    }
    List<EngineReplica> loaded = new ArrayList<>();
    List<String> refusals = new ArrayList<>();
    List<String> transients = new ArrayList<>();
    List<String> unreachable = new ArrayList<>();
    for (int i = 0; i < replicas.size(); i++) {
      EngineReplica r = replicas.get(i);
      try {
        futures.get(i).get();
        loaded.add(r);
      } catch (ExecutionException e) {
        Throwable cause = e.getCause();
        if (cause instanceof Unreachable u) {
          unreachable.add(u.getMessage());
          r.markDown(u.getMessage());
          log.warn("engine replica {} unreachable while loading {}; out of service until it rejoins: {}", r.name(),
              id, u.getMessage());
        } else if (cause instanceof LoadFailure f && !f.definite()) {
          transients.add(f.getMessage());
        } else {
          refusals.add(cause.getMessage());
        }
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        transients.add(r.name() + ": interrupted");
      }
    }
    if (!refusals.isEmpty() || !transients.isEmpty() || loaded.isEmpty()) {
      for (EngineReplica r : loaded) {
        unloadOn(r, id);
      }
      if (!refusals.isEmpty()) {
        throw new LoadFailure(String.join("; ", refusals));
      }
      List<String> why = new ArrayList<>(transients);
      if (loaded.isEmpty() && transients.isEmpty()) {
        why.add("no replica could be reached: " + String.join("; ", unreachable));
      }
      throw new LoadFailure(String.join("; ", why), false);
    }
    loaded.forEach(r -> r.addAdapter(id));
  }

  /** The replica did not answer (connection refused or reset): a fault of the replica, not of the version. */
  static final class Unreachable extends LoadFailure {
    Unreachable(String message) {
      super(message, false);
    }
  }

  private void loadOn(EngineReplica replica, AdapterVersion v) throws LoadFailure {
    LoadAdapterRequest request = LoadAdapterRequest.newBuilder()
        .setName(v.getVersionId()).setUri(v.getUri()).setSha256(v.getSha256()).build();
    for (int attempt = 1; ; attempt++) {
      try {
        replica.blocking().withDeadlineAfter(loadTimeout.toMillis(), TimeUnit.MILLISECONDS).loadAdapter(request);
        return;
      } catch (StatusRuntimeException e) {
        Status.Code code = e.getStatus().getCode();
        boolean retryable = code == Status.Code.UNAVAILABLE || code == Status.Code.DEADLINE_EXCEEDED
            || code == Status.Code.RESOURCE_EXHAUSTED || code == Status.Code.ABORTED;
        if (code == Status.Code.ALREADY_EXISTS) {
          // The name is taken there: by an earlier attempt that timed out here, by a load kept from before, or by
          // other content. Only the digest the engine verified tells which.
          String held;
          try {
            held = listAdapters(replica).get(v.getVersionId());
          } catch (StatusRuntimeException listFailed) {
            held = null; // the next attempt asks again
          }
          if (held != null && held.equals(v.getSha256())) {
            return;
          }
          if (held != null) {
            throw new LoadFailure(otherContent(replica, v.getVersionId(), held, v.getSha256()));
          }
          retryable = true; // not listed: still loading or draining there; the next attempt asks again
        }
        String reason = replica.name() + ": " + code + (e.getStatus().getDescription() == null ? ""
            : " " + e.getStatus().getDescription());
        if (!retryable || attempt >= loadAttempts) {
          if (code == Status.Code.UNAVAILABLE) {
            throw new Unreachable(reason);
          }
          throw new LoadFailure(reason + (attempt > 1 ? " (after " + attempt + " attempts)" : ""),
              DEFINITE_REFUSALS.contains(code));
        }
        log.info("loading {} on {} failed ({}), attempt {} of {}", v.getVersionId(), replica.name(), reason,
            attempt, loadAttempts);
        sleep(200L * attempt);
      }
    }
  }

  private void apply(Switch s) {
    if (!s.previous().equals(s.active())) {
      log.info("active adapter version: {} -> {}", label(s.previous()), label(s.active()));
    }
    for (String id : s.unload()) {
      for (EngineReplica r : router.replicas()) {
        if (r.adapters().contains(id)) {
          unloadOn(r, id);
        }
      }
    }
  }

  /** Stops routing {@code id} to {@code replica} and unloads it there; best effort (a failure costs memory only). */
  private void unloadOn(EngineReplica replica, String id) {
    replica.removeAdapter(id);
    replica.async().withDeadlineAfter(UNLOAD_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS)
        .unloadAdapter(UnloadAdapterRequest.newBuilder().setName(id).build(), new StreamObserver<>() {
          @Override
          public void onNext(UnloadAdapterResponse value) {}

          @Override
          public void onError(Throwable t) {
            log.warn("unloading {} from {} failed: {}", id, replica.name(), Status.fromThrowable(t));
          }

          @Override
          public void onCompleted() {
            log.debug("unloaded {} from {}", id, replica.name());
          }
        });
  }

  private <T> CompletableFuture<T> submit(Supplier<T> action) {
    CompletableFuture<T> result = new CompletableFuture<>();
    worker.execute(() -> {
      try {
        result.complete(action.get());
      } catch (RuntimeException e) {
        result.completeExceptionally(e);
      }
      advance();
    });
    return result;
  }

  static String label(String versionId) {
    return versionId.isEmpty() ? "base model" : versionId;
  }

  private static void sleep(long ms) {
    try {
      Thread.sleep(ms);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  private static java.util.concurrent.ThreadFactory daemon(String name) {
    return r -> {
      Thread t = new Thread(r, name);
      t.setDaemon(true);
      return t;
    };
  }

  @Override
  public void close() {
    worker.shutdownNow();
    loads.shutdownNow();
    try {
      worker.awaitTermination(5, TimeUnit.SECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }
}
