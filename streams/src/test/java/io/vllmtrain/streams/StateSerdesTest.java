package io.vllmtrain.streams;

import static io.vllmtrain.streams.Events.prompt;
import static io.vllmtrain.streams.Events.response;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.List;
import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.serialization.Serde;
import org.junit.jupiter.api.Test;

/** The state written to stores and changelogs reads back as it was written. */
class StateSerdesTest {
  private static <T> T roundTrip(Serde<T> serde, T value) {
    return serde.deserializer().deserialize("t", serde.serializer().serialize("t", value));
  }

  @Test
  void requestEventsRoundTrip() {
    RequestEvents r = RequestEvents.empty(42).withPrompt(prompt("q1", "Hi \u00e9\u4e16"))
        .withResponse(response("q1", "r1", "Hello.", "run/v000001")).withResponse(response("q1", "r2", "", null));
    assertEquals(r, roundTrip(StateSerdes.requestEvents(), r));
  }

  @Test
  void feedbackStateRoundTripsWithTheOriginalBytesOfWaitingFeedback() {
    byte[] key = {1, 2, 3};
    byte[] value = {0, 0, 0, 0, 7, 9};
    FeedbackState s = new FeedbackState(7, List.of("f1", "f2"),
        List.of(new RatingFact("f1", null, "r1", 0.25), new RatingFact("f2", "u2", "r2", 1.0)),
        List.of("r1>r2"),
        List.of(new ReceivedFeedback(Events.pairwise("f3", "q1", "r1", "r9"), 99,
            new SourceRecord("llm.feedback", 2, 1234, key, value))));
    FeedbackState back = roundTrip(StateSerdes.feedbackState(), s);
    assertEquals(s.seenIds(), back.seenIds());
    assertEquals(s.ratings(), back.ratings());
    assertEquals(s.emittedRatingPairs(), back.emittedRatingPairs());
    ReceivedFeedback p = back.pending().get(0);
    assertEquals(s.pending().get(0).event(), p.event());
    assertEquals(99, p.timestamp());
    assertEquals(1234, p.source().offset());
    assertArrayEquals(key, p.source().key());
    assertArrayEquals(value, p.source().value());
  }

  @Test
  void originalBytesThatAreTheEventsOwnEncodingAreStoredOnceAndReadBackWhole() {
    var edit = Events.edit("f1", "q1", "r1", "x".repeat(100_000));
    byte[] original = new InMemoryRegistry().<io.vllmtrain.events.FeedbackEvent>serializer().serialize("t", edit);
    FeedbackState s = new FeedbackState(7, List.of("f1"), List.of(), List.of(),
        List.of(new ReceivedFeedback(edit, 99, new SourceRecord("llm.feedback", 0, 5, new byte[] {1}, original))));
    byte[] stored = StateSerdes.feedbackState().serializer().serialize("t", s);
    assertEquals(true, stored.length < original.length + 1000, stored.length + " bytes stored");
    FeedbackState back = StateSerdes.feedbackState().deserializer().deserialize("t", stored);
    assertArrayEquals(original, back.pending().get(0).source().value());
    assertEquals(edit, back.pending().get(0).event());
  }

  @Test
  void candidateSetRoundTrip() {
    CandidateSet c = new CandidateSet(List.of(new RatedResponse("k", "q1", "r1", "f1", null, 0.5, "t", null, "m",
        prompt("q1", "p").getPrompt(), 5)), List.of("r1>r2"));
    assertEquals(c, roundTrip(StateSerdes.candidateSet(), c));
  }

  @Test
  void stateOfAnUnknownFormatFailsLoudly() {
    byte[] bytes = StateSerdes.requestEvents().serializer().serialize("t", RequestEvents.empty(1));
    bytes[0] = 9;
    SerializationException e = assertThrows(SerializationException.class,
        () -> StateSerdes.requestEvents().deserializer().deserialize("request-events-changelog", bytes));
    assertEquals(true, e.getMessage().contains("format 9"));
  }
}
