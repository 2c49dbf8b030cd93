package io.vllmtrain.streams;

import static io.vllmtrain.streams.Events.edit;
import static io.vllmtrain.streams.Events.pairwise;
import static io.vllmtrain.streams.Events.prompt;
import static io.vllmtrain.streams.Events.response;
import static io.vllmtrain.streams.Events.thumbsUp;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.vllmtrain.events.FeedbackEvent;
import io.vllmtrain.events.PreferencePair;
import io.vllmtrain.schemas.Topics;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.streams.test.TestRecord;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The app's limits with their defaults, one per test, through the real topology: whatever would break a limit goes
 * to the DLQ with a reason that names the limit's key, and nothing else changes. (TopologyTestDriver enforces no
 * record size, so the tests check the sizes themselves; PreferenceStreamsLimitsStackTest runs the real broker.)
 */
class LimitsTopologyTest {
  private static final int MIB = 1024 * 1024;

  private final PipelineDriver app;

  LimitsTopologyTest(@TempDir Path dir) {
    app = new PipelineDriver(PairingRules.DEFAULTS, new BatchPolicy(1000, Duration.ofHours(1)), dir);
  }

  @AfterEach
  void close() {
    app.close();
  }

  @Test
  void aBatchClosesEarlyRatherThanGrowPastItsByteBudget() {
    for (int i = 1; i <= 3; i++) {
      String q = "q" + i;
      app.request(prompt(q, "Fix this."), response(q, q + "-r", "short answer " + i, null))
          .feedback(edit("f" + i, q, q + "-r", text(3 * MIB / 2, i)));
    }
    assertEquals(3, app.pairs().size());
    app.advanceWallClock(Duration.ofHours(1));

    List<byte[]> batches = app.rawBatches();
    assertEquals(2, batches.size(), "two pairs of 1.5 MiB fit in the 4 MiB budget, a third does not");
    for (byte[] b : batches) {
      assertTrue(b.length <= 4 * MIB, "a batch of " + b.length + " bytes");
    }
  }

  @Test
  void aPairTooLargeForAnyBatchGoesToTheDlqWithTheFeedbackThatFormedIt() {
    FeedbackEvent huge = edit("f1", "q1", "r1", text(5 * MIB, 1));
    app.request(prompt("q1", "Fix this."), response("q1", "r1", "short", null), response("q1", "r2", "other", null))
        .feedback(huge, pairwise("f2", "q1", "r1", "r2"));

    List<PreferencePair> pairs = app.pairs();
    assertEquals(List.of("f2"), pairs.stream().flatMap(p -> p.getFeedbackIds().stream()).toList());
    List<TestRecord<byte[], byte[]>> dead = app.deadLetters();
    assertEquals(1, dead.size());
    assertTrue(header(dead.get(0), Topics.DLQ_REASON).startsWith("PAIR_TOO_LARGE: "), header(dead.get(0), Topics.DLQ_REASON));
    assertTrue(header(dead.get(0), Topics.DLQ_REASON).contains("streams.batch.max.bytes"));
    assertEquals(Topics.FEEDBACK.name(), header(dead.get(0), Topics.DLQ_SOURCE_TOPIC));
    assertArrayEquals(app.encoded(huge), dead.get(0).value());
  }

  @Test
  void feedbackWaitingForItsResponseIsKeptOnceAndPairsWhenTheResponseArrives() {
    app.prompt(prompt("q1", "Fix this."))
        .feedback(edit("f1", "q1", "r1", text(700 * 1024, 1)))
        .after(Duration.ofSeconds(5))
        .response(response("q1", "r1", "short", null));

    assertEquals(1, app.pairs().size());
    assertEquals(List.of(), app.deadLetters());
    int largest = app.largestChangelogRecord();
    assertTrue(largest < MIB, "a changelog record of " + largest + " bytes (the 700 kB edit is stored once)");
  }

  @Test
  void waitingFeedbackThatWouldOutgrowTheStateLimitGoesToTheDlq() {
    FeedbackEvent third = edit("f3", "q1", "r1", text(400 * 1024, 3));
    app.prompt(prompt("q1", "Fix this."))
        .feedback(edit("f1", "q1", "r1", text(400 * 1024, 1)), edit("f2", "q1", "r1", text(400 * 1024, 2)), third)
        .response(response("q1", "r1", "short", null));

    assertEquals(2, app.pairs().size());
    List<TestRecord<byte[], byte[]>> dead = app.deadLetters();
    assertEquals(1, dead.size());
    assertTrue(header(dead.get(0), Topics.DLQ_REASON).startsWith("STATE_TOO_LARGE: "), header(dead.get(0), Topics.DLQ_REASON));
    assertTrue(header(dead.get(0), Topics.DLQ_REASON).contains("streams.state.max.bytes"));
    assertArrayEquals(app.encoded(third), dead.get(0).value());
    assertTrue(app.largestChangelogRecord() <= MIB);
  }

