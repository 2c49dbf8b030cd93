package io.vllmtrain.streams;

import io.vllmtrain.schemas.Topics;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.Headers;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.streams.processor.api.Record;

/**
 * Builds {@code llm.dlq} records: the original key and value bytes, the original headers plus the DLQ headers.
 *
 * <p>A dead letter is at most {@code maxBytes} (key, value and headers, as the producer counts them), so that the
 * DLQ takes every one: above it the value keeps only its first bytes and {@link Topics#DLQ_PAYLOAD_TRUNCATED} gives
 * its original size (the source topic, partition and offset headers still point at the whole record). Should the
 * original key and headers alone be too large, the original headers are dropped and the key is cut as well.
 */
final class DeadLetters {
  static final String COMPONENT = "streams";
  /** The reason's detail is cut here: it may quote ids, which hostile input makes as long as it likes. */
  static final int MAX_DETAIL_CHARS = 1000;
  /** What the producer adds per header besides its name and value (varints of their lengths), rounded up. */
  private static final int HEADER_OVERHEAD = 10;

  private final int maxBytes;

  DeadLetters(int maxBytes) {
    this.maxBytes = maxBytes;
  }

  Record<String, Emission> record(SourceRecord source, Headers original, DlqReason reason, String detail,
                                  long timestamp) {
    Headers headers = original == null ? new RecordHeaders() : new RecordHeaders(original.toArray());
    addDlqHeaders(headers, source, reason, detail);
    byte[] key = source.key();
    byte[] value = source.value();
    int keyBytes = key == null ? 0 : key.length;
    int valueBytes = value == null ? 0 : value.length;
    if (keyBytes + valueBytes + size(headers) > maxBytes) {
      int room = maxBytes - keyBytes - size(headers) - truncationHeaderSize();
      if (room < 0) {
        headers = new RecordHeaders();
        addDlqHeaders(headers, source, reason, detail);
        room = maxBytes - keyBytes - size(headers) - truncationHeaderSize();
        if (room < 0) {
          key = Arrays.copyOf(key, Math.max(0, keyBytes + room));
          room = 0;
        }
      }
      value = value == null ? null : Arrays.copyOf(value, Math.min(valueBytes, room));
      put(headers, Topics.DLQ_PAYLOAD_TRUNCATED, Integer.toString(valueBytes));
    }
    return new Record<>(null, new Emission.DeadLetter(key, value), timestamp, headers);
  }

  private static void addDlqHeaders(Headers headers, SourceRecord source, DlqReason reason, String detail) {
    String shortDetail = detail.length() <= MAX_DETAIL_CHARS ? detail : detail.substring(0, MAX_DETAIL_CHARS) + "...";
    put(headers, Topics.DLQ_REASON, reason.header(shortDetail));
    put(headers, Topics.DLQ_SOURCE_TOPIC, source.topic());
    put(headers, Topics.DLQ_SOURCE_PARTITION, Integer.toString(source.partition()));
    put(headers, Topics.DLQ_SOURCE_OFFSET, Long.toString(source.offset()));
    put(headers, Topics.DLQ_COMPONENT, COMPONENT);
  }

  private static int size(Headers headers) {
    int n = 0;
    for (Header h : headers) {
      n += h.key().length() * 3 + (h.value() == null ? 0 : h.value().length) + HEADER_OVERHEAD;
    }
    return n;
  }

  private static int truncationHeaderSize() {
    return Topics.DLQ_PAYLOAD_TRUNCATED.length() + 10 + HEADER_OVERHEAD;
  }

  private static void put(Headers headers, String name, String value) {
    headers.remove(name);
    headers.add(name, value.getBytes(StandardCharsets.UTF_8));
  }
}
