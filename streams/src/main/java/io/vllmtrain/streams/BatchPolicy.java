package io.vllmtrain.streams;

import java.time.Duration;

/**
 * When {@link BatchAssembler} closes a batch: once it holds {@code size} pairs, or {@code maxWait} of wall-clock
 * time after its first pair arrived, whichever comes first.
 */
public record BatchPolicy(int size, Duration maxWait) {
  public static final BatchPolicy DEFAULTS = new BatchPolicy(32, Duration.ofSeconds(30));

  public BatchPolicy {
    PairingRules.require(size >= 1, "batch size must be >= 1, got " + size);
    PairingRules.require(maxWait.toMillis() >= 1, "batch max wait must be >= 1ms, got " + maxWait);
  }

  /** How often the wall-clock check runs: often enough that a batch is at most ~1/10 of maxWait late. */
  Duration checkInterval() {
    long ms = Math.max(10, Math.min(1000, maxWait.toMillis() / 10));
    return Duration.ofMillis(ms);
  }
}
