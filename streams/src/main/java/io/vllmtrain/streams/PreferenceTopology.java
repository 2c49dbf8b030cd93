package io.vllmtrain.streams;

import io.vllmtrain.events.PreferencePair;
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
 *   └─ RequestProcessor ─┬─ pairs ───────────────────────────────┬─▶ llm.preference-pairs
 *                        │                                       └─▶ BatchAssembler ─▶ llm.preference-batches
 *                        ├─ rated responses ─▶ repartition by prompt key ─▶ CrossRequestProcessor ─▶ pairs (above)
 *                        └─ dead letters ─▶ llm.dlq
 * </pre>
 */
public final class PreferenceTopology {
  /** Name of the internal topic ({@code <application.id>-cross-request-repartition}) keyed by prompt key. */
  public static final String CROSS_REQUEST_TOPIC = "cross-request";

  private PreferenceTopology() {}

  public static Topology build(PairingRules rules, BatchPolicy batching, EventSerdes serdes, PairingMetrics metrics) {
    PreferencePairer pairer = new PreferencePairer(rules);
    StreamsBuilder builder = new StreamsBuilder();

    KStream<String, Emission> emitted = builder
        .stream(List.of(Topics.PROMPTS.name(), Topics.RESPONSES.name(), Topics.FEEDBACK.name()),
            Consumed.with(Serdes.ByteArray(), Serdes.ByteArray()).withName("events"))
        .process(RequestProcessor.supplier(pairer, serdes.events(), metrics), Named.as("request-processor"));

    Map<String, KStream<String, Emission>> kinds = emitted.split(Named.as("emitted-"))
        .branch((k, e) -> e instanceof Emission.Pair, Branched.as("pairs"))
        .branch((k, e) -> e instanceof Emission.Candidate, Branched.as("candidates"))
        .defaultBranch(Branched.as("dead-letters"));

    KStream<String, PreferencePair> pairs = kinds.get("emitted-pairs")
        .mapValues(e -> ((Emission.Pair) e).pair(), Named.as("pair-value"));

    if (rules.crossRequestEnabled()) {
      KStream<String, PreferencePair> crossPairs = kinds.get("emitted-candidates")
          .mapValues(e -> ((Emission.Candidate) e).rated(), Named.as("candidate-value"))
          .repartition(Repartitioned.with(Serdes.String(), StateSerdes.ratedResponse())
              .withName(CROSS_REQUEST_TOPIC)
              .withNumberOfPartitions(Topics.FEEDBACK.partitions()))
          .process(CrossRequestProcessor.supplier(pairer, metrics), Named.as("cross-request-processor"));
      pairs = pairs.merge(crossPairs, Named.as("all-pairs"));
    }

    // Encode each pair once: the same bytes go to llm.preference-pairs, into the batch store and into its batch.
    var pairEncoder = serdes.pairs().serializer();
    KStream<String, BatchAssembler.EncodedPair> encoded = pairs.mapValues(
        p -> new BatchAssembler.EncodedPair(p, pairEncoder.serialize(Topics.PREFERENCE_PAIRS.name(), p)),
        Named.as("encode-pair"));
    encoded.mapValues(BatchAssembler.EncodedPair::bytes, Named.as("pair-bytes"))
        .to(Topics.PREFERENCE_PAIRS.name(), Produced.with(Serdes.String(), Serdes.ByteArray()).withName("pairs-sink"));
    KStream<String, byte[]> batches = encoded.process(
        BatchAssembler.supplier(batching, serdes.pairs(), serdes.batches().serializer(), metrics),
        Named.as("batch-assembler"));
    batches.to(Topics.PREFERENCE_BATCHES.name(),
        Produced.with(Serdes.String(), Serdes.ByteArray()).withName("batches-sink"));

    kinds.get("emitted-dead-letters")
        .map((k, e) -> KeyValue.pair(((Emission.DeadLetter) e).key(), ((Emission.DeadLetter) e).value()),
            Named.as("dead-letter-bytes"))
        .to(Topics.DLQ.name(), Produced.with(Serdes.ByteArray(), Serdes.ByteArray()).withName("dlq-sink"));

    return builder.build();
  }
}
