package io.vllmtrain.schemas;

import java.util.stream.Collectors;
import org.apache.avro.Schema;
import org.apache.avro.SchemaCompatibility;

/** The registry's BACKWARD rule, checked locally: a reader with the new schema can read data written with the old. */
public final class CompatibilityGuard {
  private CompatibilityGuard() {}

  public record Result(boolean compatible, String problems) {}

  public static Result backward(Schema released, Schema current) {
    var result = SchemaCompatibility.checkReaderWriterCompatibility(current, released).getResult();
    String problems = result.getIncompatibilities().stream()
        .map(i -> i.getType() + " at " + i.getLocation() + ": " + i.getMessage())
        .collect(Collectors.joining("; "));
    return new Result(result.getCompatibility() == SchemaCompatibility.SchemaCompatibilityType.COMPATIBLE, problems);
  }
}
