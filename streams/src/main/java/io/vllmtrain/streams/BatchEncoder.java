package io.vllmtrain.streams;

import io.vllmtrain.events.PreferenceBatch;
import io.vllmtrain.events.PreferencePair;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.time.Instant;
import java.util.Arrays;
import java.util.List;
import org.apache.avro.io.BinaryEncoder;
import org.apache.avro.io.EncoderFactory;
import org.apache.kafka.common.serialization.Serializer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Writes a {@link PreferenceBatch} in its registry encoding from the registry encodings its pairs already have.
 *
 * <p>Every pair is encoded once for {@code llm.preference-pairs}; encoding it again inside its batch cost ~11% of
 * the stream thread. In Avro's binary encoding a record nested in an array is written exactly as it is written on its
 * own, so the batch's bytes are its framing (magic byte, schema id), its {@code batch_id}, the array's item count,
 * each pair's bytes without their own framing, the array's end and the two timestamps.
 *
 * <p>The framing of the batch schema is learnt from the real serializer: the first call serializes an empty batch and
 * checks that it is the Confluent framing (magic byte 0, 4-byte id) followed by exactly the Avro body written here.
 * If it is not (another serializer, ids in headers), or a pair's bytes are not framed that way, the batch goes through
 * the serializer as a whole, so the bytes are always what the serializer would write.
 */
final class BatchEncoder {
  private static final Logger LOG = LoggerFactory.getLogger(BatchEncoder.class);
  /** Magic byte and 4-byte schema id. */
  static final int FRAMING = 5;

  private final Serializer<PreferenceBatch> serializer;
  private final ByteArrayOutputStream out = new ByteArrayOutputStream(64 * 1024);
  private BinaryEncoder encoder;
  private byte[] framing; // the batch schema's framing; null until learnt
  private boolean splice = true; // false once the serializer turned out not to write the framing assumed here

  BatchEncoder(Serializer<PreferenceBatch> serializer) {
    this.serializer = serializer;
  }

  /** The batch's value for {@code topic}; {@code pairs} hold each pair with its registry encoding, in order. */
  byte[] encode(String topic, String batchId, List<BatchAssembler.EncodedPair> pairs, long windowStartMs,
      long windowEndMs) {
    if (splice && framing == null) {
      learnFraming(topic);
    }
    if (!splice || !pairs.stream().allMatch(p -> framed(p.bytes()))) {
      List<PreferencePair> members = pairs.stream().map(BatchAssembler.EncodedPair::pair).toList();
      return serializer.serialize(topic, PreferenceBatch.newBuilder().setBatchId(batchId).setPairs(members)
          .setWindowStart(Instant.ofEpochMilli(windowStartMs)).setWindowEnd(Instant.ofEpochMilli(windowEndMs))
          .build());
    }
    out.reset();
    out.writeBytes(framing);
    writeBody(batchId, pairs, windowStartMs, windowEndMs);
    return out.toByteArray();
  }

  private void learnFraming(String topic) {
    byte[] probe = serializer.serialize(topic, PreferenceBatch.newBuilder().setBatchId("").setPairs(List.of())
        .setWindowStart(Instant.EPOCH).setWindowEnd(Instant.EPOCH).build());
    out.reset();
    writeBody("", List.of(), 0, 0);
    byte[] body = out.toByteArray();
    if (framed(probe) && probe.length == FRAMING + body.length
        && Arrays.equals(probe, FRAMING, probe.length, body, 0, body.length)) {
      framing = Arrays.copyOf(probe, FRAMING);
    } else {
      splice = false;
      LOG.warn("the batch serializer does not write the Confluent framing; batches are encoded whole (slower)");
    }
  }

  private void writeBody(String batchId, List<BatchAssembler.EncodedPair> pairs, long windowStartMs,
      long windowEndMs) {
    encoder = EncoderFactory.get().directBinaryEncoder(out, encoder);
    try {
      encoder.writeString(batchId);
      encoder.writeArrayStart();
      encoder.setItemCount(pairs.size());
      for (BatchAssembler.EncodedPair p : pairs) {
        encoder.startItem();
        encoder.writeFixed(p.bytes(), FRAMING, p.bytes().length - FRAMING);
      }
      encoder.writeArrayEnd();
      encoder.writeLong(windowStartMs);
      encoder.writeLong(windowEndMs);
      encoder.flush();
    } catch (IOException e) {
      throw new UncheckedIOException(e); // a ByteArrayOutputStream does not throw
    }
  }

  private static boolean framed(byte[] value) {
    return value != null && value.length >= FRAMING && value[0] == 0;
  }
}
