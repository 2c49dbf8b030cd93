package io.vllmtrain.streams;

/** What {@link RequestProcessor} and {@link CrossRequestProcessor} forward; the topology splits the stream by kind. */
sealed interface Emission {
  /** A preference pair with its registry encoding, keyed by pair id. */
  record Pair(EncodedPair encoded) implements Emission {}

  /** A rated response for the cross-request pairing, keyed by its {@link PromptKey}. */
  record Candidate(RatedResponse rated) implements Emission {}

  /** An input record that cannot be used: its original key and value bytes; the reason is in the headers. */
  record DeadLetter(byte[] key, byte[] value) implements Emission {}
}
