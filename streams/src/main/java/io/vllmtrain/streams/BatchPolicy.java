package io.vllmtrain.streams;

import java.time.Duration;

/**
 * When {@link BatchAssembler} closes a batch: once it holds {@code size} pairs, or {@code maxWait} of wall-clock
 * time after its first pair arrived, whichever comes first; and before a pair would take it over {@code maxBytes}
 * (that pair starts the next batch). A pair that does not fit in a batch on its own goes to the DLQ instead.
 *
 * @param maxBytes the largest batch value in bytes (its registry encoding), below the batches topic's and the
 *                 producer's record limit
 */
public record BatchPolicy(int size, Duration maxWait, int maxBytes) {
  public static final int DEFAULT_MAX_BYTES = 4 * 1024 * 1024;
  public static final BatchPolicy DEFAULTS = new BatchPolicy(32, Duration.ofSeconds(30), DEFAULT_MAX_BYTES);

  public BatchPolicy {
    PairingRules.require(size >= 1, "batch size must be >= 1, got " + size);
    PairingRules.require(maxWait.toMillis() >= 1, "batch max wait must be >= 1ms, got " + maxWait);
    PairingRules.require(maxBytes >= 1024, "batch max bytes must be >= 1024, got " + maxBytes);
  }

  public BatchPolicy(int size, Duration maxWait) {
    this(size, maxWait, DEFAULT_MAX_BYTES);
  }

  /** Whether pairs whose encodings take {@code pairBytes} bytes in all fit in one batch. */
  boolean fits(long pairBytes) {
    return BatchEncoder.BATCH_OVERHEAD + pairBytes <= maxBytes;
  }

  /** How often the wall-clock check runs: often enough that a batch is at most ~1/10 of maxWait late. */
  Duration checkInterval() {
    long ms = Math.max(10, Math.min(1000, maxWait.toMillis() / 10));
    return Duration.ofMillis(ms);
  }
}
