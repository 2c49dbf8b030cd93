package io.vllmtrain.streams;

import java.time.Duration;

/**
 * Pauses between retries that double from {@code first} up to {@code max} while failures keep coming, and start
 * again from {@code first} once none came for twice the longest pause. Thread-safe.
 */
final class Backoff {
  private final Duration first;
  private final Duration max;
  private long lastFailureNanos = Long.MIN_VALUE;
  private Duration current;

  Backoff(Duration first, Duration max) {
    this.first = first;
    this.max = max;
  }

  /** The pause after a failure at {@code nowNanos} (System.nanoTime). */
  synchronized Duration next(long nowNanos) {
    boolean quietSince = lastFailureNanos == Long.MIN_VALUE || nowNanos - lastFailureNanos > max.toNanos() * 2;
    current = quietSince || current == null ? first : min(current.multipliedBy(2), max);
    lastFailureNanos = nowNanos;
    return current;
  }

  private static Duration min(Duration a, Duration b) {
    return a.compareTo(b) <= 0 ? a : b;
  }
}
