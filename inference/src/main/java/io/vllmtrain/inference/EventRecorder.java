package io.vllmtrain.inference;

import io.vllmtrain.schemas.AvroSerdes;
import io.vllmtrain.schemas.KafkaSettings;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.LinkedBlockingDeque;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.avro.generic.IndexedRecord;
import org.apache.avro.specific.SpecificRecord;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.Producer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.errors.RetriableException;
import org.apache.kafka.common.serialization.StringSerializer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Event capture that never blocks a user's request. {@link #record} puts the event in a buffer bounded both in
 * events and in bytes and returns at once; one sender thread hands events to an idempotent Kafka producer
 * ({@code acks=all}). An event leaves the buffer only when Kafka has acknowledged it: while Kafka or the schema
 * registry is unreachable, events wait and are sent again. What the buffer cannot hold, what Kafka refuses for good,
 * and what is still unsent at shutdown is counted and logged with its topic and key (the request id), never dropped
 * silently.
 *
 * <p>Two promises: {@link #record} is best effort (a generation's events: the caller is answered whatever happens
 * to them, losses are counted); {@link #recordDurably} returns a future that completes only once Kafka has
 * acknowledged the event, and fails when it cannot be buffered or Kafka refuses it for good (feedback: the caller
 * is answered OK only for what is durable).
 *
 * <p>The byte bound uses an estimate of each event's size on the heap (two bytes per character of its strings, plus
 * a little per field), taken before the event is queued, so that a burst of big events while Kafka is down cannot
 * exhaust the heap.
 */