  @Test
  void aPromptOrResponseThatWouldOutgrowTheStateLimitGoesToTheDlqAndChangesNothing() {
    app.prompt(prompt("q1", text(MIB + 1, 1)))
        .request(prompt("q2", "Hi."), response("q2", "r1", "Hello.", null), response("q2", "r2", text(MIB + 1, 2), null),
            response("q2", "r3", "Bye.", null))
        .feedback(pairwise("f1", "q2", "r1", "r3"));

    List<String> reasons = app.deadLetters().stream().map(r -> header(r, Topics.DLQ_REASON)).toList();
    assertEquals(2, reasons.size(), reasons.toString());
    reasons.forEach(r -> assertTrue(r.startsWith("STATE_TOO_LARGE: ") && r.contains("streams.state.max.bytes"), r));
    assertEquals(1, app.pairs().size(), "the request's other responses are unaffected");
    assertNull(app.stored(RequestProcessor.EVENTS_STORE, "q1"));
    assertTrue(app.largestChangelogRecord() <= MIB);
  }

  @Test
  void feedbackBeyondTheLimitPerRequestGoesToTheDlq() {
    app.request(prompt("q1", "Hi."), response("q1", "r1", "Hello.", null), response("q1", "r2", "Bye.", null));
    for (int i = 1; i <= 102; i++) {
      app.feedback(i % 2 == 0 ? pairwise("f" + i, "q1", "r1", "r2") : pairwise("f" + i, "q1", "r2", "r1"));
    }
    app.feedback(pairwise("f1", "q1", "r2", "r1")); // a retry of an accepted one is still only a duplicate

    assertEquals(100, app.pairs().size());
    List<String> reasons = app.deadLetters().stream().map(r -> header(r, Topics.DLQ_REASON)).toList();
    assertEquals(2, reasons.size(), reasons.toString());
    reasons.forEach(r -> assertTrue(r.startsWith("FEEDBACK_LIMIT: ") && r.contains("streams.feedback.max.per.request"),
        r));
    assertEquals(1.0, app.metrics.feedback(PreferencePairer.Verdict.DUPLICATE));
  }

  @Test
  void feedbackOnARequestNeverSeenIsForgottenAfterTheOrphanRetention() {
    app.feedback(thumbsUp("f1", "q-invented", "u1", "r1"))
        .after(Duration.ofMinutes(30)).response(response("q9", "r9", "advances stream time", null));
    assertEquals(1, app.deadLetters().size(), "after the 5 minute grace period, as before");
    assertNotNull(app.stored(RequestProcessor.FEEDBACK_STORE, "q-invented"));

    app.after(Duration.ofMinutes(31)).response(response("q9", "r10", "advances stream time", null));
    assertNull(app.stored(RequestProcessor.FEEDBACK_STORE, "q-invented"), "gone 1 hour after it came, not 7 days");
    assertEquals(List.of(), app.deadLetters());
  }

  @Test
  void feedbackStillWaitingWhenItsNeverSeenRequestIsForgottenGoesToTheDlqWithTheReason() {
    FeedbackEvent late = thumbsUp("f2", "q-invented", "u1", "r1");
    app.feedback(thumbsUp("f1", "q-invented", "u1", "r1"))
        .after(Duration.ofMinutes(58)).feedback(late)
        .after(Duration.ofMinutes(3)).response(response("q9", "r9", "advances stream time", null));

    List<TestRecord<byte[], byte[]>> dead = app.deadLetters();
    assertEquals(2, dead.size());
    assertArrayEquals(app.encoded(late), dead.get(1).value());
    String reason = header(dead.get(1), Topics.DLQ_REASON);
    assertTrue(reason.startsWith("UNKNOWN_RESPONSE: ") && reason.contains("streams.feedback.orphan.retention"), reason);
    assertNull(app.stored(RequestProcessor.FEEDBACK_STORE, "q-invented"));
  }

  @Test
  void aDeadLetterTooLargeForTheDlqKeepsItsHeadersAndTheStartOfItsValue() {
    byte[] garbage = new byte[17 * MIB];
    Arrays.fill(garbage, (byte) 'x');
    app.rawFeedback("q1", garbage);

    TestRecord<byte[], byte[]> dead = app.deadLetters().get(0);
    assertTrue(header(dead, Topics.DLQ_REASON).startsWith("UNDECODABLE: "));
    assertEquals(Topics.FEEDBACK.name(), header(dead, Topics.DLQ_SOURCE_TOPIC));
    assertEquals(Integer.toString(garbage.length), header(dead, Topics.DLQ_PAYLOAD_TRUNCATED));
    assertTrue(dead.value().length < 16 * MIB, "kept " + dead.value().length + " bytes");
    assertArrayEquals(Arrays.copyOf(garbage, dead.value().length), dead.value());
    assertArrayEquals("q1".getBytes(StandardCharsets.UTF_8), dead.key());
  }

  /** {@code bytes} bytes of ASCII text, different for each {@code seed}. */
  private static String text(int bytes, int seed) {
    String unit = "word" + seed + " ";
    return unit.repeat(bytes / unit.length() + 1).substring(0, bytes);
  }

  private static String header(TestRecord<byte[], byte[]> r, String name) {
    Header h = r.headers().lastHeader(name);
    return h == null ? null : new String(h.value(), StandardCharsets.UTF_8);
  }
}
