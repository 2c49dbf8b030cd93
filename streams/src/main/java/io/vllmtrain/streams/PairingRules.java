package io.vllmtrain.streams;

import java.time.Duration;

/**
 * The knobs of the pairing rules (see {@link PreferencePairer}).
 *
 * @param ratingMargin            two ratings of responses to one request pair when they differ by at least this
 *                                (ratings are in [0, 1]; thumbs up/down differ by 1)
 * @param crossRequestEnabled     whether rated responses to the same normalised prompt from different requests pair
 * @param crossRequestMargin      the rating gap needed for a cross-request pair
 * @param crossRequestCandidates  how many of the latest rated responses per prompt are kept to pair with
 * @param pairwiseWeight          weight of a PAIRWISE pair
 * @param editWeight              weight of an EDIT pair
 * @param feedbackGrace           how long feedback waits for the prompt and responses it refers to
 * @param retention               how long a request's prompt, responses and feedback are kept for late feedback
 * @param feedbackPerRequest      how many feedback events one request takes; more go to the DLQ
 * @param orphanRetention         how long feedback on a request never seen (no prompt, no response) is kept
 */
public record PairingRules(
    double ratingMargin,
    boolean crossRequestEnabled,
    double crossRequestMargin,
    int crossRequestCandidates,
    double pairwiseWeight,
    double editWeight,
    Duration feedbackGrace,
    Duration retention,
    int feedbackPerRequest,
    Duration orphanRetention) {

  public static final PairingRules DEFAULTS = new PairingRules(0.25, true, 0.5, 16, 1.0, 1.0,
      Duration.ofMinutes(5), Duration.ofDays(7), 100, Duration.ofHours(1));

  public PairingRules {
    require(ratingMargin > 0 && ratingMargin <= 1, "rating margin must be in (0, 1], got " + ratingMargin);
    require(crossRequestMargin > 0 && crossRequestMargin <= 1,
        "cross-request margin must be in (0, 1], got " + crossRequestMargin);
    require(crossRequestCandidates >= 1, "cross-request candidates must be >= 1, got " + crossRequestCandidates);
    require(pairwiseWeight > 0, "pairwise weight must be > 0, got " + pairwiseWeight);
    require(editWeight > 0, "edit weight must be > 0, got " + editWeight);
    require(!feedbackGrace.isNegative(), "feedback grace must not be negative, got " + feedbackGrace);
    require(retention.compareTo(feedbackGrace) > 0, "retention (" + retention
        + ") must be longer than the feedback grace (" + feedbackGrace + ")");
    require(feedbackPerRequest >= 1, "feedback per request must be >= 1, got " + feedbackPerRequest);
    require(orphanRetention.compareTo(feedbackGrace) >= 0 && orphanRetention.compareTo(retention) <= 0,
        "orphan retention (" + orphanRetention + ") must be at least the feedback grace (" + feedbackGrace
            + ") and at most the retention (" + retention + ")");
  }

  public PairingRules withCrossRequest(boolean enabled) {
    return new PairingRules(ratingMargin, enabled, crossRequestMargin, crossRequestCandidates, pairwiseWeight,
        editWeight, feedbackGrace, retention, feedbackPerRequest, orphanRetention);
  }

  static void require(boolean ok, String message) {
    if (!ok) {
      throw new IllegalArgumentException(message);
    }
  }
}
