package io.vllmtrain.streams;

import io.vllmtrain.schemas.Topics;

/**
 * How large the records that the app writes besides batches may be, so that Kafka accepts every one of them
 * (batches: {@link BatchPolicy#maxBytes()}). A record over a limit is never sent: what would cause it goes to the
 * DLQ with a reason instead, and a dead letter over its limit keeps only the start of its value.
 *
 * @param stateMaxBytes      the largest state value (one request's prompt and responses, one request's feedback, a
 *                           prompt's cross-request candidates): one changelog record
 * @param deadLetterMaxBytes the largest dead letter, key, value and headers together
 */
public record RecordLimits(int stateMaxBytes, int deadLetterMaxBytes) {
  /** Room left in every limit for the record's framing in its batch (61-byte header, varints) and a short key. */
  static final int RECORD_OVERHEAD = 1024;
  public static final int DEFAULT_STATE_MAX_BYTES = 1024 * 1024;
  public static final RecordLimits DEFAULTS = new RecordLimits(DEFAULT_STATE_MAX_BYTES,
      Topics.DLQ.maxMessageBytes() - RECORD_OVERHEAD);

  public RecordLimits {
    PairingRules.require(stateMaxBytes >= 1024, "state max bytes must be >= 1024, got " + stateMaxBytes);
    PairingRules.require(deadLetterMaxBytes >= 64 * 1024, "dead letter max bytes must be >= 65536, got "
        + deadLetterMaxBytes);
  }
}
