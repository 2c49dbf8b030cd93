package io.vllmtrain.schemas;

import java.util.Optional;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.IndexedRecord;

/** Finds the first field of a record that does not fit its schema, so errors can name it. */
final class SchemaMismatch {
  private SchemaMismatch() {}

  static Optional<String> find(IndexedRecord record) {
    return find(record, record.getSchema().getName());
  }

  private static Optional<String> find(IndexedRecord record, String path) {
    for (Schema.Field f : record.getSchema().getFields()) {
      Object value = record.get(f.pos());
      String where = path + "." + f.name();
      Schema type = f.schema();
      if (value == null && !accepts(type, Schema.Type.NULL)) {
        return Optional.of("field '" + f.name() + "' (" + where + ") is null but its type " + type + " is not nullable");
      }
      if (value instanceof IndexedRecord inner) {
        Optional<String> deeper = find(inner, where);
        if (deeper.isPresent()) {
          return deeper;
        }
      } else if (value != null && !GenericData.get().validate(type, value)
          && !(value instanceof java.time.temporal.Temporal)) {
        return Optional.of("field '" + f.name() + "' (" + where + ") has a value of type "
            + value.getClass().getSimpleName() + " that does not fit " + type);
      }
    }
    return Optional.empty();
  }

  private static boolean accepts(Schema s, Schema.Type t) {
    return s.getType() == t || (s.getType() == Schema.Type.UNION && s.getTypes().stream().anyMatch(u -> u.getType() == t));
  }
}
