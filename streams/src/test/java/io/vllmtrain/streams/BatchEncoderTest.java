package io.vllmtrain.streams;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import io.vllmtrain.events.PairSource;
import io.vllmtrain.events.PreferenceBatch;
import io.vllmtrain.events.PreferencePair;
import io.vllmtrain.schemas.Topics;
import java.nio.ByteBuffer;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.IntStream;
import org.apache.kafka.common.serialization.Serializer;
import org.junit.jupiter.api.Test;

/** A spliced batch is byte for byte what the registry serializer writes for the same batch. */
class BatchEncoderTest {
  private static final String TOPIC = Topics.PREFERENCE_BATCHES.name();
  private final InMemoryRegistry registry = new InMemoryRegistry();
  private final Serializer<PreferencePair> pairSerializer = registry.serializer();

  private static PreferencePair pair(int i) {
    return PreferencePairer.pair(PairSource.PAIRWISE, "q" + i, "m", Events.prompt("q" + i, "Grüße, 世界 " + i).getPrompt(),
        "good ✓ " + "x".repeat(i * 37), "bad " + i, "a" + i, "b" + i, null, null, 1.0, List.of("f" + i), 1000L + i);
  }

  private List<EncodedPair> pairs(int n) {
    return IntStream.range(0, n).mapToObj(i -> new EncodedPair(pair(i),
        pairSerializer.serialize(Topics.PREFERENCE_PAIRS.name(), pair(i)))).toList();
  }

  private static PreferenceBatch whole(String id, List<EncodedPair> pairs, long start, long end) {
    return PreferenceBatch.newBuilder().setBatchId(id)
        .setPairs(pairs.stream().map(EncodedPair::pair).toList())
        .setWindowStart(Instant.ofEpochMilli(start)).setWindowEnd(Instant.ofEpochMilli(end)).build();
  }

  /** Counts the calls that reach the wrapped serializer. */
  private record Counting(Serializer<PreferenceBatch> inner, AtomicInteger calls) implements Serializer<PreferenceBatch> {
    @Override
    public byte[] serialize(String topic, PreferenceBatch data) {
      calls.incrementAndGet();
      return inner.serialize(topic, data);
    }
  }

  @Test
  void splicedBatchesEqualTheSerializersBytesAndSkipIt() {
    Serializer<PreferenceBatch> reference = registry.serializer();
    AtomicInteger calls = new AtomicInteger();
    BatchEncoder encoder = new BatchEncoder(new Counting(registry.serializer(), calls));
    for (int n : new int[] {1, 3, 32, 200}) { // 200: array counts and lengths of several varint bytes
      List<EncodedPair> pairs = pairs(n);
      long start = 1_700_000_000_000L + n;
      long end = start + 12_345;
      byte[] spliced = encoder.encode(TOPIC, "batch-" + n, pairs, start, end);
      assertArrayEquals(reference.serialize(TOPIC, whole("batch-" + n, pairs, start, end)), spliced, n + " pairs");
      assertEquals(whole("batch-" + n, pairs, start, end),
          registry.deserializer(PreferenceBatch.class).deserialize(TOPIC, spliced));
    }
    assertEquals(1, calls.get(), "the serializer writes the first batch (which checks splicing); the rest are spliced");
  }

  @Test
  void aSerializerWithAnotherFramingEncodesEveryBatchWhole() {
    Serializer<PreferenceBatch> confluent = registry.serializer();
    // An 8-byte id instead of 4 (as Apicurio's default framing): the first check fails, nothing is spliced.
    Serializer<PreferenceBatch> longIds = (topic, batch) -> {
      byte[] b = confluent.serialize(topic, batch);
      return ByteBuffer.allocate(b.length + 4).put((byte) 0).putLong(ByteBuffer.wrap(b, 1, 4).getInt())
          .put(b, 5, b.length - 5).array();
    };
    AtomicInteger calls = new AtomicInteger();
    BatchEncoder encoder = new BatchEncoder(new Counting(longIds, calls));
    List<EncodedPair> pairs = pairs(4);
    for (int i = 0; i < 3; i++) {
      assertArrayEquals(longIds.serialize(TOPIC, whole("b", pairs, 1, 2)), encoder.encode(TOPIC, "b", pairs, 1, 2));
    }
    assertEquals(3, calls.get(), "every batch");
  }

  @Test
  void aBatchWithAnUnframedPairIsEncodedWhole() {
    Serializer<PreferenceBatch> reference = registry.serializer();
    AtomicInteger calls = new AtomicInteger();
    BatchEncoder encoder = new BatchEncoder(new Counting(registry.serializer(), calls));
    List<EncodedPair> pairs = new ArrayList<>(pairs(3));
    byte[] unframed = pairs.get(1).bytes();
    pairs.set(1, new EncodedPair(pairs.get(1).pair(), Arrays.copyOfRange(unframed, 5, unframed.length)));
    assertArrayEquals(reference.serialize(TOPIC, whole("b", pairs, 1, 2)), encoder.encode(TOPIC, "b", pairs, 1, 2));
    assertEquals(1, calls.get(), "the whole batch");
  }

  @Test
  void pairsFramedDifferentlyFromTheBatchAreNeverSpliced() {
    Serializer<PreferenceBatch> reference = registry.serializer();
    AtomicInteger calls = new AtomicInteger();
    BatchEncoder encoder = new BatchEncoder(new Counting(registry.serializer(), calls));
    // Pair bytes that start with magic byte 0 but carry a 4-byte longer id: splicing them would corrupt the batch.
    List<EncodedPair> pairs = pairs(3).stream().map(p -> new EncodedPair(p.pair(),
        ByteBuffer.allocate(p.bytes().length + 4).put((byte) 0).putInt(0).put(p.bytes(), 1, p.bytes().length - 1)
            .array())).toList();
    for (int i = 0; i < 2; i++) {
      assertArrayEquals(reference.serialize(TOPIC, whole("b", pairs, 1, 2)), encoder.encode(TOPIC, "b", pairs, 1, 2));
    }
    assertEquals(2, calls.get(), "the first check fails, so every batch is encoded whole");
  }
}
