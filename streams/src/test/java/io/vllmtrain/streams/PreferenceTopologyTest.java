package io.vllmtrain.streams;

import static io.vllmtrain.streams.Events.T0;
import static io.vllmtrain.streams.Events.edit;
import static io.vllmtrain.streams.Events.pairwise;
import static io.vllmtrain.streams.Events.prompt;
import static io.vllmtrain.streams.Events.rating;
import static io.vllmtrain.streams.Events.response;
import static io.vllmtrain.streams.Events.thumbsDown;
import static io.vllmtrain.streams.Events.thumbsUp;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.vllmtrain.events.FeedbackEvent;
import io.vllmtrain.events.PairSource;
import io.vllmtrain.events.PreferenceBatch;
import io.vllmtrain.events.PreferencePair;
import io.vllmtrain.schemas.Topics;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.streams.test.TestRecord;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The behaviour of the streams app, one rule per test, driven through the real topology. */
class PreferenceTopologyTest {
  @TempDir
  Path stateDir;

  private PipelineDriver app;

  private PipelineDriver app() {
    return app(PairingRules.DEFAULTS, new BatchPolicy(1000, Duration.ofHours(1)));
  }

  private PipelineDriver app(PairingRules rules, BatchPolicy batching) {
    app = new PipelineDriver(rules, batching, stateDir);
    return app;
  }

  @AfterEach
  void close() {
    if (app != null) {
      app.close();
    }
  }

  @Test
  void pairwiseChoiceFormsOnePairWithTheAdapterVersionOfEachSide() {
    app().request(prompt("q1", "Name a prime."),
            response("q1", "r1", "Seven.", "run-a/v000003"),
            response("q1", "r2", "Nine.", null))
        .feedback(pairwise("f1", "q1", "r1", "r2"));

    List<PreferencePair> pairs = app.pairs();
    assertEquals(1, pairs.size());
    PreferencePair p = pairs.get(0);
    assertEquals("Seven.", p.getChosen());
    assertEquals("Nine.", p.getRejected());
    assertEquals("r1", p.getChosenResponseId());
    assertEquals("r2", p.getRejectedResponseId());
    assertEquals("run-a/v000003", p.getChosenAdapterVersion());
    assertNull(p.getRejectedAdapterVersion(), "the base model generated the rejected side");
    assertEquals(PairSource.PAIRWISE, p.getSource());
    assertEquals(1.0, p.getWeight());
    assertEquals(List.of("f1"), p.getFeedbackIds());
    assertEquals("q1", p.getRequestId());
    assertEquals("Name a prime.", p.getPrompt().getText());
    assertEquals(Events.BASE_MODEL, p.getBaseModel());
    assertEquals(T0, p.getCreatedAt());
  }

  @Test
  void ratingsOfTwoResponsesPairWhenTheyDifferByAtLeastTheMarginHigherChosenWeightedByTheGap() {
    app().request(prompt("q1", "Capital of France?"),
            response("q1", "r1", "Paris.", "run-a/v000001"), response("q1", "r2", "Lyon.", "run-a/v000002"))
        .feedback(rating("f1", "q1", "u1", "r2", 0.2), rating("f2", "q1", "u1", "r1", 0.9))
        // 0.6 vs 0.5: under the 0.25 margin, no pair
        .request(prompt("q2", "Capital of Spain?"),
            response("q2", "r3", "Madrid.", null), response("q2", "r4", "Seville.", null))
        .feedback(rating("f3", "q2", "u1", "r3", 0.6), rating("f4", "q2", "u1", "r4", 0.5));

    List<PreferencePair> pairs = app.pairs();
    assertEquals(1, pairs.size());
    PreferencePair p = pairs.get(0);
    assertEquals(PairSource.RATING, p.getSource());
    assertEquals("Paris.", p.getChosen());
    assertEquals("Lyon.", p.getRejected());
    assertEquals("run-a/v000001", p.getChosenAdapterVersion());
    assertEquals("run-a/v000002", p.getRejectedAdapterVersion());
    assertEquals(0.7, p.getWeight(), 1e-9);
    assertEquals(List.of("f2", "f1"), p.getFeedbackIds(), "chosen side's feedback first");
  }

