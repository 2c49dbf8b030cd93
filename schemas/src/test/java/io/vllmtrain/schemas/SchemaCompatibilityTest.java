package io.vllmtrain.schemas;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.vllmtrain.events.AdapterVersion;
import io.vllmtrain.events.FeedbackEvent;
import io.vllmtrain.events.PreferenceBatch;
import io.vllmtrain.events.PreferencePair;
import io.vllmtrain.events.PromptEvent;
import io.vllmtrain.events.ResponseEvent;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.apache.avro.Schema;
import org.apache.avro.SchemaCompatibility;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/** Every schema change must stay BACKWARD compatible with the newest released version in schemas/released/. */
class SchemaCompatibilityTest {
  static final Map<String, Schema> CURRENT = Map.of(
      "PromptEvent", PromptEvent.getClassSchema(),
      "ResponseEvent", ResponseEvent.getClassSchema(),
      "FeedbackEvent", FeedbackEvent.getClassSchema(),
      "PreferencePair", PreferencePair.getClassSchema(),
      "PreferenceBatch", PreferenceBatch.getClassSchema(),
      "AdapterVersion", AdapterVersion.getClassSchema());

  static Path latestRelease() throws IOException {
    try (Stream<Path> versions = Files.list(Path.of("released"))) {
      return versions.filter(Files::isDirectory)
          .max(Comparator.comparingInt(p -> Integer.parseInt(p.getFileName().toString().substring(1))))
          .orElseThrow(() -> new AssertionError("no released schema version under schemas/released"));
    }
  }

  static List<String> types() {
    return List.copyOf(CURRENT.keySet());
  }

  @ParameterizedTest
  @MethodSource("types")
  void currentSchemaReadsDataWrittenWithTheLastRelease(String type) throws IOException {
    Path file = latestRelease().resolve(type + ".avsc");
    assertTrue(Files.exists(file), "released schema missing: " + file);
    Schema released = new Schema.Parser().parse(file.toFile());
    var result = CompatibilityGuard.backward(released, CURRENT.get(type));
    assertTrue(result.compatible(), type + " is not BACKWARD compatible with " + file + ": " + result.problems());
  }

  @Test
  void theGuardRejectsANewFieldWithoutDefault() {
    Schema released = PromptEvent.getClassSchema();
    String json = released.toString().replace("\"fields\":[",
        "\"fields\":[{\"name\":\"tenant\",\"type\":\"string\"},");
    var result = CompatibilityGuard.backward(released, new Schema.Parser().parse(json));
    assertFalse(result.compatible());
    assertTrue(result.problems().contains("tenant"), result.problems());
  }

  @Test
  void theGuardAcceptsANewOptionalField() {
    Schema released = PromptEvent.getClassSchema();
    String json = released.toString().replace("\"fields\":[",
        "\"fields\":[{\"name\":\"tenant\",\"type\":[\"null\",\"string\"],\"default\":null},");
    assertTrue(CompatibilityGuard.backward(released, new Schema.Parser().parse(json)).compatible());
  }

  @Test
  void theGuardRejectsARemovedEnumSymbol() {
    Schema released = FeedbackEvent.getClassSchema();
    Schema changed = new Schema.Parser().parse(released.toString().replace("\"EDIT\"", "\"CORRECTION\""));
    assertFalse(CompatibilityGuard.backward(released, changed).compatible());
  }

  @Test
  void theJavaClassesAreGeneratedFromTheSameFilesAsTheRelease() throws IOException {
    // A released schema parses to the same canonical form as the generated class while nothing changed since.
    Schema released = new Schema.Parser().parse(latestRelease().resolve("AdapterVersion.avsc").toFile());
    assertEquals(SchemaCompatibility.SchemaCompatibilityType.COMPATIBLE, SchemaCompatibility
        .checkReaderWriterCompatibility(released, AdapterVersion.getClassSchema()).getType());
  }
}
