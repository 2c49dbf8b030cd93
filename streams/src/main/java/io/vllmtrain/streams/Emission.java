package io.vllmtrain.streams;

import io.vllmtrain.events.PreferencePair;

/** What {@link RequestProcessor} forwards; the topology splits the stream by kind. */
sealed interface Emission {
  /** A preference pair, keyed by pair id. */
  record Pair(PreferencePair pair) implements Emission {}

  /** A rated response for the cross-request pairing, keyed by its {@link PromptKey}. */
  record Candidate(RatedResponse rated) implements Emission {}

  /** An input record that cannot be used: its original key and value bytes; the reason is in the headers. */
  record DeadLetter(byte[] key, byte[] value) implements Emission {}
}
