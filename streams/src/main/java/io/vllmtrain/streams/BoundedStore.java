package io.vllmtrain.streams;

import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.StoreBuilder;
import org.apache.kafka.streams.state.Stores;

/**
 * A state store of one value type whose values the processor encodes itself, so that a value larger than
 * {@code streams.state.max.bytes} is refused before anything is written: {@link #encode} once, check {@link #fits},
 * then {@link #put} those bytes. The store and its changelog hold the bytes {@link StateSerdes} writes, as before.
 */
final class BoundedStore<V> {
  private final KeyValueStore<String, byte[]> store;
  private final Serializer<V> serializer;
  private final Deserializer<V> deserializer;
  private final int maxBytes;

  BoundedStore(KeyValueStore<String, byte[]> store, Serde<V> serde, int maxBytes) {
    this.store = store;
    this.serializer = serde.serializer();
    this.deserializer = serde.deserializer();
    this.maxBytes = maxBytes;
  }

  /** A persistent store of encoded values without a record cache (one key per request: a cache only evicts). */
  static StoreBuilder<KeyValueStore<String, byte[]>> builder(String name) {
    return Stores.keyValueStoreBuilder(Stores.persistentKeyValueStore(name), Serdes.String(), Serdes.ByteArray())
        .withCachingDisabled();
  }

  V get(String key) {
    return deserializer.deserialize(store.name(), store.get(key));
  }

  byte[] encode(V value) {
    return serializer.serialize(store.name(), value);
  }

  boolean fits(byte[] encoded) {
    return encoded.length <= maxBytes;
  }

  /** Why {@code encoded} cannot be the value of {@code key}. */
  String tooLarge(String key, byte[] encoded) {
    return "the " + store.name() + " state of " + key + " would be " + encoded.length + " bytes, over "
        + StreamsAppConfig.STATE_MAX_BYTES + " = " + maxBytes;
  }

  void put(String key, byte[] encoded) {
    store.put(key, encoded);
  }

  void delete(String key) {
    store.delete(key);
  }
}
