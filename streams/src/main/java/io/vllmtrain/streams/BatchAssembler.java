package io.vllmtrain.streams;

import io.vllmtrain.events.PreferenceBatch;
import io.vllmtrain.events.PreferencePair;
import io.vllmtrain.schemas.Topics;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;
import org.apache.kafka.streams.processor.PunctuationType;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.ProcessorSupplier;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.StoreBuilder;
import org.apache.kafka.streams.state.Stores;

/**
 * Collects pairs into {@link PreferenceBatch}es: a batch closes when it holds {@link BatchPolicy#size()} pairs, or
 * {@link BatchPolicy#maxWait()} of wall-clock time after its first pair arrived (a wall-clock punctuator checks),
 * whichever comes first, and early when the next pair would take it over {@link BatchPolicy#maxBytes()} (that pair
 * opens the next batch; a pair too large for a batch of its own never gets here). Each task (input partition) fills
 * its own batch. The open batch lives in a store with a changelog, so a restart resumes it; its id hashes the sorted
 * pair ids, so a consumer can de-duplicate.
 *
 * <p>The store is the only one with a record cache: a batch usually fills and closes within one commit interval,
 * so its pairs are put and deleted in the cache and never reach RocksDB or the changelog; only a batch still open
 * at a commit is written out.
 */
final class BatchAssembler implements Processor<String, EncodedPair, String, byte[]> {
  /** Pairs of the open batch under their sequence number, and the batch's {@link OpenBatch} under {@link #OPEN_KEY}. */
  static final String STORE = "batch-open";
  /** Key of the open batch's {@link OpenBatch}; its pairs are under "0", "1", ... in the order they arrived. */
  private static final String OPEN_KEY = "open";
  private static final Serde<OpenBatch> OPEN_SERDE = StateSerdes.openBatch();

  /**
   * When the open batch started; written once per batch (its pairs are counted from the store on restore).
   *
   * @param firstPairWallClockMs wall-clock time the first pair arrived (the max-wait clock starts there)
   * @param windowStartMs        {@code created_at} of the first pair
   */
  record OpenBatch(long firstPairWallClockMs, long windowStartMs) {}

  private final BatchPolicy policy;
  private final Serde<PreferencePair> pairSerde;
  private final BatchEncoder encoder;
  private final PairingMetrics metrics;
  private ProcessorContext<String, byte[]> context;
  private KeyValueStore<String, byte[]> pairs;
  private OpenBatch batch; // null when no batch is open
  private List<EncodedPair> members;
  private long memberBytes; // the members' encodings, in bytes

  BatchAssembler(BatchPolicy policy, Serde<PreferencePair> pairSerde, Serializer<PreferenceBatch> batchSerializer,
      PairingMetrics metrics) {
    this.policy = policy;
    this.pairSerde = pairSerde;
    this.encoder = new BatchEncoder(batchSerializer);
    this.metrics = metrics;
  }

  /**
   * Emits each batch's registry encoding ({@link BatchEncoder}). {@code pairSerde} reads the stored pairs back when a
   * task's state is restored and re-encodes them, so that every pair of a batch is in the current schema.
   */
  static ProcessorSupplier<String, EncodedPair, String, byte[]> supplier(BatchPolicy policy,
      Serde<PreferencePair> pairSerde, Serializer<PreferenceBatch> batchSerializer, PairingMetrics metrics) {
    return new ProcessorSupplier<>() {
      @Override
      public Processor<String, EncodedPair, String, byte[]> get() {
        return new BatchAssembler(policy, pairSerde, batchSerializer, metrics);
      }

      @Override
      public Set<StoreBuilder<?>> stores() {
        return Set.of(
            Stores.keyValueStoreBuilder(Stores.persistentKeyValueStore(STORE), Serdes.String(), Serdes.ByteArray())
                .withCachingEnabled());
      }
    };
  }

  /** Deterministic batch id: a hash of the sorted pair ids. */
  static String batchId(List<String> pairIds) {
    return Hashing.id(pairIds.stream().sorted().toList());
  }

  @Override
  public void init(ProcessorContext<String, byte[]> context) {
    this.context = context;
    pairs = context.getStateStore(STORE);
    // The store is the truth (it survives restarts); the open batch is mirrored in memory so that closing it
    // does not read every pair back. init runs again whenever the task's state is restored, so this reloads.
    batch = OPEN_SERDE.deserializer().deserialize(STORE, pairs.get(OPEN_KEY));
    members = new ArrayList<>(policy.size());
    memberBytes = 0;
    if (batch != null) {
      String topic = Topics.PREFERENCE_PAIRS.name();
      for (byte[] bytes = pairs.get(seqKey(0)); bytes != null; bytes = pairs.get(seqKey(members.size()))) {
        PreferencePair pair = pairSerde.deserializer().deserialize(topic, bytes);
        EncodedPair member = new EncodedPair(pair, pairSerde.serializer().serialize(topic, pair));
        members.add(member);
        memberBytes += member.bytes().length;
      }
    }
    context.schedule(policy.checkInterval(), PunctuationType.WALL_CLOCK_TIME, this::closeIfWaitedEnough);
  }

  @Override
  public void process(Record<String, EncodedPair> record) {
    PreferencePair pair = record.value().pair();
    int bytes = record.value().bytes().length;
    if (batch != null && !policy.fits(memberBytes + bytes)) {
      emitBatch();
    }
    if (batch == null) {
      batch = new OpenBatch(context.currentSystemTimeMs(), pair.getCreatedAt().toEpochMilli());
      pairs.put(OPEN_KEY, OPEN_SERDE.serializer().serialize(STORE, batch));
    }
    // Slots are reused from 0 by every batch: the store (and its cache) never holds more than N + 1 keys.
    pairs.put(seqKey(members.size()), record.value().bytes());
    members.add(record.value());
    memberBytes += bytes;
    if (members.size() >= policy.size()) {
      emitBatch();
    }
  }

  private void closeIfWaitedEnough(long wallClockMs) {
    if (batch != null && wallClockMs - batch.firstPairWallClockMs() >= policy.maxWait().toMillis()) {
      emitBatch();
    }
  }

  private void emitBatch() {
    for (int i = 0; i < members.size(); i++) {
      pairs.delete(seqKey(i));
    }
    pairs.delete(OPEN_KEY);
    long now = context.currentSystemTimeMs();
    String id = batchId(members.stream().map(p -> p.pair().getPairId()).toList());
    byte[] out = encoder.encode(Topics.PREFERENCE_BATCHES.name(), id, members, batch.windowStartMs(), now);
    batch = null;
    members.clear();
    memberBytes = 0;
    context.forward(new Record<>(id, out, now, new RecordHeaders()));
    metrics.batch();
    metrics.recordOut(Topics.PREFERENCE_BATCHES.name());
  }

  private static String seqKey(int slot) {
    return Integer.toString(slot);
  }
}
