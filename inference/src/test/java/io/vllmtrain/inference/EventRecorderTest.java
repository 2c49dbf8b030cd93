package io.vllmtrain.inference;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.vllmtrain.events.ChatMessage;
import io.vllmtrain.events.Prompt;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
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
  static final long MIB = 1024 * 1024;

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
    recorder = new EventRecorder(kafka, 10, MIB);
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
    recorder = new EventRecorder(kafka, 3, MIB);
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
    recorder = new EventRecorder(kafka, 10, MIB);
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
    recorder = new EventRecorder(kafka, 10, MIB);
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
    recorder = new EventRecorder(kafka, 1, MIB);
    recorder.record("llm.prompts", "req-1", event("huge"));
    awaitSent(1);
    kafka.errorNext(new RecordTooLargeException("The message is 2000000 bytes"));
    assertEquals(new EventRecorder.Stats(0, 0, 0, 1), recorder.stats());
    assertTrue(recorder.record("llm.prompts", "req-2", event("small")));
  }

  @Test
  void closeWaitsForTheBufferAndCountsWhatNeverReachedKafka() {
    kafka.sendException = new TimeoutException("broker unreachable");
    recorder = new EventRecorder(kafka, 10, MIB);
    recorder.record("llm.prompts", "req-1", event("a"));
    recorder.record("llm.prompts", "req-2", event("b"));
    assertEquals(2, recorder.close(Duration.ofMillis(300)));
    assertEquals(new EventRecorder.Stats(0, 0, 2, 0), recorder.stats());
    assertFalse(recorder.record("llm.prompts", "req-3", event("c")), "closed: nothing more is accepted");
    recorder = null;
  }

  @Test
  void theBufferIsBoundedInBytesSoABurstOfBigEventsCannotExhaustTheHeap() {
    recorder = new EventRecorder(kafka, 1_000, MIB);
    String big = "x".repeat(200 * 1024); // ~400 KiB on the heap (UTF-16 upper bound)
    assertTrue(recorder.record("llm.prompts", "req-1", event(big)));
    assertTrue(recorder.record("llm.prompts", "req-2", event(big)));
    assertFalse(recorder.record("llm.prompts", "req-3", event(big)), "a third would pass 1 MiB");
    assertTrue(recorder.record("llm.prompts", "req-4", event("small")), "small events still fit");
    EventRecorder.Stats stats = recorder.stats();
    assertEquals(3, stats.buffered());
    assertEquals(1, stats.dropped());
    long bytes = recorder.bufferedBytes();
    assertTrue(bytes > 800 * 1024 && bytes <= MIB, bytes + " bytes");
    awaitSent(3);
    kafka.completeNext();
    assertTrue(recorder.record("llm.prompts", "req-5", event(big)), "an acknowledgement frees its bytes");
  }

  @Test
  void aDurableEventCompletesOnlyWhenKafkaHasAcknowledgedIt() throws Exception {
    recorder = new EventRecorder(kafka, 10, MIB);
    CompletableFuture<Void> acked = recorder.recordDurably("llm.feedback", "req-1", event("thumbs up"));
    awaitSent(1);
    Thread.sleep(100);
    assertFalse(acked.isDone(), "handed to the producer is not acknowledged");
    kafka.errorNext(new TimeoutException("request timed out"));
    awaitSent(2);
    assertFalse(acked.isDone(), "a transient failure is sent again, the caller still waits");
    kafka.completeNext();
    acked.get(5, TimeUnit.SECONDS);
  }

  @Test
  void aDurableEventFailsWhenKafkaRefusesItForGoodOrTheBufferIsFull() {
    recorder = new EventRecorder(kafka, 1, MIB);
    CompletableFuture<Void> refused = recorder.recordDurably("llm.feedback", "req-1", event("x"));
    CompletableFuture<Void> noRoom = recorder.recordDurably("llm.feedback", "req-2", event("y"));
    ExecutionException full = assertThrows(ExecutionException.class, () -> noRoom.get(5, TimeUnit.SECONDS));
    assertTrue(full.getCause() instanceof EventRecorder.BufferFull, full.toString());
    awaitSent(1);
    kafka.errorNext(new RecordTooLargeException("The message is 2000000 bytes"));
    ExecutionException e = assertThrows(ExecutionException.class, () -> refused.get(5, TimeUnit.SECONDS));
    assertTrue(e.getCause() instanceof RecordTooLargeException, e.toString());
  }

  @Test
  void aDurableEventStillUnsentAtShutdownFails() {
    kafka.sendException = new TimeoutException("broker unreachable");
    recorder = new EventRecorder(kafka, 10, MIB);
    CompletableFuture<Void> acked = recorder.recordDurably("llm.feedback", "req-1", event("x"));
    recorder.close(Duration.ofMillis(200));
    recorder = null;
    assertThrows(ExecutionException.class, () -> acked.get(5, TimeUnit.SECONDS));
  }

  @Test
  void ioFailuresAndKafkaRetriableErrorsAreTransientOthersAreNot() {
    assertTrue(EventRecorder.isTransient(new TimeoutException("metadata")));
    assertTrue(EventRecorder.isTransient(new org.apache.kafka.common.errors.SerializationException("registry",
        new java.net.ConnectException("Connection refused"))));
    assertFalse(EventRecorder.isTransient(new org.apache.kafka.common.errors.SerializationException("bad schema")));
  }
}
