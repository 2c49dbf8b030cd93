package io.vllmtrain.schemas;

import io.apicurio.registry.serde.avro.DefaultAvroDatumProvider;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import org.apache.avro.Schema;
import org.apache.avro.io.DatumReader;
import org.apache.avro.io.DatumWriter;
import org.apache.avro.specific.SpecificRecord;

/**
 * Apicurio's default datum provider, with its readers and writers looked up by schema instance first: the default
 * renders the schema's canonical form and hashes it (a CRC-64 fingerprint) on every record it reads or writes,
 * which was about a tenth of the streams app's CPU. The registry client and the generated classes hand out one
 * {@link Schema} instance per schema, so instance identity is a sound key; the default's fingerprint cache stays
 * behind it for the rare new instance.
 */
public final class CachingAvroDatumProvider<T> extends DefaultAvroDatumProvider<T> {
  private static final int MAX_ENTRIES = 1024;

  private final Map<Identity, DatumReader<T>> readers = new ConcurrentHashMap<>();
  private final Map<Identity, DatumWriter<T>> writers = new ConcurrentHashMap<>();

  @Override
  public DatumReader<T> createDatumReader(Schema schema) {
    return lookup(readers, new Identity(schema, false), () -> super.createDatumReader(schema));
  }

  @Override
  public DatumWriter<T> createDatumWriter(T data, Schema schema) {
    return lookup(writers, new Identity(schema, data instanceof SpecificRecord),
        () -> super.createDatumWriter(data, schema));
  }

  private static <V> V lookup(Map<Identity, V> cache, Identity key, java.util.function.Supplier<V> create) {
    V v = cache.get(key);
    if (v == null) {
      if (cache.size() >= MAX_ENTRIES) {
        cache.clear(); // new Schema instances keep coming (not expected): never grow without bound
      }
      v = create.get();
      cache.put(key, v);
    }
    return v;
  }

  /** A schema compared by instance, plus whether the datum is a generated (specific) record. */
  private record Identity(Schema schema, boolean specific) {
    @Override
    public boolean equals(Object o) {
      return o instanceof Identity other && other.schema == schema && other.specific == specific;
    }

    @Override
    public int hashCode() {
      return System.identityHashCode(schema) * 31 + (specific ? 1 : 0);
    }
  }
}