  @Test
  void thumbsUpAndDownAreRatingsOfOneAndZero() {
    app().request(prompt("q1", "Say hi."), response("q1", "r1", "Hi!", null), response("q1", "r2", "Go away.", null))
        .feedback(thumbsDown("f1", "q1", "u1", "r2"), thumbsUp("f2", "q1", "u1", "r1"));

    List<PreferencePair> pairs = app.pairs();
    assertEquals(1, pairs.size());
    assertEquals("Hi!", pairs.get(0).getChosen());
    assertEquals(1.0, pairs.get(0).getWeight());
  }

  @Test
  void everyTwoRatedResponsesOfARequestThatDifferByTheMarginPair() {
    app().request(prompt("q1", "Pick a colour."), response("q1", "r1", "Red.", null),
            response("q1", "r2", "Blue.", null), response("q1", "r3", "Green.", null))
        .feedback(rating("f1", "q1", "u1", "r1", 1.0), rating("f2", "q1", "u1", "r2", 0.5),
            rating("f3", "q1", "u1", "r3", 0.0));

    List<String> pairs = app.pairs().stream().map(p -> p.getChosen() + ">" + p.getRejected()).toList();
    assertEquals(List.of("Red.>Blue.", "Red.>Green.", "Blue.>Green."), pairs);
  }

  @Test
  void aUsersLaterRatingOfTheSameResponseReplacesTheEarlierOne() {
    app().request(prompt("q1", "2+2?"), response("q1", "r1", "4", null), response("q1", "r2", "5", null))
        .feedback(rating("f1", "q1", "u1", "r1", 0.5), rating("f2", "q1", "u1", "r1", 1.0),
            rating("f3", "q1", "u1", "r2", 0.0));

    List<PreferencePair> pairs = app.pairs();
    assertEquals(1, pairs.size(), "the replaced rating f1 forms no pair of its own");
    assertEquals(List.of("f2", "f3"), pairs.get(0).getFeedbackIds());
    assertEquals(1.0, pairs.get(0).getWeight());

    // Changing one's mind reverses the preference: the reversed pair is emitted; repeating a rating is not.
    app.feedback(rating("f4", "q1", "u1", "r1", 0.0), rating("f5", "q1", "u1", "r2", 1.0),
        rating("f6", "q1", "u1", "r2", 1.0));
    List<String> more = app.pairs().stream().map(p -> p.getChosen() + ">" + p.getRejected()).toList();
    assertEquals(List.of("5>4"), more);
  }

  @Test
  void editedTextIsChosenOverTheOriginalResponse() {
    app().request(prompt("q1", "Spell 'necessary'."), response("q1", "r1", "neccessary", "run-a/v000002"))
        .feedback(edit("f1", "q1", "r1", "necessary"));

    PreferencePair p = app.pairs().get(0);
    assertEquals(PairSource.EDIT, p.getSource());
    assertEquals("necessary", p.getChosen());
    assertEquals("neccessary", p.getRejected());
    assertNull(p.getChosenResponseId(), "the chosen side is the user's text, not a response");
    assertNull(p.getChosenAdapterVersion());
    assertEquals("r1", p.getRejectedResponseId());
    assertEquals("run-a/v000002", p.getRejectedAdapterVersion());
    assertEquals(1.0, p.getWeight());
  }

  @Test
  void responsesToTheSameNormalisedPromptFromDifferentRequestsPair() {
    app().request(prompt("q1", "What is the boiling point of water?"), response("q1", "r1", "100 C.", null))
        .request(prompt("q2", "  what is the BOILING point of  water? "), response("q2", "r2", "50 C.", null))
        .request(prompt("q3", "What is the melting point of ice?"), response("q3", "r3", "-40 C.", null))
        .feedback(thumbsUp("f1", "q1", "u1", "r1"), thumbsDown("f2", "q2", "u2", "r2"),
            thumbsDown("f3", "q3", "u3", "r3"));

    List<PreferencePair> pairs = app.pairs();
    assertEquals(1, pairs.size(), "q3 asks something else");
    PreferencePair p = pairs.get(0);
    assertEquals(PairSource.RATING_CROSS_REQUEST, p.getSource());
    assertEquals("100 C.", p.getChosen());
    assertEquals("50 C.", p.getRejected());
    assertEquals("q1", p.getRequestId(), "request of the chosen side");
    assertEquals(List.of("f1", "f2"), p.getFeedbackIds());
  }

