package io.vllmtrain.streams;

import io.vllmtrain.schemas.Topics;
import java.nio.charset.StandardCharsets;
import org.apache.kafka.common.header.Headers;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.streams.processor.api.Record;

/** Builds {@code llm.dlq} records: the original key and value bytes, the original headers plus the DLQ headers. */
final class DeadLetters {
  static final String COMPONENT = "streams";

  private DeadLetters() {}

  static Record<String, Emission> record(SourceRecord source, Headers original, DlqReason reason, String detail,
                                         long timestamp) {
    Headers headers = original == null ? new RecordHeaders() : new RecordHeaders(original.toArray());
    put(headers, Topics.DLQ_REASON, reason.header(detail));
    put(headers, Topics.DLQ_SOURCE_TOPIC, source.topic());
    put(headers, Topics.DLQ_SOURCE_PARTITION, Integer.toString(source.partition()));
    put(headers, Topics.DLQ_SOURCE_OFFSET, Long.toString(source.offset()));
    put(headers, Topics.DLQ_COMPONENT, COMPONENT);
    return new Record<>(null, new Emission.DeadLetter(source.key(), source.value()), timestamp, headers);
  }

  private static void put(Headers headers, String name, String value) {
    headers.remove(name);
    headers.add(name, value.getBytes(StandardCharsets.UTF_8));
  }
}
