package io.vllmtrain.streams;

import static io.vllmtrain.streams.Events.pairwise;
import static io.vllmtrain.streams.Events.prompt;
import static io.vllmtrain.streams.Events.rating;
import static io.vllmtrain.streams.Events.response;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.vllmtrain.events.FeedbackEvent;
import io.vllmtrain.events.PairSource;
import io.vllmtrain.events.PreferencePair;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The pairing rules as pure functions: values in, values out. */
class PreferencePairerTest {
  private final PreferencePairer pairer = new PreferencePairer(PairingRules.DEFAULTS);
  private static final long T = Events.T0.toEpochMilli();

  private static RequestEvents request(String requestId, String... responseIdAndText) {
    RequestEvents r = RequestEvents.empty(T).withPrompt(prompt(requestId, "prompt of " + requestId));
    for (int i = 0; i < responseIdAndText.length; i += 2) {
      r = r.withResponse(response(requestId, responseIdAndText[i], responseIdAndText[i + 1], null));
    }
    return r;
  }

  private static ReceivedFeedback received(FeedbackEvent f, long timestamp) {
    return new ReceivedFeedback(f, timestamp, new SourceRecord("llm.feedback", 0, 0, null, null));
  }

  /** Feeds ratings one by one and returns every pair formed. */
  private List<PreferencePair> rate(RequestEvents request, FeedbackEvent... ratings) {
    FeedbackState state = null;
    List<PreferencePair> pairs = new java.util.ArrayList<>();
    for (FeedbackEvent f : ratings) {
      PreferencePairer.Outcome o = pairer.onFeedback(request, state, received(f, T));
      state = o.state();
      pairs.addAll(o.pairs());
    }
    return pairs;
  }

  @Test
  void aRatingGapEqualToTheMarginPairsDespiteFloatingPointRounding() {
    RequestEvents q = request("q1", "r1", "a", "r2", "b");
    assertEquals(1, rate(q, rating("f1", "q1", "u1", "r1", 0.3), rating("f2", "q1", "u1", "r2", 0.05)).size());
    assertEquals(0, rate(q, rating("f1", "q1", "u1", "r1", 0.3), rating("f2", "q1", "u1", "r2", 0.06)).size());
  }

  @Test
  void usersWhoAgreeFormOnePairPerOrderedResponsePairAndTheWidestGapSupportsIt() {
    RequestEvents q = request("q1", "r1", "good", "r2", "bad");
    List<PreferencePair> pairs = rate(q,
        rating("f1", "q1", "u1", "r1", 0.8), rating("f2", "q1", "u2", "r1", 1.0),
        rating("f3", "q1", "u1", "r2", 0.0), rating("f4", "q1", "u2", "r2", 0.1));
    assertEquals(1, pairs.size());
    assertEquals(List.of("f2", "f3"), pairs.get(0).getFeedbackIds());
    assertEquals(1.0, pairs.get(0).getWeight(), 1e-9);
  }

  @Test
  void usersWhoDisagreeFormThePairInEachDirection() {
    RequestEvents q = request("q1", "r1", "terse", "r2", "verbose");
    List<String> pairs = rate(q,
        rating("f1", "q1", "u1", "r1", 1.0), rating("f2", "q1", "u1", "r2", 0.0),
        rating("f3", "q1", "u2", "r2", 1.0), rating("f4", "q1", "u2", "r1", 0.0)).stream().map(p -> p.getChosen() + ">" + p.getRejected()).toList();
    assertEquals(List.of("terse>verbose", "verbose>terse"), pairs);
  }

  @Test
  void feedbackWaitsInArrivalOrderAndIsAppliedWhenItsResponsesArrive() {
    RequestEvents partial = request("q1", "r1", "a");
    PreferencePairer.Outcome first = pairer.onFeedback(partial, null,
        received(rating("f1", "q1", "u1", "r2", 0.0), T));
    PreferencePairer.Outcome second = pairer.onFeedback(partial, first.state(),
        received(rating("f2", "q1", "u1", "r1", 1.0), T));
    assertEquals(PreferencePairer.Verdict.PENDING, first.verdict());
    assertEquals(PreferencePairer.Verdict.NO_PAIR, second.verdict(), "r1 is known: rated, nothing to pair with yet");

    PreferencePairer.Outcome done = pairer.onRequestChanged(request("q1", "r1", "a", "r2", "b"), second.state(), T + 5);
    assertEquals(1, done.pairs().size());
    assertEquals("a", done.pairs().get(0).getChosen());
    assertEquals(List.of(), done.state().pending());
    assertEquals(Events.T0.plusMillis(5), done.pairs().get(0).getCreatedAt(), "formed when r2 arrived");
  }