  @Test
  void crossRequestPairingCanBeTurnedOff() {
    app(PairingRules.DEFAULTS.withCrossRequest(false), new BatchPolicy(1000, Duration.ofHours(1)))
        .request(prompt("q1", "Tell a joke."), response("q1", "r1", "A pun.", null))
        .request(prompt("q2", "Tell a joke."), response("q2", "r2", "Nothing.", null))
        .feedback(thumbsUp("f1", "q1", "u1", "r1"), thumbsDown("f2", "q2", "u2", "r2"));

    assertEquals(List.of(), app.pairs());
  }

  @Test
  void aRepeatedFeedbackIdIsProcessedOnce() {
    app().request(prompt("q1", "Hello?"), response("q1", "r1", "Hello!", null), response("q1", "r2", "...", null))
        .feedback(pairwise("f1", "q1", "r1", "r2"), pairwise("f1", "q1", "r1", "r2"));

    assertEquals(1, app.pairs().size());
    assertEquals(1.0, app.metrics.feedback(PreferencePairer.Verdict.DUPLICATE));
  }

  @Test
  void aPairNeverHasTheSameTextOnBothSides() {
    app().request(prompt("q1", "Echo 'a'."), response("q1", "r1", "a", null), response("q1", "r2", " a\n", null))
        .feedback(pairwise("f1", "q1", "r1", "r2"), edit("f2", "q1", "r1", "a "),
            thumbsUp("f3", "q1", "u1", "r1"), thumbsDown("f4", "q1", "u1", "r2"));

    assertEquals(List.of(), app.pairs());
    assertEquals(List.of(), app.deadLetters(), "identical text is not an error, just no pair");
  }

  @Test
  void feedbackThatArrivesBeforeItsResponseWaitsForIt() {
    app().prompt(prompt("q1", "Count to 3."))
        .feedback(pairwise("f1", "q1", "r1", "r2"))
        .after(Duration.ofSeconds(20))
        .response(response("q1", "r1", "1 2 3", null));
    assertEquals(List.of(), app.pairs(), "r2 has not arrived yet");

    app.after(Duration.ofSeconds(20)).response(response("q1", "r2", "3 2 1", null));
    List<PreferencePair> pairs = app.pairs();
    assertEquals(1, pairs.size());
    assertEquals("1 2 3", pairs.get(0).getChosen());
    assertEquals(List.of(), app.deadLetters());
  }

  @Test
  void feedbackWhoseResponseNeverArrivesGoesToTheDlqAfterTheGracePeriodWithItsOriginalBytes() {
    FeedbackEvent orphan = thumbsUp("f1", "q1", "u1", "r-missing");
    app().request(prompt("q1", "Hi."), response("q1", "r1", "Hello.", null)).feedback(orphan);
    byte[] original = app.encoded(orphan);

    app.after(Duration.ofMinutes(4)).response(response("q9", "r9", "unrelated", null));
    assertEquals(List.of(), app.deadLetters(), "still within the 5 minute grace period");

    app.after(Duration.ofMinutes(2)).response(response("q9", "r10", "unrelated", null));
    List<TestRecord<byte[], byte[]>> dead = app.deadLetters();
    assertEquals(1, dead.size());
    assertArrayEquals(original, dead.get(0).value());
    assertArrayEquals("q1".getBytes(StandardCharsets.UTF_8), dead.get(0).key());
    assertTrue(header(dead.get(0), Topics.DLQ_REASON).startsWith("UNKNOWN_RESPONSE: response r-missing of request q1"),
        header(dead.get(0), Topics.DLQ_REASON));
    assertEquals(Topics.FEEDBACK.name(), header(dead.get(0), Topics.DLQ_SOURCE_TOPIC));
    assertEquals("streams", header(dead.get(0), Topics.DLQ_COMPONENT));
    assertEquals(List.of(), app.pairs());
  }

