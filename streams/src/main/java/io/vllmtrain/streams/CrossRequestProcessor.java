package io.vllmtrain.streams;

import io.vllmtrain.events.PreferencePair;
import io.vllmtrain.schemas.Topics;
import java.nio.charset.StandardCharsets;
import java.util.Set;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.common.serialization.Serializer;
import org.apache.kafka.streams.processor.PunctuationType;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.ProcessorSupplier;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.processor.api.RecordMetadata;
import org.apache.kafka.streams.state.StoreBuilder;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Pairs rated responses to the same normalised prompt across requests. Its input is repartitioned by
 * {@link PromptKey}, so every rating of one prompt meets in one task; per prompt it keeps the latest rated responses
 * ({@link #CANDIDATES_STORE}) until they leave retention, and fewer when together they would be larger than
 * {@link RecordLimits#stateMaxBytes()} (the oldest go first). A pair too large for a batch goes to the DLQ (its
 * own bytes: the feedback behind it was taken in by {@link RequestProcessor}).
 */
final class CrossRequestProcessor implements Processor<String, RatedResponse, String, Emission> {
  static final String CANDIDATES_STORE = "cross-request-candidates";
  static final String DEADLINES_STORE = "cross-request-deadlines";
  private static final Logger LOG = LoggerFactory.getLogger(CrossRequestProcessor.class);

  private final PreferencePairer pairer;
  private final Serializer<PreferencePair> pairEncoder;
  private final BatchPolicy batching;
  private final RecordLimits limits;
  private final PairingMetrics metrics;
  private final DeadLetters deadLetters;
  private ProcessorContext<String, Emission> context;
  private BoundedStore<CandidateSet> candidates;
  private DeadlineIndex deadlines;

  CrossRequestProcessor(PreferencePairer pairer, Serializer<PreferencePair> pairEncoder, BatchPolicy batching,
                        RecordLimits limits, PairingMetrics metrics) {
    this.pairer = pairer;
    this.pairEncoder = pairEncoder;
    this.batching = batching;
    this.limits = limits;
    this.metrics = metrics;
    this.deadLetters = new DeadLetters(limits.deadLetterMaxBytes());
  }

  static ProcessorSupplier<String, RatedResponse, String, Emission> supplier(PreferencePairer pairer,
      Serializer<PreferencePair> pairEncoder, BatchPolicy batching, RecordLimits limits, PairingMetrics metrics) {
    return new ProcessorSupplier<>() {
      @Override
      public Processor<String, RatedResponse, String, Emission> get() {
        return new CrossRequestProcessor(pairer, pairEncoder, batching, limits, metrics);
      }

      @Override
      public Set<StoreBuilder<?>> stores() {
        return Set.of(BoundedStore.builder(CANDIDATES_STORE), DeadlineIndex.storeBuilder(DEADLINES_STORE));
      }
    };
  }

  @Override
  public void init(ProcessorContext<String, Emission> context) {
    this.context = context;
    candidates = new BoundedStore<>(context.getStateStore(CANDIDATES_STORE), StateSerdes.candidateSet(),
        limits.stateMaxBytes());
    deadlines = new DeadlineIndex(context.getStateStore(DEADLINES_STORE));
    context.schedule(RequestProcessor.EXPIRY_CHECK, PunctuationType.STREAM_TIME, this::expire);
  }

  @Override
  public void process(Record<String, RatedResponse> record) {
    CandidateSet before = candidates.get(record.key());
    PreferencePairer.CrossOutcome outcome = pairer.offer(before, record.value());
    CandidateSet kept = outcome.set();
    byte[] encoded = candidates.encode(kept);
    while (!candidates.fits(encoded) && kept.candidates().size() > 1) {
      kept = kept.withoutOldest();
      encoded = candidates.encode(kept);
    }
    if (candidates.fits(encoded)) {
      candidates.put(record.key(), encoded);
      if (before == null) {
        deadlines.schedule(pairer.retentionDeadline(kept.oldestTimestamp()), record.key());
      }
    } else {
      LOG.warn("rated response {} is not kept for cross-request pairing: {}", record.value().responseId(),
          candidates.tooLarge(record.key(), encoded));
    }
    for (PreferencePair pair : outcome.pairs()) {
      emit(pair, record);
    }
  }

  private void emit(PreferencePair pair, Record<String, RatedResponse> record) {
    byte[] bytes = pairEncoder.serialize(Topics.PREFERENCE_PAIRS.name(), pair);
    if (!batching.fits(bytes.length)) {
      RecordMetadata md = context.recordMetadata().orElseThrow();
      SourceRecord source = new SourceRecord(md.topic(), md.partition(), md.offset(),
          pair.getPairId().getBytes(StandardCharsets.UTF_8), bytes);
      String detail = "cross-request pair " + pair.getPairId() + " of feedback " + pair.getFeedbackIds() + " is "
          + bytes.length + " bytes, too large for a batch (" + StreamsAppConfig.BATCH_MAX_BYTES + " = "
          + batching.maxBytes() + "); the value is the pair";
      context.forward(deadLetters.record(source, null, DlqReason.PAIR_TOO_LARGE, detail, record.timestamp()));
      metrics.deadLetter(DlqReason.PAIR_TOO_LARGE);
      metrics.recordOut(Topics.DLQ.name());
      return;
    }
    context.forward(new Record<>(pair.getPairId(), new Emission.Pair(new EncodedPair(pair, bytes)),
        record.timestamp(), new RecordHeaders()));
    metrics.pair(pair.getSource().name());
    metrics.recordOut(Topics.PREFERENCE_PAIRS.name());
  }

  /** Drops candidates past retention and wakes up again when the oldest remaining one expires. */
  private void expire(long now) {
    for (String key : deadlines.takeDue(now)) {
      CandidateSet set = pairer.expire(candidates.get(key), now);
      if (set == null) {
        candidates.delete(key);
      } else {
        candidates.put(key, candidates.encode(set)); // only shrinks
        deadlines.schedule(pairer.retentionDeadline(set.oldestTimestamp()), key);
      }
    }
  }
}
