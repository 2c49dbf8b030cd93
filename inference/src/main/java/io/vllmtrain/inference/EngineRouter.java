package io.vllmtrain.inference;

import java.util.List;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * Chooses the engine replica for a request: among replicas in service that have the request's adapter loaded, the
 * one with the fewest requests outstanding; ties go round-robin so that an idle pool still spreads its load.
 * Replicas that are down or still joining get nothing.
 */
public final class EngineRouter {
  private final List<EngineReplica> replicas;
  private final AtomicInteger rotation = new AtomicInteger();

  public EngineRouter(List<EngineReplica> replicas) {
    if (replicas.isEmpty()) {
      throw new IllegalArgumentException("at least one engine replica is needed");
    }
    this.replicas = List.copyOf(replicas);
  }

  public List<EngineReplica> replicas() {
    return replicas;
  }

  /** The replica for a request on {@code adapter}, skipping {@code excluded} (replicas that failed it already). */
  public Optional<EngineReplica> pick(String adapter, Set<EngineReplica> excluded) {
    int n = replicas.size();
    int start = Math.floorMod(rotation.getAndIncrement(), n);
    EngineReplica best = null;
    int bestLoad = Integer.MAX_VALUE;
    for (int i = 0; i < n; i++) {
      EngineReplica r = replicas.get((start + i) % n);
      if (!r.serves(adapter) || excluded.contains(r)) {
        continue;
      }
      int load = r.outstanding();
      if (load < bestLoad) {
        best = r;
        bestLoad = load;
      }
    }
    return Optional.ofNullable(best);
  }

  /** Replicas that take traffic now. */
  public List<EngineReplica> inService() {
    return replicas.stream().filter(r -> r.state() == EngineReplica.State.SERVING).toList();
  }

  public boolean anyInService() {
    return replicas.stream().anyMatch(r -> r.state() == EngineReplica.State.SERVING);
  }
}