  @Test
  void lateFeedbackPairsWithinRetentionAndGoesToTheDlqAfterIt() {
    app().request(prompt("q1", "Old question"), response("q1", "r1", "Old answer", null),
            response("q1", "r2", "Other answer", null))
        .after(Duration.ofDays(6)).feedback(pairwise("f1", "q1", "r1", "r2"));
    assertEquals(1, app.pairs().size(), "6 days later is within the 7 day retention");

    app.after(Duration.ofDays(2)).response(response("q8", "r8", "advances stream time", null))
        .feedback(pairwise("f2", "q1", "r2", "r1"))
        .after(Duration.ofMinutes(6)).response(response("q9", "r9", "advances stream time", null));
    assertEquals(List.of(), app.pairs());
    List<TestRecord<byte[], byte[]>> dead = app.deadLetters();
    assertEquals(1, dead.size());
    assertTrue(header(dead.get(0), Topics.DLQ_REASON).startsWith("UNKNOWN_RESPONSE: the prompt of request q1"));
  }

  @Test
  void undecodableBytesGoToTheDlqWithTheReasonAndTheAppKeepsRunning() {
    byte[] garbage = "{\"not\": \"avro\"}".getBytes(StandardCharsets.UTF_8);
    app().rawFeedback("q1", garbage)
        .request(prompt("q1", "Hi."), response("q1", "r1", "Hello.", null), response("q1", "r2", "Bye.", null))
        .feedback(pairwise("f1", "q1", "r1", "r2"));

    List<TestRecord<byte[], byte[]>> dead = app.deadLetters();
    assertEquals(1, dead.size());
    assertArrayEquals(garbage, dead.get(0).value());
    assertTrue(header(dead.get(0), Topics.DLQ_REASON).startsWith("UNDECODABLE: "));
    assertEquals(Topics.FEEDBACK.name(), header(dead.get(0), Topics.DLQ_SOURCE_TOPIC));
    assertEquals("0", header(dead.get(0), Topics.DLQ_SOURCE_PARTITION));
    assertEquals("0", header(dead.get(0), Topics.DLQ_SOURCE_OFFSET));
    assertEquals(1, app.pairs().size(), "the next good record is processed");
    assertEquals(1.0, app.metrics.deadLetters(DlqReason.UNDECODABLE));
  }

  @Test
  void aValidRecordWithMissingIdsOrTheWrongKeyGoesToTheDlq() {
    FeedbackEvent noResponseId = FeedbackEvent.newBuilder(thumbsUp("f1", "q1", "u1", "r1")).setResponseId(null).build();
    FeedbackEvent noFeedbackId = FeedbackEvent.newBuilder(pairwise("", "q1", "r1", "r2")).build();
    app().request(prompt("q1", "Hi."), response("q1", "r1", "Hello.", null))
        .feedback(noResponseId, noFeedbackId)
        .feedbackKeyed("q2", pairwise("f3", "q1", "r1", "r2"))
        .prompt(prompt("q4", "Hi.")).response(response("", "r5", "x", null));

    List<String> reasons = app.deadLetters().stream().map(r -> header(r, Topics.DLQ_REASON)).toList();
    assertEquals(List.of(
        "INVALID: feedback f1 (RATING) has no response_id",
        "INVALID: feedback on request q1 has an empty feedback_id",
        "KEY_MISMATCH: key 'q2' is not the request id 'q1'",
        "INVALID: request_id is empty"), reasons);
  }

  @Test
  void aRecordThatCannotBeDecodedBecauseTheRegistryIsDownIsRetriedNotDeadLettered() {
    app = new PipelineDriver(PairingRules.DEFAULTS, new BatchPolicy(1000, Duration.ofHours(1)), stateDir,
        (topic, bytes) -> {
          throw new org.apache.kafka.common.errors.SerializationException("cannot decode",
              new java.net.ConnectException("Connection refused"));
        });
    RuntimeException e = assertThrows(RuntimeException.class, () -> app.rawFeedback("q1", new byte[] {0, 0, 0, 0, 1}));
    assertTrue(TransientFailure.isCause(e), e.toString());
    assertEquals(List.of(), app.deadLetters());
  }