  @Test
  void waitingFeedbackIsRejectedOnceTheGracePeriodHasPassedAndStateIsDroppedAfterRetention() {
    PreferencePairer.Outcome waiting = pairer.onFeedback(null, null, received(pairwise("f1", "q1", "r1", "r2"), T));
    long grace = PairingRules.DEFAULTS.feedbackGrace().toMillis();

    assertEquals(List.of(), pairer.expire(null, waiting.state(), T + grace - 1).rejected());
    PreferencePairer.Outcome late = pairer.expire(null, waiting.state(), T + grace);
    assertEquals(1, late.rejected().size());
    assertEquals(DlqReason.UNKNOWN_RESPONSE, late.rejected().get(0).reason());
    assertEquals(List.of("f1"), late.state().seenIds(), "still remembered, so a repeat is not processed again");

    assertNull(pairer.expire(null, late.state(), T + Duration.ofDays(7).toMillis()).state());
  }

  private static RatedResponse rated(String requestId, String responseId, String user, double rating, long ts) {
    return new RatedResponse("k", requestId, responseId, "f-" + responseId + "-" + user, user, rating,
        "text of " + responseId, null, Events.BASE_MODEL, prompt(requestId, "same").getPrompt(), ts);
  }

  @Test
  void crossRequestRatingsPairOnlyWithOtherRequestsAndOnlyOncePerOrderedPair() {
    PreferencePairer.CrossOutcome a = pairer.offer(null, rated("q1", "r1", "u1", 1.0, T));
    PreferencePairer.CrossOutcome b = pairer.offer(a.set(), rated("q1", "r2", "u1", 0.0, T));
    assertEquals(List.of(), b.pairs(), "same request: that is the RATING rule's job");

    PreferencePairer.CrossOutcome c = pairer.offer(b.set(), rated("q2", "r3", "u2", 0.0, T));
    assertEquals(1, c.pairs().size());
    assertEquals(PairSource.RATING_CROSS_REQUEST, c.pairs().get(0).getSource());
    assertEquals("r1", c.pairs().get(0).getChosenResponseId());

    PreferencePairer.CrossOutcome again = pairer.offer(c.set(), rated("q2", "r3", "u2", 0.1, T));
    assertEquals(List.of(), again.pairs(), "a re-rating in the same direction adds nothing");
    assertEquals(3, again.set().candidates().size(), "the re-rating replaced the user's earlier one");
  }

  @Test
  void crossRequestCandidatesAreCappedToTheLatestAndExpireAfterRetention() {
    PairingRules rules = new PairingRules(0.25, true, 0.5, 2, 1.0, 1.0, Duration.ofMinutes(5), Duration.ofDays(1), 100,
        Duration.ofHours(1));
    PreferencePairer small = new PreferencePairer(rules);
    CandidateSet set = null;
    for (int i = 1; i <= 3; i++) {
      set = small.offer(set, rated("q" + i, "r" + i, "u" + i, 1.0, T + i)).set();
    }
    assertEquals(List.of("r2", "r3"), set.candidates().stream().map(RatedResponse::responseId).toList());
    assertNull(small.expire(set, T + 3 + Duration.ofDays(1).toMillis()));
    assertEquals(1, small.expire(set, T + 2 + Duration.ofDays(1).toMillis()).candidates().size());
  }

  @Test
  void pairIdsDependOnRuleResponsesAndFeedbackButNotOnFeedbackOrder() {
    String id = PreferencePairer.pairId(PairSource.RATING, "r1", "r2", List.of("f1", "f2"));
    assertEquals(id, PreferencePairer.pairId(PairSource.RATING, "r1", "r2", List.of("f2", "f1")));
    assertNotEquals(id, PreferencePairer.pairId(PairSource.RATING, "r2", "r1", List.of("f1", "f2")));
    assertNotEquals(id, PreferencePairer.pairId(PairSource.RATING_CROSS_REQUEST, "r1", "r2", List.of("f1", "f2")));
    assertNotEquals(id, PreferencePairer.pairId(PairSource.RATING, "r1", "r2", List.of("f1", "f3")));
    assertTrue(id.matches("[0-9a-f]{32}"));
  }
}
