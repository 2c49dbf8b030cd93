package io.vllmtrain.streams;

import io.vllmtrain.events.PreferenceBatch;
import io.vllmtrain.events.PreferencePair;
import io.vllmtrain.schemas.Topics;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.processor.PunctuationType;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.ProcessorSupplier;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.KeyValueIterator;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.StoreBuilder;
import org.apache.kafka.streams.state.Stores;

/**
 * Collects pairs into {@link PreferenceBatch}es: a batch closes when it holds {@link BatchPolicy#size()} pairs, or
 * {@link BatchPolicy#maxWait()} of wall-clock time after its first pair arrived (a wall-clock punctuator checks),
 * whichever comes first. Each task (input partition) fills its own batch. The open batch lives in stores with
 * changelogs, so a restart resumes it; its id hashes the sorted pair ids, so a consumer can de-duplicate.
 */
final class BatchAssembler implements Processor<String, PreferencePair, String, PreferenceBatch> {
  static final String PAIRS_STORE = "batch-pairs";
  static final String OPEN_STORE = "batch-open";
  private static final String OPEN_KEY = "open";

  /**
   * The open batch: its pairs are {@code batch-pairs} entries {@code firstSeq .. firstSeq+size-1}.
   *
   * @param firstPairWallClockMs wall-clock time the first pair arrived (the max-wait clock starts there)
   * @param windowStartMs        {@code created_at} of the first pair
   */
  record OpenBatch(long firstPairWallClockMs, long windowStartMs, long firstSeq, int size) {}

  private final BatchPolicy policy;
  private final PairingMetrics metrics;
  private ProcessorContext<String, PreferenceBatch> context;
  private KeyValueStore<String, PreferencePair> pairs;
  private KeyValueStore<String, OpenBatch> open;

  BatchAssembler(BatchPolicy policy, PairingMetrics metrics) {
    this.policy = policy;
    this.metrics = metrics;
  }

  static ProcessorSupplier<String, PreferencePair, String, PreferenceBatch> supplier(BatchPolicy policy,
                                                                                    PairingMetrics metrics) {
    return new ProcessorSupplier<>() {
      @Override
      public Processor<String, PreferencePair, String, PreferenceBatch> get() {
        return new BatchAssembler(policy, metrics);
      }

      @Override
      public Set<StoreBuilder<?>> stores() {
        return Set.of(
            Stores.keyValueStoreBuilder(Stores.persistentKeyValueStore(PAIRS_STORE), Serdes.String(),
                StateSerdes.pair()).withCachingEnabled(),
            Stores.keyValueStoreBuilder(Stores.persistentKeyValueStore(OPEN_STORE), Serdes.String(),
                StateSerdes.openBatch()).withCachingEnabled());
      }
    };
  }

  /** Deterministic batch id: a hash of the sorted pair ids. */
  static String batchId(List<String> pairIds) {
    return Hashing.id(pairIds.stream().sorted().toList());
  }

  @Override
  public void init(ProcessorContext<String, PreferenceBatch> context) {
    this.context = context;
    pairs = context.getStateStore(PAIRS_STORE);
    open = context.getStateStore(OPEN_STORE);
    context.schedule(policy.checkInterval(), PunctuationType.WALL_CLOCK_TIME, this::closeIfWaitedEnough);
  }

  @Override
  public void process(Record<String, PreferencePair> record) {
    OpenBatch batch = open.get(OPEN_KEY);
    if (batch == null) {
      batch = new OpenBatch(0, 0, 0, 0);
    }
    if (batch.size() == 0) {
      batch = new OpenBatch(context.currentSystemTimeMs(), record.value().getCreatedAt().toEpochMilli(),
          batch.firstSeq(), 0);
    }
    pairs.put(seqKey(batch.firstSeq() + batch.size()), record.value());
    batch = new OpenBatch(batch.firstPairWallClockMs(), batch.windowStartMs(), batch.firstSeq(), batch.size() + 1);
    if (batch.size() >= policy.size()) {
      close(batch);
    } else {
      open.put(OPEN_KEY, batch);
    }
  }

  private void closeIfWaitedEnough(long wallClockMs) {
    OpenBatch batch = open.get(OPEN_KEY);
    if (batch != null && batch.size() > 0
        && wallClockMs - batch.firstPairWallClockMs() >= policy.maxWait().toMillis()) {
      close(batch);
    }
  }

  private void close(OpenBatch batch) {
    List<PreferencePair> members = new ArrayList<>(batch.size());
    List<String> keys = new ArrayList<>(batch.size());
    try (KeyValueIterator<String, PreferencePair> it =
             pairs.range(seqKey(batch.firstSeq()), seqKey(batch.firstSeq() + batch.size() - 1))) {
      it.forEachRemaining(kv -> {
        keys.add(kv.key);
        members.add(kv.value);
      });
    }
    keys.forEach(pairs::delete);
    long now = context.currentSystemTimeMs();
    PreferenceBatch out = PreferenceBatch.newBuilder()
        .setBatchId(batchId(members.stream().map(PreferencePair::getPairId).toList()))
        .setPairs(members)
        .setWindowStart(Instant.ofEpochMilli(batch.windowStartMs()))
        .setWindowEnd(Instant.ofEpochMilli(now))
        .build();
    open.put(OPEN_KEY, new OpenBatch(0, 0, batch.firstSeq() + batch.size(), 0));
    context.forward(new Record<>(out.getBatchId(), out, now, new RecordHeaders()));
    metrics.batch();
    metrics.recordOut(Topics.PREFERENCE_BATCHES.name());
  }

  private static String seqKey(long seq) {
    return String.format("%019d", seq);
  }
}