public final class EventRecorder implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(EventRecorder.class);

  /** Events accepted but not acknowledged yet, and the totals so far. */
  public record Stats(long buffered, long sent, long dropped, long failed) {}

  /** Why a durable event was not recorded: the buffer was full, or the recorder is shutting down. */
  public static final class BufferFull extends Exception {
    BufferFull(String message) {
      super(message, null, false, false);
    }
  }

  /**
   * An event in the buffer: its record, its estimated size, and the future of a durable one (else null). A class,
   * not a record: two equal events are still two events (identity equality).
   */
  private static final class Pending {
    final ProducerRecord<String, SpecificRecord> record;
    final long bytes;
    final CompletableFuture<Void> acked;

    Pending(ProducerRecord<String, SpecificRecord> record, long bytes, CompletableFuture<Void> acked) {
      this.record = record;
      this.bytes = bytes;
      this.acked = acked;
    }
  }

  private final Producer<String, SpecificRecord> producer;
  private final int capacity;
  private final long maxBytes;
  // One permit per event that may be held; released when Kafka acknowledges the event or it is given up.
  private final Semaphore room;
  // Estimated bytes of the events held; an event is taken only if it fits under maxBytes.
  private final AtomicLong bytesHeld = new AtomicLong();
  private final LinkedBlockingDeque<Pending> toSend = new LinkedBlockingDeque<>();
  // Handed to the producer, not acknowledged yet.
  private final Set<Pending> inFlight = ConcurrentHashMap.newKeySet();
  private final AtomicLong sent = new AtomicLong();
  private final AtomicLong dropped = new AtomicLong();
  private final AtomicLong failed = new AtomicLong();
  private final RateLimitedLog dropLog = new RateLimitedLog(log, Duration.ofSeconds(10), 10);
  private final RateLimitedLog retryLog = new RateLimitedLog(log, Duration.ofSeconds(10), 1);
  private final Thread sender;
  private volatile boolean accepting = true;
  private volatile boolean running = true;

  /** A recorder holding at most {@code capacity} events and {@code maxBytes} estimated bytes while Kafka is away. */
  public EventRecorder(Producer<String, SpecificRecord> producer, int capacity, long maxBytes) {
    if (capacity < 1) {
      throw new IllegalArgumentException("capacity must be at least 1, got " + capacity);
    }
    if (maxBytes < 1) {
      throw new IllegalArgumentException("maxBytes must be at least 1, got " + maxBytes);
    }
    this.producer = producer;
    this.capacity = capacity;
    this.maxBytes = maxBytes;
    this.room = new Semaphore(capacity);
    this.sender = new Thread(this::sendLoop, "event-sender");
    sender.setDaemon(true);
    sender.start();
  }

  /** A recorder over an idempotent producer with the registry's Avro serializer. */
  public static EventRecorder forKafka(KafkaSettings settings, int capacity, long maxBytes) {
    return new EventRecorder(
        new KafkaProducer<>(producerProperties(settings), new StringSerializer(),
            AvroSerdes.<SpecificRecord>valueSerializer(settings)),
        capacity, maxBytes);
  }

  /** Client settings plus idempotence; the timeouts bound how long one attempt holds an event before a retry. */
  static Map<String, Object> producerProperties(KafkaSettings settings) {
    Map<String, Object> props = settings.clientProperties();
    props.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
    props.put(ProducerConfig.ACKS_CONFIG, "all");
    props.putIfAbsent(ProducerConfig.CLIENT_ID_CONFIG, "vllm-train-inference");
    props.putIfAbsent(ProducerConfig.LINGER_MS_CONFIG, 5);
    // send() waits this long for metadata; it runs on the sender thread, so a request never waits on it.
    props.putIfAbsent(ProducerConfig.MAX_BLOCK_MS_CONFIG, 5_000);
    props.putIfAbsent(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, 10_000);
    props.putIfAbsent(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 30_000);
    return props;
  }

  /**
   * Queues an event for Kafka and returns at once (best effort). Returns false when the buffer is full or the
   * recorder is closed: the event is then counted as dropped and logged.
   */
  public boolean record(String topic, String key, SpecificRecord value) {
    return offer(topic, key, value, null) == null;
  }

  /**
   * Queues an event for Kafka and returns a future that completes once Kafka has acknowledged it. It fails with
   * {@link BufferFull} at once when the buffer cannot take it, with Kafka's error when Kafka refuses it for good, and
   * when the recorder shuts down before it was acknowledged. While Kafka is unreachable it stays incomplete (the
   * event is sent again); a caller that stops waiting leaves the event in the buffer, so it may still arrive.
   */
  public CompletableFuture<Void> recordDurably(String topic, String key, SpecificRecord value) {
    CompletableFuture<Void> acked = new CompletableFuture<>();
    String refusal = offer(topic, key, value, acked);
    if (refusal != null) {
      acked.completeExceptionally(new BufferFull(refusal));
    }
    return acked;
  }

  /** Buffers the event; null when it was taken, else why not (it is then counted as dropped and logged). */
  private String offer(String topic, String key, SpecificRecord value, CompletableFuture<Void> acked) {
    long bytes = estimateBytes(key) + estimateBytes(value);
    String refusal = null;
    if (!accepting) {
      refusal = "recorder closed";
    } else if (!room.tryAcquire()) {
      refusal = "buffer of " + capacity + " events full, Kafka is behind or unreachable";
    } else if (!reserve(bytes)) {
      room.release();
      refusal = "buffer of " + maxBytes + " bytes full, Kafka is behind or unreachable";
    }
    if (refusal != null) {
      dropped.incrementAndGet();
      dropLog.warn("event dropped ({}): topic={} key={} ({} dropped so far)", refusal, topic, key, dropped.get());
      return refusal;
    }
    toSend.addLast(new Pending(new ProducerRecord<>(topic, key, value), bytes, acked));
    return null;
  }

  private boolean reserve(long bytes) {
    for (long held = bytesHeld.get(); ; held = bytesHeld.get()) {
      if (held + bytes > maxBytes) {
        return false;
      }
      if (bytesHeld.compareAndSet(held, held + bytes)) {
        return true;
      }
    }
  }

  /** An event has left the buffer (acknowledged or given up): its room and bytes are free again. */
  private void free(Pending p) {
    bytesHeld.addAndGet(-p.bytes);
    room.release();
  }

  /**
   * The heap an Avro value holds, estimated from its shape: two bytes per character of every string (UTF-16, the
   * most a Java string takes), the bytes of byte arrays, and a small overhead per object. Walks the fields only;
   * never copies or encodes a string.
   */
  static long estimateBytes(Object value) {
    if (value == null) {
      return 0;
    }
    if (value instanceof CharSequence text) {
      return 40 + 2L * text.length();
    }
    if (value instanceof IndexedRecord record) {
      long total = 16;
      for (int i = 0; i < record.getSchema().getFields().size(); i++) {
        total += 8 + estimateBytes(record.get(i));
      }
      return total;
    }
    if (value instanceof Collection<?> items) {
      long total = 24;
      for (Object item : items) {
        total += 8 + estimateBytes(item);
      }
      return total;
    }
    if (value instanceof Map<?, ?> map) {
      long total = 48;
      for (Map.Entry<?, ?> e : map.entrySet()) {
        total += 32 + estimateBytes(e.getKey()) + estimateBytes(e.getValue());
      }
      return total;
    }
    if (value instanceof ByteBuffer buffer) {
      return 48 + buffer.capacity();
    }
    return 16;
  }

  public Stats stats() {
    return new Stats(capacity - room.availablePermits(), sent.get(), dropped.get(), failed.get());
  }

  public int capacity() {
    return capacity;
  }

  /** Estimated bytes of the events held now (see {@link #estimateBytes}). */
  public long bufferedBytes() {
    return bytesHeld.get();
  }

  /** Most estimated bytes the buffer holds. */
  public long maxBytes() {
    return maxBytes;
  }

  private void sendLoop() {
    long backoffMs = 0;
    while (running) {
      Pending event;
      try {
        event = toSend.pollFirst(100, TimeUnit.MILLISECONDS);
      } catch (InterruptedException e) {
        return;
      }
      if (event == null) {
        continue;
      }
      try {
        inFlight.add(event);
        producer.send(event.record, (metadata, error) -> acknowledged(event, error));
        backoffMs = 0;
      } catch (RuntimeException e) {
        inFlight.remove(event);
        if (isTransient(e) && running) {
          toSend.addFirst(event);
          retryLog.warn("Kafka unreachable, {} events wait in the buffer: {}", stats().buffered(), e.toString());
          backoffMs = Math.min(Math.max(50, backoffMs * 2), 1_000);
          sleep(backoffMs);
        } else {
          giveUp(event, e);
        }
      }
    }
  }

  private void acknowledged(Pending event, Exception error) {
    if (!inFlight.remove(event)) {
      return; // close() gave up on it already
    }
    if (error == null) {
      sent.incrementAndGet();
      free(event);
      if (event.acked != null) {
        event.acked.complete(null);
      }
    } else if (isTransient(error) && running) {
      retryLog.warn("Kafka did not acknowledge in time, {} events wait in the buffer: {}", stats().buffered(),
          error.toString());
      toSend.addLast(event);
    } else {
      giveUp(event, error);
    }
  }

  private void giveUp(Pending event, Exception error) {
    failed.incrementAndGet();
    free(event);
    log.error("event lost, Kafka did not take it: topic={} key={}: {}", event.record.topic(), event.record.key(),
        error.toString());
    if (event.acked != null) {
      event.acked.completeExceptionally(error);
    }
  }

  /** Errors that pass when Kafka or the registry comes back: Kafka's retriable errors and I/O failures. */
  static boolean isTransient(Throwable error) {
    for (Throwable t = error; t != null; t = t.getCause()) {
      if (t instanceof RetriableException || t instanceof IOException) {
        return true;
      }
      if (t.getCause() == t) {
        break;
      }
    }
    return false;
  }

  /**
   * Stops accepting events, waits up to {@code timeout} for the buffer to reach Kafka, and closes the producer.
   * Returns the number of events that did not reach Kafka; each is logged.
   */
  public long close(Duration timeout) {
    accepting = false;
    long deadline = System.nanoTime() + timeout.toNanos();
    while (room.availablePermits() < capacity && System.nanoTime() < deadline) {
      sleep(10);
    }
    running = false;
    sender.interrupt();
    try {
      sender.join(1_000);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    producer.close(Duration.ofMillis(Math.max(0, (deadline - System.nanoTime()) / 1_000_000)));
    long undelivered = 0;
    for (Pending event; (event = toSend.pollFirst()) != null; ) {
      undelivered++;
      dropped.incrementAndGet();
      free(event);
      log.warn("event not delivered before shutdown: topic={} key={}", event.record.topic(), event.record.key());
      if (event.acked != null) {
        event.acked.completeExceptionally(new BufferFull("shutting down before Kafka acknowledged the event"));
      }
    }
    // Handed to the producer but never acknowledged, and not failed by its close either.
    long unacknowledged = 0;
    for (Pending event : List.copyOf(inFlight)) {
      if (inFlight.remove(event)) {
        unacknowledged++;
        dropped.incrementAndGet();
        free(event);
        if (event.acked != null) {
          event.acked.completeExceptionally(new BufferFull("shutting down before Kafka acknowledged the event"));
        }
      }
    }
    if (unacknowledged > 0) {
      log.warn("{} events handed to Kafka were not acknowledged before shutdown", unacknowledged);
    }
    if (undelivered + unacknowledged > 0) {
      log.warn("{} events did not reach Kafka before shutdown", undelivered + unacknowledged);
    }
    return undelivered + unacknowledged;
  }

  @Override
  public void close() {
    close(Duration.ofSeconds(10));
  }

  private static void sleep(long ms) {
    try {
      Thread.sleep(ms);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  /** Logs the first {@code burst} messages of each window and then a count of the ones it held back. */
  static final class RateLimitedLog {
    private final Logger logger;
    private final long windowNanos;
    private final int burst;
    private long windowStart = Long.MIN_VALUE;
    private int logged;
    private long suppressed;

    RateLimitedLog(Logger logger, Duration window, int burst) {
      this.logger = logger;
      this.windowNanos = window.toNanos();
      this.burst = burst;
    }

    synchronized void warn(String format, Object... args) {
      long now = System.nanoTime();
      if (windowStart == Long.MIN_VALUE || now - windowStart >= windowNanos) {
        if (suppressed > 0) {
          logger.warn("... and {} more like it in the last {} s", suppressed, windowNanos / 1_000_000_000);
        }
        windowStart = now;
        logged = 0;
        suppressed = 0;
      }
      if (logged < burst) {
        logged++;
        logger.warn(format, args);
      } else {
        suppressed++;
      }
    }
  }
}
