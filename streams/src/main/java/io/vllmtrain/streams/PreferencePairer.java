package io.vllmtrain.streams;

import io.vllmtrain.events.FeedbackEvent;
import io.vllmtrain.events.PairSource;
import io.vllmtrain.events.PreferencePair;
import io.vllmtrain.events.Prompt;
import io.vllmtrain.events.PromptEvent;
import io.vllmtrain.events.ResponseEvent;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The pairing rules, as pure functions of values (no Kafka, no stores): what a feedback event, given what is known
 * about its request, turns into.
 *
 * <ul>
 *   <li>PAIRWISE: one pair, the chosen response over the rejected one.
 *   <li>RATING: ratings are kept per (user, response), a later one replacing the earlier. A new rating pairs with
 *       the current ratings of the request's other responses that differ by at least the rating margin; the higher
 *       is chosen and the pair weighs the rating gap. Each ordered (chosen, rejected) response pair is emitted once
 *       per request; a re-rating that reverses the order emits the reversed pair. With cross-request pairing on, the
 *       rating is also offered to {@link #offer} for responses to the same normalised prompt in other requests.
 *   <li>EDIT: the edited text is chosen over the original response.
 *   <li>A repeated feedback id is ignored; a pair never has the same text (ignoring surrounding white space) on both
 *       sides; feedback whose prompt or responses have not arrived waits up to the grace period, then is rejected.
 *   <li>A request takes at most {@code feedbackPerRequest} feedback events; more are rejected. Feedback on a request
 *       never seen is forgotten {@code orphanRetention} after the first (what still waits then is rejected), not
 *       after the full retention.
 * </ul>
 *
 * <p>Pair ids hash the rule, the response ids and the feedback ids, so a replay forms the same ids; a pair's
 * {@code created_at} is the record time of the event that completed it, for the same reason.
 */
public final class PreferencePairer {
  /** What became of an incoming feedback event. */
  public enum Verdict { PAIRED, NO_PAIR, PENDING, DUPLICATE, REFUSED }

  /** Feedback given up on, with the reason it goes to the DLQ. */
  record Rejection(ReceivedFeedback feedback, DlqReason reason, String detail) {}

  /**
   * The result of one step for one request.
   *
   * @param state    the request's feedback state afterwards; null when it is to be deleted
   * @param verdict  the incoming feedback's fate; null for steps without one
   * @param formedBy pair id → the feedback whose arrival (or whose responses' arrival) completed that pair
   */
  record Outcome(FeedbackState state, List<PreferencePair> pairs, List<RatedResponse> rated,
                 List<Rejection> rejected, Verdict verdict, Map<String, ReceivedFeedback> formedBy) {
    Outcome(FeedbackState state, Verdict verdict) {
      this(state, List.of(), List.of(), List.of(), verdict, Map.of());
    }
  }

  /** The result of offering a rated response to the cross-request candidates; {@code set} null = delete. */
  record CrossOutcome(CandidateSet set, List<PreferencePair> pairs) {}

  private static final double EPSILON = 1e-9;

  private final PairingRules rules;

  public PreferencePairer(PairingRules rules) {
    this.rules = rules;
  }

  public PairingRules rules() {
    return rules;
  }

  /** Takes in one valid feedback event; {@code request} and {@code state} may be null when nothing is known yet. */
  Outcome onFeedback(RequestEvents request, FeedbackState state, ReceivedFeedback feedback) {
    FeedbackState before = state != null ? state : FeedbackState.empty(feedback.timestamp());
    if (before.seenIds().contains(feedback.id())) {
      return new Outcome(before, Verdict.DUPLICATE);
    }
    if (before.seenIds().size() >= rules.feedbackPerRequest()) {
      return new Outcome(before, List.of(), List.of(), List.of(new Rejection(feedback, DlqReason.FEEDBACK_LIMIT,
          "request " + feedback.event().getRequestId() + " already has " + before.seenIds().size()
              + " feedback events, the most one request takes (" + StreamsAppConfig.FEEDBACK_PER_REQUEST + " = "
              + rules.feedbackPerRequest() + ")")), Verdict.REFUSED, Map.of());
    }
    Step step = new Step(before);
    step.seenIds.add(feedback.id());
    Verdict verdict;
    if (step.apply(request, feedback, feedback.timestamp())) {
      verdict = step.pairs.isEmpty() ? Verdict.NO_PAIR : Verdict.PAIRED;
    } else {
      step.pending.add(feedback);
      verdict = Verdict.PENDING;
    }
    return step.outcome(verdict);
  }

  /** Retries waiting feedback, in arrival order, after the prompt or a response of the request arrived. */
  Outcome onRequestChanged(RequestEvents request, FeedbackState state, long timestamp) {
    if (state == null || state.pending().isEmpty()) {
      return new Outcome(state, null);
    }
    Step step = new Step(state);
    step.pending.clear();
    for (ReceivedFeedback waiting : state.pending()) {
      if (!step.apply(request, waiting, timestamp)) {
        step.pending.add(waiting);
      }
    }
    return step.outcome(null);
  }

  /**
   * At stream time {@code now}: rejects feedback that waited past the grace period; drops the feedback state once
   * it, or the request it belongs to, is past retention, or once it is past the orphan retention while its request
   * was never seen (rejecting what still waits).
   */
  Outcome expire(RequestEvents request, FeedbackState state, long now) {
    if (state == null) {
      return new Outcome(null, null);
    }
    Step step = new Step(state);
    step.pending.clear();
    boolean orphan = request == null && now >= orphanDeadline(state.firstSeenMs());
    boolean forget = orphan || expired(state.firstSeenMs(), now)
        || (request != null && expired(request.firstSeenMs(), now));
    for (ReceivedFeedback waiting : state.pending()) {
      if (orphan) {
        step.rejected.add(new Rejection(waiting, DlqReason.UNKNOWN_RESPONSE, missing(request, waiting.event())
            + " did not arrive: feedback on a request never seen is kept for " + rules.orphanRetention() + " ("
            + StreamsAppConfig.ORPHAN_RETENTION + ")"));
      } else if (forget || pendingDeadline(waiting) <= now) {
        step.rejected.add(new Rejection(waiting, DlqReason.UNKNOWN_RESPONSE, missing(request, waiting.event())
            + " did not arrive within " + rules.feedbackGrace() + " of the feedback (requests are kept for "
            + rules.retention() + ")"));
      } else {
        step.pending.add(waiting);
      }
    }
    Outcome out = step.outcome(null);
    return forget ? new Outcome(null, out.pairs(), out.rated(), out.rejected(), null, out.formedBy()) : out;
  }

  /** Whether something first seen at {@code firstSeenMs} has left retention at stream time {@code now}. */
  boolean expired(long firstSeenMs, long now) {
    return now - firstSeenMs >= rules.retention().toMillis();
  }

  long pendingDeadline(ReceivedFeedback feedback) {
    return feedback.timestamp() + rules.feedbackGrace().toMillis();
  }

  long retentionDeadline(long firstSeenMs) {
    return firstSeenMs + rules.retention().toMillis();
  }

  /** When feedback state first seen at {@code firstSeenMs} is forgotten if its request has not been seen by then. */
  long orphanDeadline(long firstSeenMs) {
    return firstSeenMs + rules.orphanRetention().toMillis();
  }

  /** Cross-request rule: pairs {@code incoming} with candidates from other requests, then keeps it as one. */
  CrossOutcome offer(CandidateSet set, RatedResponse incoming) {
    long now = incoming.timestamp();
    List<RatedResponse> candidates = new ArrayList<>();
    for (RatedResponse c : set == null ? List.<RatedResponse>of() : set.candidates()) {
      boolean replaced = c.responseId().equals(incoming.responseId())
          && java.util.Objects.equals(c.userId(), incoming.userId());
      if (!replaced && !expired(c.timestamp(), now)) {
        candidates.add(c);
      }
    }
    Set<String> emitted = new LinkedHashSet<>(set == null ? List.of() : set.emittedPairs());
    List<PreferencePair> pairs = new ArrayList<>();
    Map<String, List<RatedResponse>> byResponse = new LinkedHashMap<>();
    for (RatedResponse c : candidates) {
      if (!c.requestId().equals(incoming.requestId())) {
        byResponse.computeIfAbsent(c.responseId(), k -> new ArrayList<>()).add(c);
      }
    }
    for (List<RatedResponse> other : byResponse.values()) {
      RatedResponse lowest = other.stream().min(LOWEST_FIRST).orElseThrow();
      RatedResponse highest = other.stream().min(HIGHEST_FIRST).orElseThrow();
      if (incoming.rating() - lowest.rating() >= rules.crossRequestMargin() - EPSILON) {
        crossPair(incoming, lowest, emitted, now).ifPresent(pairs::add);
      }
      if (highest.rating() - incoming.rating() >= rules.crossRequestMargin() - EPSILON) {
        crossPair(highest, incoming, emitted, now).ifPresent(pairs::add);
      }
    }
    candidates.add(incoming);
    while (candidates.size() > rules.crossRequestCandidates()) {
      candidates.remove(0);
    }
    return new CrossOutcome(CandidateSet.keeping(candidates, new ArrayList<>(emitted)), pairs);
  }

  /** Drops candidates past retention at stream time {@code now}; null when none is left. */
  CandidateSet expire(CandidateSet set, long now) {
    if (set == null) {
      return null;
    }
    List<RatedResponse> kept = set.candidates().stream().filter(c -> !expired(c.timestamp(), now)).toList();
    return kept.isEmpty() ? null : CandidateSet.keeping(kept, set.emittedPairs());
  }

  // Lowest/highest rating first, ties broken by feedback id so that the choice is deterministic.
  private static final Comparator<RatedResponse> LOWEST_FIRST =
      Comparator.comparingDouble(RatedResponse::rating).thenComparing(RatedResponse::feedbackId);
  private static final Comparator<RatedResponse> HIGHEST_FIRST =
      Comparator.comparingDouble(RatedResponse::rating).reversed().thenComparing(RatedResponse::feedbackId);
  private static final Comparator<RatingFact> LOWEST_FACT_FIRST =
      Comparator.comparingDouble(RatingFact::rating).thenComparing(RatingFact::feedbackId);
  private static final Comparator<RatingFact> HIGHEST_FACT_FIRST =
      Comparator.comparingDouble(RatingFact::rating).reversed().thenComparing(RatingFact::feedbackId);

  private java.util.Optional<PreferencePair> crossPair(RatedResponse chosen, RatedResponse rejected,
                                                       Set<String> emitted, long now) {
    String key = chosen.responseId() + ">" + rejected.responseId();
    if (sameText(chosen.text(), rejected.text()) || !emitted.add(key)) {
      return java.util.Optional.empty();
    }
    return java.util.Optional.of(pair(PairSource.RATING_CROSS_REQUEST, chosen.requestId(), chosen.baseModel(),
        chosen.prompt(), chosen.text(), rejected.text(), chosen.responseId(), rejected.responseId(),
        chosen.adapterVersion(), rejected.adapterVersion(), chosen.rating() - rejected.rating(),
        List.of(chosen.feedbackId(), rejected.feedbackId()), now));
  }

  /** Describes what a feedback event is still waiting for, or null when its request has everything. */
  static String missing(RequestEvents request, FeedbackEvent f) {
    if (request == null || request.prompt() == null) {
      return "the prompt of request " + f.getRequestId();
    }
    List<String> ids = switch (f.getKind()) {
      case PAIRWISE -> List.of(f.getChosenResponseId(), f.getRejectedResponseId());
      case RATING, EDIT -> List.of(f.getResponseId());
    };
    List<String> absent = ids.stream().filter(id -> request.response(id) == null).toList();
    return absent.isEmpty() ? null
        : "response" + (absent.size() > 1 ? "s " : " ") + String.join(", ", absent) + " of request " + f.getRequestId();
  }

  static boolean sameText(String a, String b) {
    return a.strip().equals(b.strip());
  }

  static String pairId(PairSource source, String chosenResponseId, String rejectedResponseId,
                       List<String> feedbackIds) {
    List<String> parts = new ArrayList<>();
    parts.add(source.name());
    parts.add(chosenResponseId == null ? "" : chosenResponseId);
    parts.add(rejectedResponseId);
    feedbackIds.stream().sorted().forEach(parts::add);
    return Hashing.id(parts);
  }

  static PreferencePair pair(PairSource source, String requestId, String baseModel, Prompt prompt, String chosen,
                             String rejected, String chosenResponseId, String rejectedResponseId,
                             String chosenAdapter, String rejectedAdapter, double weight,
                             List<String> feedbackIds, long timestamp) {
    return PreferencePair.newBuilder()
        .setPairId(pairId(source, chosenResponseId, rejectedResponseId, feedbackIds))
        .setRequestId(requestId)
        .setBaseModel(baseModel)
        .setPrompt(prompt)
        .setChosen(chosen)
        .setRejected(rejected)
        .setChosenResponseId(chosenResponseId)
        .setRejectedResponseId(rejectedResponseId)
        .setChosenAdapterVersion(chosenAdapter)
        .setRejectedAdapterVersion(rejectedAdapter)
        .setSource(source)
        .setWeight(weight)
        .setFeedbackIds(List.copyOf(feedbackIds))
        .setCreatedAt(Instant.ofEpochMilli(timestamp))
        .build();
  }

  /** The mutable working copy of one request's feedback state during one step. */
  private final class Step {
    final long firstSeenMs;
    final List<String> seenIds;
    final List<RatingFact> ratings;
    final Set<String> emitted;
    final List<ReceivedFeedback> pending;
    final List<PreferencePair> pairs = new ArrayList<>();
    final Map<String, ReceivedFeedback> formedBy = new LinkedHashMap<>();
    final List<RatedResponse> rated = new ArrayList<>();
    final List<Rejection> rejected = new ArrayList<>();

    Step(FeedbackState s) {
      firstSeenMs = s.firstSeenMs();
      seenIds = new ArrayList<>(s.seenIds());
      ratings = new ArrayList<>(s.ratings());
      emitted = new LinkedHashSet<>(s.emittedRatingPairs());
      pending = new ArrayList<>(s.pending());
    }

    Outcome outcome(Verdict verdict) {
      FeedbackState s = new FeedbackState(firstSeenMs, seenIds, ratings, new ArrayList<>(emitted), pending);
      return new Outcome(s, pairs, rated, rejected, verdict, formedBy);
    }

    private void add(PreferencePair pair, ReceivedFeedback by) {
      pairs.add(pair);
      formedBy.put(pair.getPairId(), by);
    }

    /** Applies one feedback event; false when its prompt or responses are not all known yet. */
    boolean apply(RequestEvents request, ReceivedFeedback received, long timestamp) {
      FeedbackEvent f = received.event();
      if (missing(request, f) != null) {
        return false;
      }
      PromptEvent prompt = request.prompt();
      switch (f.getKind()) {
        case PAIRWISE -> {
          ResponseEvent chosen = request.response(f.getChosenResponseId());
          ResponseEvent rejected = request.response(f.getRejectedResponseId());
          if (!sameText(chosen.getText(), rejected.getText())) {
            add(pair(PairSource.PAIRWISE, prompt, chosen, rejected, rules.pairwiseWeight(),
                List.of(f.getFeedbackId()), timestamp), received);
          }
        }
        case EDIT -> {
          ResponseEvent original = request.response(f.getResponseId());
          if (!sameText(f.getEditedText(), original.getText())) {
            add(PreferencePairer.pair(PairSource.EDIT, prompt.getRequestId(), prompt.getBaseModel(),
                prompt.getPrompt(), f.getEditedText(), original.getText(), null, original.getResponseId(), null,
                original.getAdapterVersion(), rules.editWeight(), List.of(f.getFeedbackId()), timestamp), received);
          }
        }
        case RATING -> rate(request, received, timestamp);
      }
      return true;
    }

    private void rate(RequestEvents request, ReceivedFeedback received, long timestamp) {
      FeedbackEvent f = received.event();
      RatingFact fact = new RatingFact(f.getFeedbackId(), f.getUserId(), f.getResponseId(), f.getRating());
      ratings.removeIf(r -> r.sameRater(fact.userId(), fact.responseId()));
      ratings.add(fact);
      ResponseEvent self = request.response(fact.responseId());
      for (ResponseEvent other : request.responses()) {
        if (other.getResponseId().equals(self.getResponseId())) {
          continue;
        }
        List<RatingFact> onOther = ratings.stream().filter(r -> r.responseId().equals(other.getResponseId())).toList();
        if (onOther.isEmpty()) {
          continue;
        }
        RatingFact lowest = onOther.stream().min(LOWEST_FACT_FIRST).orElseThrow();
        RatingFact highest = onOther.stream().min(HIGHEST_FACT_FIRST).orElseThrow();
        if (fact.rating() - lowest.rating() >= rules.ratingMargin() - EPSILON) {
          ratingPair(request.prompt(), self, fact, other, lowest, timestamp, received);
        }
        if (highest.rating() - fact.rating() >= rules.ratingMargin() - EPSILON) {
          ratingPair(request.prompt(), other, highest, self, fact, timestamp, received);
        }
      }
      if (rules.crossRequestEnabled()) {
        PromptEvent p = request.prompt();
        rated.add(new RatedResponse(PromptKey.of(p.getBaseModel(), p.getPrompt()), p.getRequestId(),
            self.getResponseId(), fact.feedbackId(), fact.userId(), fact.rating(), self.getText(),
            self.getAdapterVersion(), p.getBaseModel(), p.getPrompt(), timestamp));
      }
    }

    private void ratingPair(PromptEvent prompt, ResponseEvent chosen, RatingFact chosenFact, ResponseEvent rejected,
                            RatingFact rejectedFact, long timestamp, ReceivedFeedback received) {
      if (sameText(chosen.getText(), rejected.getText())
          || !emitted.add(chosen.getResponseId() + ">" + rejected.getResponseId())) {
        return;
      }
      add(pair(PairSource.RATING, prompt, chosen, rejected, chosenFact.rating() - rejectedFact.rating(),
          List.of(chosenFact.feedbackId(), rejectedFact.feedbackId()), timestamp), received);
    }

    private PreferencePair pair(PairSource source, PromptEvent prompt, ResponseEvent chosen, ResponseEvent rejected,
                                double weight, List<String> feedbackIds, long timestamp) {
      return PreferencePairer.pair(source, prompt.getRequestId(), prompt.getBaseModel(), prompt.getPrompt(),
          chosen.getText(), rejected.getText(), chosen.getResponseId(), rejected.getResponseId(),
          chosen.getAdapterVersion(), rejected.getAdapterVersion(), weight, feedbackIds, timestamp);
    }
  }
}
