package io.vllmtrain.streams;

import io.vllmtrain.schemas.Topics;
import java.util.List;
import java.util.Map;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.kstream.Branched;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.Named;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.Repartitioned;

/**
 * Builds the topology, and nothing else:
 *
 * <pre>
 * llm.prompts, llm.responses, llm.feedback (bytes, keyed by request id)
 *   └─ RequestProcessor ─┬─ pairs (encoded) ──────────────────────┬─▶ llm.preference-pairs
 *                        │                                       └─▶ BatchAssembler ─▶ llm.preference-batches
 *                        ├─ rated responses ─▶ repartition by prompt key ─▶ CrossRequestProcessor ─┬─▶ pairs (above)
 *                        │                                                                        └─▶ dead letters
 *                        └─ dead letters ─▶ llm.dlq
 * </pre>
 *
 * <p>Each pair is encoded once, where it is formed; a pair too large for a batch is a dead letter there.
 */
public final class PreferenceTopology {
  /** Name of the internal topic ({@code <application.id>-cross-request-repartition}) keyed by prompt key. */
  public static final String CROSS_REQUEST_TOPIC = "cross-request";

  private PreferenceTopology() {}

  public static Topology build(PairingRules rules, BatchPolicy batching, RecordLimits limits, EventSerdes serdes,
                               PairingMetrics metrics) {
    PreferencePairer pairer = new PreferencePairer(rules);
    var pairEncoder = serdes.pairs().serializer();
    StreamsBuilder builder = new StreamsBuilder();

    KStream<String, Emission> emitted = builder
        .stream(List.of(Topics.PROMPTS.name(), Topics.RESPONSES.name(), Topics.FEEDBACK.name()),
            Consumed.with(Serdes.ByteArray(), Serdes.ByteArray()).withName("events"))
        .process(RequestProcessor.supplier(pairer, serdes.events(), pairEncoder, batching, limits, metrics),
            Named.as("request-processor"));

    Map<String, KStream<String, Emission>> kinds = emitted.split(Named.as("emitted-"))
        .branch((k, e) -> e instanceof Emission.Pair, Branched.as("pairs"))
        .branch((k, e) -> e instanceof Emission.Candidate, Branched.as("candidates"))
        .defaultBranch(Branched.as("dead-letters"));

    KStream<String, EncodedPair> pairs = kinds.get("emitted-pairs")
        .mapValues(e -> ((Emission.Pair) e).encoded(), Named.as("pair-value"));
    KStream<String, Emission> deadLetters = kinds.get("emitted-dead-letters");

    if (rules.crossRequestEnabled()) {
      Map<String, KStream<String, Emission>> cross = kinds.get("emitted-candidates")
          .mapValues(e -> ((Emission.Candidate) e).rated(), Named.as("candidate-value"))
          .repartition(Repartitioned.with(Serdes.String(), StateSerdes.ratedResponse())
              .withName(CROSS_REQUEST_TOPIC)
              .withNumberOfPartitions(Topics.FEEDBACK.partitions()))
          .process(CrossRequestProcessor.supplier(pairer, pairEncoder, batching, limits, metrics),
              Named.as("cross-request-processor"))
          .split(Named.as("cross-"))
          .branch((k, e) -> e instanceof Emission.Pair, Branched.as("pairs"))
          .defaultBranch(Branched.as("dead-letters"));
      pairs = pairs.merge(cross.get("cross-pairs").mapValues(e -> ((Emission.Pair) e).encoded(),
          Named.as("cross-pair-value")), Named.as("all-pairs"));
      deadLetters = deadLetters.merge(cross.get("cross-dead-letters"), Named.as("all-dead-letters"));
    }

    pairs.mapValues(EncodedPair::bytes, Named.as("pair-bytes"))
        .to(Topics.PREFERENCE_PAIRS.name(), Produced.with(Serdes.String(), Serdes.ByteArray()).withName("pairs-sink"));
    KStream<String, byte[]> batches = pairs.process(
        BatchAssembler.supplier(batching, serdes.pairs(), serdes.batches().serializer(), metrics),
        Named.as("batch-assembler"));
    batches.to(Topics.PREFERENCE_BATCHES.name(),
        Produced.with(Serdes.String(), Serdes.ByteArray()).withName("batches-sink"));

    deadLetters
        .map((k, e) -> KeyValue.pair(((Emission.DeadLetter) e).key(), ((Emission.DeadLetter) e).value()),
            Named.as("dead-letter-bytes"))
        .to(Topics.DLQ.name(), Produced.with(Serdes.ByteArray(), Serdes.ByteArray()).withName("dlq-sink"));

    return builder.build();
  }
}
