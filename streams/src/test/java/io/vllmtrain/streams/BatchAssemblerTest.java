package io.vllmtrain.streams;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.prometheus.metrics.model.registry.PrometheusRegistry;
import io.vllmtrain.events.PairSource;
import io.vllmtrain.events.PreferenceBatch;
import io.vllmtrain.events.PreferencePair;
import io.vllmtrain.schemas.Topics;
import java.time.Duration;
import java.util.List;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.processor.api.MockProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.Stores;
import org.junit.jupiter.api.Test;

/** The open batch lives in the store: a new processor instance on the same store (a restart) carries on with it. */
class BatchAssemblerTest {
  private final InMemoryRegistry registry = new InMemoryRegistry();
  private final BatchPolicy policy = new BatchPolicy(4, Duration.ofSeconds(30));

  private static PreferencePair pair(int i) {
    return PreferencePairer.pair(PairSource.PAIRWISE, "q" + i, "m", Events.prompt("q" + i, "p").getPrompt(),
        "good " + i, "bad " + i, "a" + i, "b" + i, null, null, 1.0, List.of("f" + i), 1000L + i);
  }

  private Record<String, EncodedPair> record(int i) {
    PreferencePair p = pair(i);
    byte[] bytes = registry.<PreferencePair>serializer().serialize(Topics.PREFERENCE_PAIRS.name(), p);
    return new Record<>(p.getPairId(), new EncodedPair(p, bytes), 1000L + i);
  }

  private BatchAssembler start(MockProcessorContext<String, byte[]> context) {
    BatchAssembler a = new BatchAssembler(policy,
        registry.serde(PreferencePair.class), registry.serializer(),
        new PairingMetrics(new PrometheusRegistry()));
    a.init(context);
    return a;
  }

  @Test
  void anOpenBatchSurvivesARestartAndClosesWithAllItsPairsInOrder() {
    MockProcessorContext<String, byte[]> context = new MockProcessorContext<>();
    context.setCurrentSystemTimeMs(Events.T0.toEpochMilli());
    KeyValueStore<String, byte[]> store = Stores.keyValueStoreBuilder(
        Stores.inMemoryKeyValueStore(BatchAssembler.STORE), Serdes.String(), Serdes.ByteArray())
        .withLoggingDisabled().build();
    store.init(context.getStateStoreContext(), store);
    context.addStateStore(store);

    BatchAssembler first = start(context);
    first.process(record(1));
    first.process(record(2));
    first.process(record(3));
    assertEquals(List.of(), context.forwarded());

    BatchAssembler afterRestart = start(context);
    afterRestart.process(record(4));
    List<PreferenceBatch> batches = forwardedBatches(context);
    assertEquals(1, batches.size());
    assertEquals(List.of(pair(1), pair(2), pair(3), pair(4)), batches.get(0).getPairs());
    assertEquals(pair(1).getCreatedAt(), batches.get(0).getWindowStart());

    context.resetForwards();
    afterRestart.process(record(5));
    BatchAssembler again = start(context);
    for (int i = 6; i <= 8; i++) {
      again.process(record(i));
    }
    assertEquals(List.of(pair(5), pair(6), pair(7), pair(8)), forwardedBatches(context).get(0).getPairs(),
        "slots reused by the next batch hold only its own pairs");
  }

  private List<PreferenceBatch> forwardedBatches(MockProcessorContext<String, byte[]> context) {
    var decoder = registry.deserializer(PreferenceBatch.class);
    return context.forwarded().stream()
        .map(f -> decoder.deserialize(Topics.PREFERENCE_BATCHES.name(), f.record().value())).toList();
  }
}
