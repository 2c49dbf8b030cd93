package io.vllmtrain.streams;

import io.vllmtrain.events.FeedbackEvent;
import io.vllmtrain.events.PreferencePair;
import io.vllmtrain.events.PromptEvent;
import io.vllmtrain.events.ResponseEvent;
import io.vllmtrain.schemas.Topics;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Set;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serializer;
import org.apache.kafka.streams.processor.PunctuationType;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.ProcessorSupplier;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.processor.api.RecordMetadata;
import org.apache.kafka.streams.state.StoreBuilder;

/**
 * Joins prompts, responses and feedback by request id (the three topics are co-partitioned, so one task sees all
 * events of a request) and applies the {@link PreferencePairer} rules. Input values arrive as bytes and are decoded
 * here, so a record that cannot be decoded or validated goes to the DLQ instead of stopping the app.
 *
 * <p>State per request: its prompt and responses ({@link #EVENTS_STORE}), its feedback ({@link #FEEDBACK_STORE}),
 * and wake-ups for the grace period and retention ({@link #DEADLINES_STORE}), driven by stream time. These stores
 * have one key per request, so a record cache would only fill up and evict (write) entries one by one; they write
 * through, leaving the thread's cache to {@link BatchAssembler}, whose pairs it absorbs (see there).
 *
 * <p>Limits: a record that would make one of its request's state values larger than
 * {@link RecordLimits#stateMaxBytes()} changes nothing and goes to the DLQ ({@code STATE_TOO_LARGE}); so does
 * feedback that completes a pair too large for a batch ({@code PAIR_TOO_LARGE}). Each pair is encoded here, once.
 */
final class RequestProcessor implements Processor<byte[], byte[], String, Emission> {
  static final String EVENTS_STORE = "request-events";
  static final String FEEDBACK_STORE = "request-feedback";
  static final String DEADLINES_STORE = "request-deadlines";
  /** How often, in stream time, due wake-ups are handled. */
  static final Duration EXPIRY_CHECK = Duration.ofSeconds(1);
  /** How long a record whose schema the registry cannot give now is retried before the stream thread gives up. */
  static final Duration RETRY_IN_PLACE = Duration.ofSeconds(3);

  private final PreferencePairer pairer;
  private final Deserializer<Object> decoder;
  private final Serializer<PreferencePair> pairEncoder;
  private final BatchPolicy batching;
  private final RecordLimits limits;
  private final PairingMetrics metrics;
  private final DeadLetters deadLetters;
  private ProcessorContext<String, Emission> context;
  private BoundedStore<RequestEvents> events;
  private BoundedStore<FeedbackState> feedback;
  private DeadlineIndex deadlines;

  RequestProcessor(PreferencePairer pairer, Deserializer<Object> decoder, Serializer<PreferencePair> pairEncoder,
                   BatchPolicy batching, RecordLimits limits, PairingMetrics metrics) {
    this.pairer = pairer;
    this.decoder = decoder;
    this.pairEncoder = pairEncoder;
    this.batching = batching;
    this.limits = limits;
    this.metrics = metrics;
    this.deadLetters = new DeadLetters(limits.deadLetterMaxBytes());
  }

  static ProcessorSupplier<byte[], byte[], String, Emission> supplier(PreferencePairer pairer,
      Deserializer<Object> decoder, Serializer<PreferencePair> pairEncoder, BatchPolicy batching,
      RecordLimits limits, PairingMetrics metrics) {
    return new ProcessorSupplier<>() {
      @Override
      public Processor<byte[], byte[], String, Emission> get() {
        return new RequestProcessor(pairer, decoder, pairEncoder, batching, limits, metrics);
      }

      @Override
      public Set<StoreBuilder<?>> stores() {
        return Set.of(BoundedStore.builder(EVENTS_STORE), BoundedStore.builder(FEEDBACK_STORE),
            DeadlineIndex.storeBuilder(DEADLINES_STORE));
      }
    };
  }

  @Override
  public void init(ProcessorContext<String, Emission> context) {
    this.context = context;
    events = new BoundedStore<>(context.getStateStore(EVENTS_STORE), StateSerdes.requestEvents(),
        limits.stateMaxBytes());
    feedback = new BoundedStore<>(context.getStateStore(FEEDBACK_STORE), StateSerdes.feedbackState(),
        limits.stateMaxBytes());
    deadlines = new DeadlineIndex(context.getStateStore(DEADLINES_STORE));
    context.schedule(EXPIRY_CHECK, PunctuationType.STREAM_TIME, this::expire);
  }

