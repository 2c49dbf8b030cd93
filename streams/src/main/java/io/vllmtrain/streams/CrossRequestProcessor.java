package io.vllmtrain.streams;

import io.vllmtrain.events.PreferencePair;
import io.vllmtrain.schemas.Topics;
import java.util.Set;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.processor.PunctuationType;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.ProcessorSupplier;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.StoreBuilder;
import org.apache.kafka.streams.state.Stores;

/**
 * Pairs rated responses to the same normalised prompt across requests. Its input is repartitioned by
 * {@link PromptKey}, so every rating of one prompt meets in one task; per prompt it keeps the latest rated responses
 * ({@link #CANDIDATES_STORE}) until they leave retention.
 */
final class CrossRequestProcessor implements Processor<String, RatedResponse, String, PreferencePair> {
  static final String CANDIDATES_STORE = "cross-request-candidates";
  static final String DEADLINES_STORE = "cross-request-deadlines";

  private final PreferencePairer pairer;
  private final PairingMetrics metrics;
  private ProcessorContext<String, PreferencePair> context;
  private KeyValueStore<String, CandidateSet> candidates;
  private DeadlineIndex deadlines;

  CrossRequestProcessor(PreferencePairer pairer, PairingMetrics metrics) {
    this.pairer = pairer;
    this.metrics = metrics;
  }

  static ProcessorSupplier<String, RatedResponse, String, PreferencePair> supplier(PreferencePairer pairer,
                                                                                  PairingMetrics metrics) {
    return new ProcessorSupplier<>() {
      @Override
      public Processor<String, RatedResponse, String, PreferencePair> get() {
        return new CrossRequestProcessor(pairer, metrics);
      }

      @Override
      public Set<StoreBuilder<?>> stores() {
        return Set.of(
            Stores.keyValueStoreBuilder(Stores.persistentKeyValueStore(CANDIDATES_STORE), Serdes.String(),
                StateSerdes.candidateSet()).withCachingDisabled(),
            DeadlineIndex.storeBuilder(DEADLINES_STORE));
      }
    };
  }

  @Override
  public void init(ProcessorContext<String, PreferencePair> context) {
    this.context = context;
    candidates = context.getStateStore(CANDIDATES_STORE);
    deadlines = new DeadlineIndex(context.getStateStore(DEADLINES_STORE));
    context.schedule(RequestProcessor.EXPIRY_CHECK, PunctuationType.STREAM_TIME, this::expire);
  }

  @Override
  public void process(Record<String, RatedResponse> record) {
    CandidateSet before = candidates.get(record.key());
    PreferencePairer.CrossOutcome outcome = pairer.offer(before, record.value());
    candidates.put(record.key(), outcome.set());
    if (before == null) {
      deadlines.schedule(pairer.retentionDeadline(outcome.set().oldestTimestamp()), record.key());
    }
    for (PreferencePair pair : outcome.pairs()) {
      context.forward(new Record<>(pair.getPairId(), pair, record.timestamp(), new RecordHeaders()));
      metrics.pair(pair.getSource().name());
      metrics.recordOut(Topics.PREFERENCE_PAIRS.name());
    }
  }

  /** Drops candidates past retention and wakes up again when the oldest remaining one expires. */
  private void expire(long now) {
    for (String key : deadlines.takeDue(now)) {
      CandidateSet set = pairer.expire(candidates.get(key), now);
      if (set == null) {
        candidates.delete(key);
      } else {
        candidates.put(key, set);
        deadlines.schedule(pairer.retentionDeadline(set.oldestTimestamp()), key);
      }
    }
  }
}
