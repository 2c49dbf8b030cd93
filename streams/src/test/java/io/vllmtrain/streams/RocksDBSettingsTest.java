package io.vllmtrain.streams;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Map;
import org.junit.jupiter.api.Test;
import org.rocksdb.CompactionStyle;
import org.rocksdb.Options;
import org.rocksdb.RocksDB;

class RocksDBSettingsTest {
  @Test
  void storesCompactIncrementallyInsteadOfKafkaStreamsUniversalDefault() {
    RocksDB.loadLibrary();
    try (Options options = new Options()) {
      options.setCompactionStyle(CompactionStyle.UNIVERSAL); // what Kafka Streams sets before calling the setter
      new RocksDBSettings().setConfig("request-feedback", options, Map.of());
      assertEquals(CompactionStyle.LEVEL, options.compactionStyle());
      assertTrue(options.levelCompactionDynamicLevelBytes());
      assertEquals(RocksDBSettings.TARGET_FILE_BYTES, options.targetFileSizeBase());
      assertEquals(4 * RocksDBSettings.TARGET_FILE_BYTES, options.maxBytesForLevelBase());
    }
  }
}
