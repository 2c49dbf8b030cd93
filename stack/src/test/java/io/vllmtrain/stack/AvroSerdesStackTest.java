package io.vllmtrain.stack;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.vllmtrain.events.ChatMessage;
import io.vllmtrain.events.FeedbackEvent;
import io.vllmtrain.events.FeedbackKind;
import io.vllmtrain.events.Prompt;
import io.vllmtrain.events.PromptEvent;
import io.vllmtrain.events.SamplingParams;
import io.vllmtrain.schemas.AvroSerdes;
import io.vllmtrain.schemas.Topics;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serializer;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.Test;

/** The Java serdes against the real broker and the real registry. */
class AvroSerdesStackTest {
  static final EmbeddedStack STACK = EmbeddedStack.shared();

  static PromptEvent prompt(String requestId) {
    return PromptEvent.newBuilder().setRequestId(requestId).setUserId("u1")
        .setPrompt(Prompt.newBuilder().setMessages(List.of(new ChatMessage("user", "Name a colour."))).build())
        .setBaseModel("tiny").setAdapterVersion("run/v000001")
        .setSampling(SamplingParams.newBuilder().setN(2).build())
        .setCreatedAt(Instant.now().truncatedTo(ChronoUnit.MILLIS)).build();
  }

  @Test
  void aPromptEventRoundTripsThroughKafkaInConfluentFraming() {
    String id = UUID.randomUUID().toString();
    PromptEvent sent = prompt(id);
    Map<String, Object> props = STACK.clientProperties();
    props.put("enable.idempotence", "true");
    try (var producer = new KafkaProducer<>(props, new StringSerializer(),
        AvroSerdes.<PromptEvent>valueSerializer(STACK.settings()))) {
      producer.send(new ProducerRecord<>(Topics.PROMPTS.name(), id, sent));
      producer.flush();
    }
    Map<String, Object> cprops = STACK.clientProperties();
    cprops.put("group.id", "t-" + id);
    cprops.put("auto.offset.reset", "earliest");
    PromptEvent got = null;
    try (var consumer = new KafkaConsumer<>(cprops, new StringDeserializer(),
        AvroSerdes.<PromptEvent>valueDeserializer(STACK.settings()))) {
      consumer.subscribe(List.of(Topics.PROMPTS.name()));
      long deadline = System.nanoTime() + Duration.ofSeconds(30).toNanos();
      while (got == null && System.nanoTime() < deadline) {
        for (ConsumerRecord<String, PromptEvent> r : consumer.poll(Duration.ofMillis(200))) {
          if (r.key().equals(id)) {
            got = r.value();
          }
        }
      }
    }
    assertEquals(sent, got);
  }

  @Test
  void theSerializerWritesMagicByteAndSchemaId() {
    try (Serializer<PromptEvent> s = AvroSerdes.valueSerializer(STACK.settings())) {
      byte[] bytes = s.serialize(Topics.PROMPTS.name(), prompt("r-framing"));
      assertEquals(0, bytes[0]);
      assertTrue(AvroSerdes.schemaId(bytes) > 0);
    }
  }

  @Test
  void aRecordThatDoesNotMatchItsSchemaIsRefusedNamingTheField() {
    PromptEvent bad = prompt("r-bad");
    bad.setBaseModel(null); // setters do not validate; the serializer must
    try (Serializer<PromptEvent> s = AvroSerdes.valueSerializer(STACK.settings())) {
      var e = assertThrows(SerializationException.class, () -> s.serialize(Topics.PROMPTS.name(), bad));
      assertTrue(e.getMessage().contains("base_model"), e.getMessage());
      assertTrue(e.getMessage().startsWith("PromptEvent for llm.prompts does not match its schema"), e.getMessage());
    }
  }

  @Test
  void feedbackWithoutItsRequiredIdsCannotEvenBeBuilt() {
    var e = assertThrows(org.apache.avro.AvroRuntimeException.class,
        () -> FeedbackEvent.newBuilder().setKind(FeedbackKind.RATING).build());
    assertTrue(e.getMessage().contains("feedback_id"), e.getMessage());
  }

  @Test
  void anUnknownSchemaIdIsAOneLineError() {
    byte[] data = ByteBuffer.allocate(6).put((byte) 0).putInt(987_654).put((byte) 2).array();
    try (Deserializer<PromptEvent> d = AvroSerdes.valueDeserializer(STACK.settings())) {
      var e = assertThrows(SerializationException.class, () -> d.deserialize(Topics.PROMPTS.name(), data));
      assertTrue(e.getMessage().contains("schema id 987654"), e.getMessage());
      assertTrue(e.getMessage().contains("unknown to the registry"), e.getMessage());
      assertFalse(e.getMessage().contains("\n"));
    }
  }

  @Test
  void unframedBytesAreRefusedClearly() {
    try (Deserializer<PromptEvent> d = AvroSerdes.valueDeserializer(STACK.settings())) {
      var e = assertThrows(SerializationException.class, () -> d.deserialize("llm.prompts", "{}".getBytes()));
      assertTrue(e.getMessage().contains("magic byte"), e.getMessage());
    }
  }
}