  @Override
  public void process(Record<byte[], byte[]> record) {
    RecordMetadata md = context.recordMetadata().orElseThrow();
    SourceRecord source = new SourceRecord(md.topic(), md.partition(), md.offset(), record.key(), record.value());
    metrics.recordIn(md.topic());
    String key = record.key() == null ? null : new String(record.key(), StandardCharsets.UTF_8);
    Object event;
    try {
      if (record.value() == null) {
        deadLetter(source, record, DlqReason.INVALID, "the record has no value");
        return;
      }
      event = decode(md.topic(), record);
    } catch (TransientFailure e) {
      throw e;
    } catch (RuntimeException e) {
      deadLetter(source, record, DlqReason.UNDECODABLE, message(e));
      return;
    }
    try {
      if (md.topic().equals(Topics.PROMPTS.name()) && event instanceof PromptEvent p) {
        onPrompt(key, p, record, source);
      } else if (md.topic().equals(Topics.RESPONSES.name()) && event instanceof ResponseEvent r) {
        onResponse(key, r, record, source);
      } else if (md.topic().equals(Topics.FEEDBACK.name()) && event instanceof FeedbackEvent f) {
        onFeedback(key, f, record, source);
      } else {
        deadLetter(source, record, DlqReason.WRONG_TYPE, (event == null ? "null" : event.getClass().getSimpleName())
            + " does not belong on " + md.topic());
      }
    } catch (KafkaException e) {
      throw e; // store or Kafka trouble: let Kafka Streams handle it (the transaction aborts, nothing is lost)
    } catch (RuntimeException e) {
      deadLetter(source, record, DlqReason.PROCESSING_ERROR, message(e));
    }
  }

  private void onPrompt(String key, PromptEvent prompt, Record<byte[], byte[]> record, SourceRecord source) {
    EventValidator.Problem problem = EventValidator.prompt(key, prompt);
    if (problem != null) {
      deadLetter(source, record, problem.reason(), problem.detail());
      return;
    }
    RequestEvents before = events.get(key);
    RequestEvents after = orEmpty(before, record).withPrompt(prompt);
    if (after != before) {
      changeRequest(key, before, after, record, source);
    }
  }

  private void onResponse(String key, ResponseEvent response, Record<byte[], byte[]> record, SourceRecord source) {
    EventValidator.Problem problem = EventValidator.response(key, response);
    if (problem != null) {
      deadLetter(source, record, problem.reason(), problem.detail());
      return;
    }
    RequestEvents before = events.get(key);
    RequestEvents after = orEmpty(before, record).withResponse(response);
    if (after != before) {
      changeRequest(key, before, after, record, source);
    }
  }

  private static RequestEvents orEmpty(RequestEvents events, Record<byte[], byte[]> record) {
    return events != null ? events : RequestEvents.empty(record.timestamp());
  }

  /**
   * Stores a request's new prompt or response and takes in the feedback that waited for it, or, if either state
   * value would be too large, refuses the record and writes nothing.
   */
  private void changeRequest(String key, RequestEvents before, RequestEvents after, Record<byte[], byte[]> record,
                             SourceRecord source) {
    byte[] encoded = events.encode(after);
    if (!events.fits(encoded)) {
      deadLetter(source, record, DlqReason.STATE_TOO_LARGE, events.tooLarge(key, encoded));
      return;
    }
    FeedbackState state = feedback.get(key);
    PreferencePairer.Outcome outcome = null;
    byte[] feedbackEncoded = null;
    if (state != null && !state.pending().isEmpty()) {
      outcome = pairer.onRequestChanged(after, state, record.timestamp());
      feedbackEncoded = feedback.encode(outcome.state());
      if (!feedback.fits(feedbackEncoded)) {
        deadLetter(source, record, DlqReason.STATE_TOO_LARGE, feedback.tooLarge(key, feedbackEncoded)
            + " once the feedback waiting for this record is taken in");
        return;
      }
    }
    if (before == null) {
      deadlines.schedule(pairer.retentionDeadline(after.firstSeenMs()), key);
    }
    events.put(key, encoded);
    if (outcome != null) {
      feedback.put(key, feedbackEncoded);
      emit(outcome, record.timestamp());
    }
  }

  private void onFeedback(String key, FeedbackEvent event, Record<byte[], byte[]> record, SourceRecord source) {
    EventValidator.Problem problem = EventValidator.feedback(key, event);
    if (problem != null) {
      deadLetter(source, record, problem.reason(), problem.detail());
      metrics.feedback("DLQ");
      return;
    }
    FeedbackState state = feedback.get(key);
    RequestEvents request = events.get(key);
    ReceivedFeedback received = new ReceivedFeedback(event, record.timestamp(), source);
    PreferencePairer.Outcome outcome = pairer.onFeedback(request, state, received);
    PreferencePairer.Verdict verdict = outcome.verdict();
    if (verdict == PreferencePairer.Verdict.DUPLICATE || verdict == PreferencePairer.Verdict.REFUSED) {
      if (verdict == PreferencePairer.Verdict.DUPLICATE) {
        metrics.feedback(verdict.name());
      }
      emit(outcome, record.timestamp()); // a refusal is a dead letter
      return;
    }
    byte[] encoded = feedback.encode(outcome.state());
    if (!feedback.fits(encoded)) {
      deadLetter(source, record, DlqReason.STATE_TOO_LARGE, feedback.tooLarge(key, encoded));
      metrics.feedback("DLQ");
      return;
    }
    metrics.feedback(verdict.name());
    if (state == null && request == null) {
      // Otherwise the request's own retention wake-up forgets its feedback along with it.
      deadlines.schedule(pairer.orphanDeadline(outcome.state().firstSeenMs()), key);
    }
    if (verdict == PreferencePairer.Verdict.PENDING) {
      deadlines.schedule(pairer.pendingDeadline(received), key);
    }
    feedback.put(key, encoded);
    emit(outcome, record.timestamp());
  }

