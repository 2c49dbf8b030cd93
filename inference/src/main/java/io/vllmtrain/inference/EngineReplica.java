package io.vllmtrain.inference;

import io.grpc.Channel;
import io.vllmtrain.proto.v1.EngineServiceGrpc;
import java.util.HashSet;
import java.util.Set;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * One engine worker as the router sees it: its gRPC stubs, the requests outstanding on it, the adapters it has
 * loaded, and whether it may take traffic.
 *
 * <p>A replica starts DOWN. When its health check answers ready, it is JOINING: the rollout controller brings it to
 * the active version (and the versions kept for rollback); only then is it SERVING. Any failure puts it back DOWN,
 * and the next successful health check makes it join again.
 */
public final class EngineReplica {
  public enum State { DOWN, JOINING, SERVING }

  private final String name;
  private final EngineServiceGrpc.EngineServiceStub async;
  private final EngineServiceGrpc.EngineServiceBlockingStub blocking;
  private final AtomicInteger outstanding = new AtomicInteger();
  private volatile State state = State.DOWN;
  private volatile Set<String> adapters = Set.of();
  private volatile String downReason = "not checked yet";

  public EngineReplica(String name, Channel channel) {
    this.name = name;
    this.async = EngineServiceGrpc.newStub(channel);
    this.blocking = EngineServiceGrpc.newBlockingStub(channel);
  }

  /** The replica's address, as configured; its name in logs and metrics. */
  public String name() {
    return name;
  }

  public EngineServiceGrpc.EngineServiceStub async() {
    return async;
  }

  public EngineServiceGrpc.EngineServiceBlockingStub blocking() {
    return blocking;
  }

  public State state() {
    return state;
  }

  public String downReason() {
    return downReason;
  }

  public int outstanding() {
    return outstanding.get();
  }

  void requestStarted() {
    outstanding.incrementAndGet();
  }

  void requestFinished() {
    outstanding.decrementAndGet();
  }

  /** Whether a request for {@code adapter} ({@link AdapterRollout#BASE} for none) may go here now. */
  public boolean serves(String adapter) {
    return state == State.SERVING && (adapter.equals(AdapterRollout.BASE) || adapters.contains(adapter));
  }

  public Set<String> adapters() {
    return adapters;
  }

  /** DOWN → JOINING; false when it is joining or serving already. */
  synchronized boolean startJoin() {
    if (state != State.DOWN) {
      return false;
    }
    state = State.JOINING;
    return true;
  }

  /** JOINING → SERVING with the adapters it has now; false when it went down meanwhile. */
  synchronized boolean finishJoin(Set<String> loaded) {
    if (state != State.JOINING) {
      return false;
    }
    adapters = Set.copyOf(loaded);
    state = State.SERVING;
    return true;
  }

  /** Takes the replica out of service; returns whether it was serving. */
  synchronized boolean markDown(String reason) {
    boolean wasServing = state == State.SERVING;
    state = State.DOWN;
    downReason = reason;
    return wasServing;
  }

  synchronized void addAdapter(String name) {
    Set<String> next = new HashSet<>(adapters);
    next.add(name);
    adapters = Set.copyOf(next);
  }

  synchronized void removeAdapter(String name) {
    Set<String> next = new HashSet<>(adapters);
    next.remove(name);
    adapters = Set.copyOf(next);
  }

  @Override
  public String toString() {
    return name + "(" + state + ", outstanding " + outstanding.get() + ")";
  }
}
