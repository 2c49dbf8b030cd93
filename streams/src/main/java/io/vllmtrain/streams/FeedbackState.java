package io.vllmtrain.streams;

import java.util.List;

/**
 * The feedback memory of one request.
 *
 * @param firstSeenMs   record time of the first feedback; forgotten {@code retention} after it
 * @param seenIds       feedback ids already taken in (processed or pending), so a repeat is processed once
 * @param ratings       the current rating of each (user, response)
 * @param emittedRatingPairs {@code chosenResponseId>rejectedResponseId} of rating pairs already emitted
 * @param pending       feedback waiting for its prompt or responses, in arrival order
 */
record FeedbackState(long firstSeenMs, List<String> seenIds, List<RatingFact> ratings,
                     List<String> emittedRatingPairs, List<ReceivedFeedback> pending) {
  FeedbackState {
    seenIds = List.copyOf(seenIds);
    ratings = List.copyOf(ratings);
    emittedRatingPairs = List.copyOf(emittedRatingPairs);
    pending = List.copyOf(pending);
  }

  static FeedbackState empty(long firstSeenMs) {
    return new FeedbackState(firstSeenMs, List.of(), List.of(), List.of(), List.of());
  }
}
