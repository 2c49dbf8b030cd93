package io.vllmtrain.streams;

/** The rating a user currently gives a response; a later rating by the same user of the same response replaces it. */
record RatingFact(String feedbackId, String userId, String responseId, double rating) {
  /** Anonymous ratings (no user id) count as one user. */
  boolean sameRater(String otherUserId, String otherResponseId) {
    return responseId.equals(otherResponseId) && java.util.Objects.equals(userId, otherUserId);
  }
}
