package io.vllmtrain.inference;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.vllmtrain.events.ChatMessage;
import io.vllmtrain.events.Prompt;
import java.time.Duration;
import java.util.List;
import org.apache.avro.specific.SpecificRecord;
import org.apache.kafka.clients.producer.MockProducer;
import org.apache.kafka.common.errors.RecordTooLargeException;
import org.apache.kafka.common.errors.TimeoutException;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/**
 * The bounded buffer in front of the producer, with Kafka's MockProducer standing in for the broker so that each
 * acknowledgement and failure happens exactly when the test says (the real broker path is in InferenceKafkaTest).
 */
class EventRecorderTest {
  final MockProducer<String, SpecificRecord> kafka =
      new MockProducer<>(false, null, new StringSerializer(), (topic, value) -> new byte[0]);
  EventRecorder recorder;

  static SpecificRecord event(String text) {
    return new Prompt(List.of(new ChatMessage("user", text)), null);
  }

  @AfterEach
  void close() {
    if (recorder != null) {
      recorder.close(Duration.ofMillis(100));
    }
  }

  void awaitSent(int n) {
    Await.until(n + " events handed to the producer", () -> kafka.history().size() >= n);
  }

  @Test
  void anEventLeavesTheBufferOnlyWhenKafkaAcknowledgesIt() {
    recorder = new EventRecorder(kafka, 10);
    assertTrue(recorder.record("llm.prompts", "req-1", event("hi")));
    awaitSent(1);
    assertEquals(new EventRecorder.Stats(1, 0, 0, 0), recorder.stats());
    kafka.completeNext();
    assertEquals(new EventRecorder.Stats(0, 1, 0, 0), recorder.stats());
    assertEquals("req-1", kafka.history().get(0).key());
    assertEquals("llm.prompts", kafka.history().get(0).topic());
  }

  @Test
  void whatTheBufferCannotHoldIsDroppedAndCountedWithoutBlocking() {
    recorder = new EventRecorder(kafka, 3);
    for (int i = 0; i < 3; i++) {
      assertTrue(recorder.record("llm.prompts", "req-" + i, event("e" + i)));
    }
    long t0 = System.nanoTime();
    assertFalse(recorder.record("llm.prompts", "req-3", event("e3")));
    assertFalse(recorder.record("llm.prompts", "req-4", event("e4")));
    assertTrue(System.nanoTime() - t0 < Duration.ofSeconds(1).toNanos(), "record never waits for room");
    assertEquals(new EventRecorder.Stats(3, 0, 2, 0), recorder.stats());
    awaitSent(3);
    kafka.completeNext();
    assertTrue(recorder.record("llm.prompts", "req-5", event("e5")), "an acknowledgement makes room");
  }

  @Test
  void aTransientFailureSendsTheEventAgain() {
    recorder = new EventRecorder(kafka, 10);
    recorder.record("llm.responses", "req-1", event("hi"));
    awaitSent(1);
    kafka.errorNext(new TimeoutException("Expiring 1 record(s): 30000 ms has passed since batch creation"));
    awaitSent(2);
    assertEquals(new EventRecorder.Stats(1, 0, 0, 0), recorder.stats(), "still buffered, not lost");
    kafka.completeNext();
    assertEquals(new EventRecorder.Stats(0, 1, 0, 0), recorder.stats());
    assertEquals(List.of("req-1", "req-1"), kafka.history().stream().map(r -> r.key()).toList());
  }

  @Test
  void whileSendItselfFailsKafkaIsUnreachableAndEventsWait() throws Exception {
    kafka.sendException = new TimeoutException("Topic llm.prompts not present in metadata after 5000 ms.");
    recorder = new EventRecorder(kafka, 10);
    recorder.record("llm.prompts", "req-1", event("a"));
    recorder.record("llm.prompts", "req-2", event("b"));
    Thread.sleep(300);
    assertEquals(new EventRecorder.Stats(2, 0, 0, 0), recorder.stats());
    kafka.sendException = null;
    awaitSent(2);
    kafka.completeNext();
    kafka.completeNext();
    assertEquals(new EventRecorder.Stats(0, 2, 0, 0), recorder.stats());
    assertEquals(List.of("req-1", "req-2"), kafka.history().stream().map(r -> r.key()).toList(), "order kept");
  }

  @Test
  void anEventKafkaRefusesForGoodIsCountedAsFailedAndFreesItsRoom() {
    recorder = new EventRecorder(kafka, 1);
    recorder.record("llm.prompts", "req-1", event("huge"));
    awaitSent(1);
    kafka.errorNext(new RecordTooLargeException("The message is 2000000 bytes"));
    assertEquals(new EventRecorder.Stats(0, 0, 0, 1), recorder.stats());
    assertTrue(recorder.record("llm.prompts", "req-2", event("small")));
  }

  @Test
  void closeWaitsForTheBufferAndCountsWhatNeverReachedKafka() {
    kafka.sendException = new TimeoutException("broker unreachable");
    recorder = new EventRecorder(kafka, 10);
    recorder.record("llm.prompts", "req-1", event("a"));
    recorder.record("llm.prompts", "req-2", event("b"));
    assertEquals(2, recorder.close(Duration.ofMillis(300)));
    assertEquals(new EventRecorder.Stats(0, 0, 2, 0), recorder.stats());
    assertFalse(recorder.record("llm.prompts", "req-3", event("c")), "closed: nothing more is accepted");
    recorder = null;
  }

  @Test
  void ioFailuresAndKafkaRetriableErrorsAreTransientOthersAreNot() {
    assertTrue(EventRecorder.isTransient(new TimeoutException("metadata")));
    assertTrue(EventRecorder.isTransient(new org.apache.kafka.common.errors.SerializationException("registry",
        new java.net.ConnectException("Connection refused"))));
    assertFalse(EventRecorder.isTransient(new org.apache.kafka.common.errors.SerializationException("bad schema")));
  }
}
