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

  long oldestTimestamp() {
    return candidates.stream().mapToLong(RatedResponse::timestamp).min().orElse(Long.MAX_VALUE);
  }
}
