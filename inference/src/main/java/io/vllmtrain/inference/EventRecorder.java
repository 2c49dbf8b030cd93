package io.vllmtrain.inference;

import io.vllmtrain.schemas.AvroSerdes;
import io.vllmtrain.schemas.KafkaSettings;
import java.io.IOException;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.LinkedBlockingDeque;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
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
 * Event capture that never blocks or fails a user's request. {@link #record} puts the event in a bounded buffer
 * and returns at once; one sender thread hands events to an idempotent Kafka producer. An event leaves the buffer
 * only when Kafka has acknowledged it: while Kafka or the schema registry is unreachable, events wait and are sent
 * again. What the buffer cannot hold, what Kafka refuses for good, and what is still unsent at shutdown is counted
 * and logged with its topic and key (the request id), never dropped silently.
 */
public final class EventRecorder implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(EventRecorder.class);

  /** Events accepted but not acknowledged yet, and the totals so far. */
  public record Stats(long buffered, long sent, long dropped, long failed) {}

  private final Producer<String, SpecificRecord> producer;
  private final int capacity;
  // One permit per event that may be held; released when Kafka acknowledges the event or it is given up.
  private final Semaphore room;
  private final LinkedBlockingDeque<ProducerRecord<String, SpecificRecord>> toSend = new LinkedBlockingDeque<>();
  private final AtomicLong sent = new AtomicLong();
  private final AtomicLong dropped = new AtomicLong();
  private final AtomicLong failed = new AtomicLong();
  private final RateLimitedLog dropLog = new RateLimitedLog(log, Duration.ofSeconds(10), 10);
  private final RateLimitedLog retryLog = new RateLimitedLog(log, Duration.ofSeconds(10), 1);
  private final Thread sender;
  private volatile boolean accepting = true;
  private volatile boolean running = true;

  public EventRecorder(Producer<String, SpecificRecord> producer, int capacity) {
    if (capacity < 1) {
      throw new IllegalArgumentException("capacity must be at least 1, got " + capacity);
    }
    this.producer = producer;
    this.capacity = capacity;
    this.room = new Semaphore(capacity);
    this.sender = new Thread(this::sendLoop, "event-sender");
    sender.setDaemon(true);
    sender.start();
  }

  /** A recorder over an idempotent producer with the registry's Avro serializer. */
  public static EventRecorder forKafka(KafkaSettings settings, int capacity) {
    return new EventRecorder(
        new KafkaProducer<>(producerProperties(settings), new StringSerializer(),
            AvroSerdes.<SpecificRecord>valueSerializer(settings)),
        capacity);
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
   * Queues an event for Kafka and returns at once. Returns false when the buffer is full or the recorder is closed:
   * the event is then counted as dropped and logged.
   */
  public boolean record(String topic, String key, SpecificRecord value) {
    if (!accepting || !room.tryAcquire()) {
      dropped.incrementAndGet();
      dropLog.warn("event dropped ({}): topic={} key={} ({} dropped so far)",
          accepting ? "buffer of " + capacity + " full, Kafka is behind or unreachable" : "recorder closed",
          topic, key, dropped.get());
      return false;
    }
    toSend.addLast(new ProducerRecord<>(topic, key, value));
    return true;
  }

  public Stats stats() {
    return new Stats(capacity - room.availablePermits(), sent.get(), dropped.get(), failed.get());
  }

  public int capacity() {
    return capacity;
  }

  private void sendLoop() {
    long backoffMs = 0;
    while (running) {
      ProducerRecord<String, SpecificRecord> event;
      try {
        event = toSend.pollFirst(100, TimeUnit.MILLISECONDS);
      } catch (InterruptedException e) {
        return;
      }
      if (event == null) {
        continue;
      }
      try {
        producer.send(event, (metadata, error) -> acknowledged(event, error));
        backoffMs = 0;
      } catch (RuntimeException e) {
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

  private void acknowledged(ProducerRecord<String, SpecificRecord> event, Exception error) {
    if (error == null) {
      sent.incrementAndGet();
      room.release();
    } else if (isTransient(error) && running) {
      retryLog.warn("Kafka did not acknowledge in time, {} events wait in the buffer: {}", stats().buffered(),
          error.toString());
      toSend.addLast(event);
    } else {
      giveUp(event, error);
    }
  }

  private void giveUp(ProducerRecord<String, SpecificRecord> event, Exception error) {
    failed.incrementAndGet();
    room.release();
    log.error("event lost, Kafka did not take it: topic={} key={}: {}", event.topic(), event.key(),
        error.toString());
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
    for (ProducerRecord<String, SpecificRecord> event; (event = toSend.pollFirst()) != null; ) {
      undelivered++;
      dropped.incrementAndGet();
      room.release();
      log.warn("event not delivered before shutdown: topic={} key={}", event.topic(), event.key());
    }
    // Handed to the producer but never acknowledged, and not failed by its close either.
    int unacknowledged = capacity - room.availablePermits();
    if (unacknowledged > 0) {
      dropped.addAndGet(unacknowledged);
      room.release(unacknowledged);
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