  /** Stream-time wake-up: feedback past its grace period goes to the DLQ; requests past retention are forgotten. */
  private void expire(long now) {
    for (String key : deadlines.takeDue(now)) {
      RequestEvents request = events.get(key);
      FeedbackState state = feedback.get(key);
      PreferencePairer.Outcome outcome = pairer.expire(request, state, now);
      if (outcome.state() == null) {
        if (state != null) {
          feedback.delete(key);
        }
      } else if (!outcome.state().equals(state)) {
        feedback.put(key, feedback.encode(outcome.state())); // only shrinks: waiting feedback leaves
      }
      if (request != null && pairer.expired(request.firstSeenMs(), now)) {
        events.delete(key);
      }
      emit(outcome, now);
    }
  }

  private void emit(PreferencePairer.Outcome outcome, long timestamp) {
    for (PreferencePair pair : outcome.pairs()) {
      byte[] bytes = pairEncoder.serialize(Topics.PREFERENCE_PAIRS.name(), pair);
      if (!batching.fits(bytes.length)) {
        ReceivedFeedback by = outcome.formedBy().get(pair.getPairId());
        context.forward(deadLetters.record(by.source(), null, DlqReason.PAIR_TOO_LARGE, "feedback " + by.id()
            + " forms a pair of " + bytes.length + " bytes, too large for a batch (" + StreamsAppConfig.BATCH_MAX_BYTES
            + " = " + batching.maxBytes() + ")", timestamp));
        metrics.deadLetter(DlqReason.PAIR_TOO_LARGE);
        metrics.recordOut(Topics.DLQ.name());
        continue;
      }
      context.forward(new Record<>(pair.getPairId(), new Emission.Pair(new EncodedPair(pair, bytes)), timestamp,
          new RecordHeaders()));
      metrics.pair(pair.getSource().name());
      metrics.recordOut(Topics.PREFERENCE_PAIRS.name());
    }
    for (RatedResponse rated : outcome.rated()) {
      context.forward(new Record<>(rated.promptKey(), new Emission.Candidate(rated), timestamp, new RecordHeaders()));
    }
    for (PreferencePairer.Rejection r : outcome.rejected()) {
      context.forward(deadLetters.record(r.feedback().source(), null, r.reason(), r.detail(), timestamp));
      metrics.deadLetter(r.reason());
      metrics.recordOut(Topics.DLQ.name());
      metrics.feedback("DLQ");
    }
  }

  private void deadLetter(SourceRecord source, Record<byte[], byte[]> record, DlqReason reason, String detail) {
    context.forward(deadLetters.record(source, record.headers(), reason, detail, record.timestamp()));
    metrics.deadLetter(reason);
    metrics.recordOut(Topics.DLQ.name());
  }

  /**
   * Decodes a value; while the registry gives no definite answer, tries again after 100, 200, 400... ms for up to
   * {@link #RETRY_IN_PLACE} (well inside the transaction timeout), then throws a {@link TransientFailure}: the
   * stream thread is replaced and reads the record again. A short outage costs no task restore that way.
   */
  private Object decode(String topic, Record<byte[], byte[]> record) {
    long giveUp = System.nanoTime() + RETRY_IN_PLACE.toNanos();
    long pauseMs = 100;
    while (true) {
      try {
        return decoder.deserialize(topic, record.headers(), record.value());
      } catch (RuntimeException e) {
        if (!TransientFailure.isCause(e)) {
          throw e;
        }
        if (System.nanoTime() + pauseMs * 1_000_000 > giveUp) {
          throw new TransientFailure("cannot decode a record of " + topic + " now (" + message(e)
              + "); the stream thread restarts and reads it again", e);
        }
        try {
          Thread.sleep(pauseMs);
        } catch (InterruptedException interrupted) {
          Thread.currentThread().interrupt();
          throw new TransientFailure("interrupted while waiting for the registry", e);
        }
        pauseMs = Math.min(pauseMs * 2, 1000);
      }
    }
  }

  private static String message(Throwable e) {
    String m = e.getMessage();
    return e.getClass().getSimpleName() + (m == null ? "" : ": " + m.lines().findFirst().orElse(""));
  }
}
