package io.vllmtrain.inference;

import io.vllmtrain.events.AdapterVersion;
import io.vllmtrain.events.TrainingMetrics;
import java.time.Instant;
import java.util.List;

/** AdapterVersion records for tests: {@code Versions.of("run-1", 3)} is run-1/v000003 of the test base model. */
final class Versions {
  static final String BASE_MODEL = "tiny-base";

  private Versions() {}

  static AdapterVersion of(String run, long number) {
    return builder(run, number).build();
  }

  static AdapterVersion.Builder builder(String run, long number) {
    String id = id(run, number);
    return AdapterVersion.newBuilder()
        .setVersionId(id)
        .setRunId(run)
        .setVersion(number)
        .setBaseModel(BASE_MODEL)
        .setUri(id)
        .setSha256(sha(number))
        .setRank(8)
        .setAlpha(16)
        .setTargetModules(List.of("q_proj", "v_proj"))
        .setMetrics(new TrainingMetrics(0.69 - number * 0.01, 0.5 + number * 0.01, 0.1 * number, number * 10,
            number * 80))
        .setCreatedAt(Instant.ofEpochMilli(1_700_000_000_000L + number));
  }

  static String id(String run, long number) {
    return run + "/v" + String.format("%06d", number);
  }

  /** A well-formed digest that differs per version number. */
  static String sha(long number) {
    return String.format("%064x", number);
  }
}
