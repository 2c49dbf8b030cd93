package io.vllmtrain.streams;

import java.util.Map;
import java.util.concurrent.atomic.AtomicBoolean;
import org.apache.kafka.streams.state.RocksDBConfigSetter;
import org.rocksdb.CompactionStyle;
import org.rocksdb.Options;
import org.rocksdb.Priority;

/**
 * The app's RocksDB settings (Kafka Streams' {@code rocksdb.config.setter}; {@code kafka.rocksdb.config.setter}
 * replaces them): incremental (level) compaction at the lowest CPU priority, so that compactions never take a core
 * away from the stream thread in one burst.
 *
 * <p>Why: the per-request stores grow with every request, and Kafka Streams' default universal compaction merges a
 * store's sorted runs into one file, a burst of a full core for about a second that grows with the store. In the
 * benchmark (2 cores shared with the broker, 20,000 feedback events/s) each burst starved the stream thread and put a
 * 300-500 ms stall into the feedback-to-pair latency. Level compaction with dynamically sized levels compacts in
 * steps of a few files: RocksDB's background CPU fell from 0.5-1.0 s to 0.2 s per 10 s and the stalls disappeared
 * (streams/bench/RESULTS.md). At nice 19, what compaction remains runs on idle cycles; memtable flushes, which
 * writes wait for, keep their normal priority.
 */
public final class RocksDBSettings implements RocksDBConfigSetter {
  /** Target size of a compaction output file, and of the base level (4 files). */
  static final long TARGET_FILE_BYTES = 16L << 20;
  /** RocksDB's background threads belong to its process-wide default environment: lowered once. */
  private static final AtomicBoolean COMPACTION_PRIORITY_LOWERED = new AtomicBoolean();

  @Override
  public void setConfig(String storeName, Options options, Map<String, Object> configs) {
    options.setCompactionStyle(CompactionStyle.LEVEL);
    options.setLevelCompactionDynamicLevelBytes(true);
    options.setTargetFileSizeBase(TARGET_FILE_BYTES);
    options.setMaxBytesForLevelBase(4 * TARGET_FILE_BYTES);
    if (COMPACTION_PRIORITY_LOWERED.compareAndSet(false, true)) {
      options.getEnv().lowerThreadPoolCPUPriority(Priority.LOW);
    }
  }

  @Override
  public void close(String storeName, Options options) {}
}
