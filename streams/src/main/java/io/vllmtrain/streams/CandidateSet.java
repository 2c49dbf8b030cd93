package io.vllmtrain.streams;

import java.util.List;

/**
 * The rated responses to one normalised prompt that new ratings from other requests may pair with.
 *
 * @param candidates   the latest rated responses, oldest first, at most {@code crossRequestCandidates}
 * @param emittedPairs {@code chosenResponseId>rejectedResponseId} of pairs already emitted among them
 */
record CandidateSet(List<RatedResponse> candidates, List<String> emittedPairs) {
  static final CandidateSet EMPTY = new CandidateSet(List.of(), List.of());

  CandidateSet {
    candidates = List.copyOf(candidates);
    emittedPairs = List.copyOf(emittedPairs);
  }

  /**
   * {@code kept} with the entries of {@code emitted} whose two responses are both still among them: a pair key of
   * a response no longer kept could only block a future pair of it.
   */
  static CandidateSet keeping(List<RatedResponse> kept, List<String> emitted) {
    java.util.Set<String> ids = new java.util.HashSet<>();
    kept.forEach(c -> ids.add(c.responseId()));
    return new CandidateSet(kept, emitted.stream().filter(key -> ids.containsAll(List.of(key.split(">", 2)))).toList());
  }

  /** The set without its oldest candidate. */
  CandidateSet withoutOldest() {
    return keeping(candidates.subList(1, candidates.size()), emittedPairs);
  }

  long oldestTimestamp() {
    return candidates.stream().mapToLong(RatedResponse::timestamp).min().orElse(Long.MAX_VALUE);
  }
}
