package io.vllmtrain.streams;

/** Why a record went to {@code llm.dlq}; the {@code dlq.reason} header is {@code CODE: detail}. */
public enum DlqReason {
  /** The value is not a registry-framed Avro record, or its schema id is unknown to the registry. */
  UNDECODABLE,
  /** The value decodes, but to a record type that does not belong on this topic. */
  WRONG_TYPE,
  /** The record has no key; every event topic is keyed by request id. */
  MISSING_KEY,
  /** The key is not the record's request id, so it would land on the wrong partition for the join. */
  KEY_MISMATCH,
  /** A required id or field is missing or out of range. */
  INVALID,
  /**
   * Feedback whose prompt or response(s) did not arrive within the grace period (or had left retention, or its
   * request was never seen within the orphan retention).
   */
  UNKNOWN_RESPONSE,
  /** The record would make a state value of its request larger than {@code streams.state.max.bytes}. */
  STATE_TOO_LARGE,
  /** The feedback completes a pair too large for a batch of its own ({@code streams.batch.max.bytes}). */
  PAIR_TOO_LARGE,
  /** The request already has {@code streams.feedback.max.per.request} feedback events. */
  FEEDBACK_LIMIT,
  /** The record made the app fail in a way the rules did not foresee; kept so that nothing is lost. */
  PROCESSING_ERROR;

  String header(String detail) {
    return name() + ": " + detail;
  }
}