  @Test
  void aRecordOfTheWrongTypeForItsTopicGoesToTheDlq() {
    byte[] promptOnFeedbackTopic = app().registry.serializer().serialize("x", prompt("q1", "Hi."));
    app.rawFeedback("q1", promptOnFeedbackTopic);

    assertEquals("WRONG_TYPE: PromptEvent does not belong on llm.feedback",
        header(app.deadLetters().get(0), Topics.DLQ_REASON));
  }

  @Test
  void aBatchIsEmittedAsSoonAsItHoldsNPairsInTheOrderTheyFormed() {
    app(PairingRules.DEFAULTS, new BatchPolicy(3, Duration.ofSeconds(30)));
    for (int i = 1; i <= 7; i++) {
      String q = "q" + i;
      app.request(prompt(q, "Prompt " + i), response(q, q + "a", "good " + i, null), response(q, q + "b", "bad " + i, null))
          .feedback(pairwise("f" + i, q, q + "a", q + "b"));
    }

    List<PreferencePair> pairs = app.pairs();
    List<PreferenceBatch> batches = app.batches();
    assertEquals(2, batches.size(), "7 pairs: two full batches of 3, one pair still open");
    assertEquals(pairs.subList(0, 3), batches.get(0).getPairs());
    assertEquals(pairs.subList(3, 6), batches.get(1).getPairs());
    assertEquals(pairs.get(0).getCreatedAt(), batches.get(0).getWindowStart());
  }

  @Test
  void aBatchIsEmittedTSecondsOfWallClockAfterItsFirstPair() {
    app(PairingRules.DEFAULTS, new BatchPolicy(32, Duration.ofSeconds(30)))
        .request(prompt("q1", "Hi."), response("q1", "r1", "Hello.", null), response("q1", "r2", "Bye.", null))
        .feedback(pairwise("f1", "q1", "r1", "r2"));

    app.advanceWallClock(Duration.ofSeconds(29));
    assertEquals(List.of(), app.batches());
    app.advanceWallClock(Duration.ofSeconds(1));
    List<PreferenceBatch> batches = app.batches();
    assertEquals(1, batches.size());
    assertEquals(1, batches.get(0).getPairs().size());
    app.advanceWallClock(Duration.ofMinutes(5));
    assertEquals(List.of(), app.batches(), "an empty batch is never emitted");
  }

  @Test
  void batchIdIsAHashOfTheSortedPairIdsSoAConsumerCanDeduplicate() {
    app(PairingRules.DEFAULTS, new BatchPolicy(2, Duration.ofSeconds(30)))
        .request(prompt("q1", "Hi."), response("q1", "r1", "Hello.", null), response("q1", "r2", "Bye.", null))
        .feedback(pairwise("f1", "q1", "r1", "r2"), pairwise("f2", "q1", "r2", "r1"));

    PreferenceBatch batch = app.batches().get(0);
    List<String> ids = batch.getPairs().stream().map(PreferencePair::getPairId).toList();
    assertEquals(BatchAssembler.batchId(ids), batch.getBatchId());
    assertEquals(BatchAssembler.batchId(List.of(ids.get(1), ids.get(0))), batch.getBatchId());
  }

  @Test
  void aReplayOfTheSameEventsFormsTheSamePairIdsAndBatchIds(@TempDir Path otherStateDir) {
    List<PreferencePair> first = replayMix(stateDir);
    List<PreferencePair> second = replayMix(otherStateDir);
    assertEquals(first, second);
    assertEquals(first.size(), first.stream().map(PreferencePair::getPairId).distinct().count(), "ids are unique");
  }

  private List<PreferencePair> replayMix(Path dir) {
    try (PipelineDriver d = new PipelineDriver(dir)) {
      d.request(prompt("q1", "A?"), response("q1", "r1", "yes", null), response("q1", "r2", "no", null))
          .feedback(pairwise("f1", "q1", "r1", "r2"), rating("f2", "q1", "u1", "r1", 1.0),
              rating("f3", "q1", "u1", "r2", 0.0), edit("f4", "q1", "r2", "maybe"));
      return d.pairs();
    }
  }

  private static String header(TestRecord<byte[], byte[]> r, String name) {
    Header h = r.headers().lastHeader(name);
    return h == null ? null : new String(h.value(), StandardCharsets.UTF_8);
  }
}
