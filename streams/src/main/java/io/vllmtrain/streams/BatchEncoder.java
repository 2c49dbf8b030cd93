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
 * <p>The first batch goes through the real serializer as a whole; its first bytes are the batch schema's framing, and
 * splicing is used from then on only if the spliced bytes of that same batch are equal to the serializer's (which
 * also checks that the pairs carry the framing assumed here). Otherwise (another framing, ids in headers), and for
 * any later batch with a pair that is not framed that way, batches go through the serializer, so the bytes are always
 * what the serializer would write.
 */
final class BatchEncoder {
  private static final Logger LOG = LoggerFactory.getLogger(BatchEncoder.class);
  /** Magic byte and 4-byte schema id. */
  static final int FRAMING = 5;
  /**
   * An upper bound of a batch's bytes besides its pairs' encodings: framing, batch id (32 hex digits and its length),
   * the array's count and end, two timestamps.
   */
  static final int BATCH_OVERHEAD = 64;

  private final Serializer<PreferenceBatch> serializer;
  private final ByteArrayOutputStream out = new ByteArrayOutputStream(64 * 1024);
  private BinaryEncoder encoder;
  private byte[] framing; // the batch schema's framing; null until the first batch checked splicing
  private boolean splice = true; // false once splicing gave other bytes than the serializer

  BatchEncoder(Serializer<PreferenceBatch> serializer) {
    this.serializer = serializer;
  }

  /** The batch's value for {@code topic}; {@code pairs} hold each pair with its registry encoding, in order. */
  byte[] encode(String topic, String batchId, List<EncodedPair> pairs, long windowStartMs,
      long windowEndMs) {
    if (!splice || !pairs.stream().allMatch(p -> framed(p.bytes()))) {
      return whole(topic, batchId, pairs, windowStartMs, windowEndMs);
    }
    if (framing == null) {
      byte[] whole = whole(topic, batchId, pairs, windowStartMs, windowEndMs);
      framing = Arrays.copyOf(whole, FRAMING);
      if (!framed(whole) || !Arrays.equals(whole, splice(batchId, pairs, windowStartMs, windowEndMs))) {
        splice = false;
        LOG.warn("the batch serializer does not write the Confluent framing; batches are encoded whole (slower)");
      }
      return whole;
    }
    return splice(batchId, pairs, windowStartMs, windowEndMs);
  }

  private byte[] whole(String topic, String batchId, List<EncodedPair> pairs, long windowStartMs,
      long windowEndMs) {
    List<PreferencePair> members = pairs.stream().map(EncodedPair::pair).toList();
    return serializer.serialize(topic, PreferenceBatch.newBuilder().setBatchId(batchId).setPairs(members)
        .setWindowStart(Instant.ofEpochMilli(windowStartMs)).setWindowEnd(Instant.ofEpochMilli(windowEndMs)).build());
  }

  private byte[] splice(String batchId, List<EncodedPair> pairs, long windowStartMs,
      long windowEndMs) {
    out.reset();
    out.writeBytes(framing);
    writeBody(batchId, pairs, windowStartMs, windowEndMs);
    return out.toByteArray();
  }

  private void writeBody(String batchId, List<EncodedPair> pairs, long windowStartMs,
      long windowEndMs) {
    encoder = EncoderFactory.get().directBinaryEncoder(out, encoder);
    try {
      encoder.writeString(batchId);
      encoder.writeArrayStart();
      encoder.setItemCount(pairs.size());
      for (EncodedPair p : pairs) {
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
