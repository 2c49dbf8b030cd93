package io.vllmtrain.streams;

import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import org.apache.kafka.streams.state.KeyValueIterator;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.StoreBuilder;
import org.apache.kafka.streams.state.Stores;
import org.apache.kafka.common.serialization.Serdes;

/**
 * A time-ordered wake-up list in a key-value store ({@code <15-digit deadline>|<id>} → id), so that expiry touches
 * only what is due instead of scanning every key. A wake-up may be stale (the state moved on); the processor
 * re-checks the state, so a spare wake-up is harmless.
 */
final class DeadlineIndex {
  private final KeyValueStore<String, String> store;

  DeadlineIndex(KeyValueStore<String, String> store) {
    this.store = store;
  }

  static StoreBuilder<KeyValueStore<String, String>> storeBuilder(String name) {
    return Stores.keyValueStoreBuilder(Stores.persistentKeyValueStore(name), Serdes.String(), Serdes.String())
        .withCachingDisabled();
  }

  void schedule(long deadlineMs, String id) {
    store.put(key(deadlineMs, id), id);
  }

  /** {@code <15-digit zero-padded deadline>|<id>}, so that the store's byte order is deadline order. */
  static String key(long deadlineMs, String id) {
    return OrderedKeys.of(deadlineMs, 15, "|" + id);
  }

  /** Removes and returns the ids due at {@code nowMs}, earliest first, each once. */
  Set<String> takeDue(long nowMs) {
    List<String> keys = new ArrayList<>();
    Set<String> ids = new LinkedHashSet<>();
    try (KeyValueIterator<String, String> it = store.all()) {
      while (it.hasNext()) {
        var entry = it.next();
        if (Long.parseLong(entry.key.substring(0, 15)) > nowMs) {
          break;
        }
        keys.add(entry.key);
        ids.add(entry.value);
      }
    }
    keys.forEach(store::delete);
    return ids;
  }
}
