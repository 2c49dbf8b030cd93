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
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The Java serdes against the real broker and the real registry, in both registry flavors: Apicurio's own API
 * (the default) and the Confluent Schema Registry API (Apicurio's /apis/ccompat/v7 here; Confluent's registry
 * itself with VT_STACK=containers).
 */
class AvroSerdesStackTest {
  static EmbeddedStack STACK;

  @BeforeAll
  static void stack() {
    STACK = EmbeddedStack.shared();
  }

  static List<io.vllmtrain.schemas.KafkaSettings> flavors() {
    var s = STACK.settings();
    return s.confluentRegistry() ? List.of(s)
        : List.of(s, s.withConfluentRegistry(STACK.registryUrl() + "/apis/ccompat/v7"));
  }

  static PromptEvent prompt(String requestId) {
    return PromptEvent.newBuilder().setRequestId(requestId).setUserId("u1")
        .setPrompt(Prompt.newBuilder().setMessages(List.of(new ChatMessage("user", "Name a colour."))).build())
        .setBaseModel("tiny").setAdapterVersion("run/v000001")
        .setSampling(SamplingParams.newBuilder().setN(2).build())
        .setCreatedAt(Instant.now().truncatedTo(ChronoUnit.MILLIS)).build();
  }

  @ParameterizedTest
  @MethodSource("flavors")
  void aPromptEventRoundTripsThroughKafkaInConfluentFraming(io.vllmtrain.schemas.KafkaSettings settings) {
    String id = UUID.randomUUID().toString();
    PromptEvent sent = prompt(id);
    Map<String, Object> props = STACK.clientProperties();
    props.put("enable.idempotence", "true");
    try (var producer = new KafkaProducer<>(props, new StringSerializer(),
        AvroSerdes.<PromptEvent>valueSerializer(settings))) {
      producer.send(new ProducerRecord<>(Topics.PROMPTS.name(), id, sent));
      producer.flush();
    }
    Map<String, Object> cprops = STACK.clientProperties();
    cprops.put("group.id", "t-" + id);
    cprops.put("auto.offset.reset", "earliest");
    PromptEvent got = null;
    try (var consumer = new KafkaConsumer<>(cprops, new StringDeserializer(),
        AvroSerdes.<PromptEvent>valueDeserializer(settings))) {
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
  void bothFlavorsWriteTheSameFramingAndReadEachOther() {
    var flavors = flavors();
    if (flavors.size() < 2) {
      return;
    }
    PromptEvent sent = prompt("r-cross");
    try (Serializer<PromptEvent> apicurio = AvroSerdes.valueSerializer(flavors.get(0));
        Serializer<PromptEvent> confluent = AvroSerdes.valueSerializer(flavors.get(1));
        Deserializer<PromptEvent> apicurioReader = AvroSerdes.valueDeserializer(flavors.get(0));
        Deserializer<PromptEvent> confluentReader = AvroSerdes.valueDeserializer(flavors.get(1))) {
      assertEquals(sent, confluentReader.deserialize("llm.prompts", apicurio.serialize("llm.prompts", sent)));
      assertEquals(sent, apicurioReader.deserialize("llm.prompts", confluent.serialize("llm.prompts", sent)));
    }
  }

  @ParameterizedTest
  @MethodSource("flavors")
  void aRecordThatDoesNotMatchItsSchemaIsRefusedNamingTheField(io.vllmtrain.schemas.KafkaSettings settings) {
    PromptEvent bad = prompt("r-bad");
    bad.setBaseModel(null); // setters do not validate; the serializer must
    try (Serializer<PromptEvent> s = AvroSerdes.valueSerializer(settings)) {
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

  @ParameterizedTest
  @MethodSource("flavors")
  void anUnknownSchemaIdIsAOneLineError(io.vllmtrain.schemas.KafkaSettings settings) {
    byte[] data = ByteBuffer.allocate(6).put((byte) 0).putInt(987_654).put((byte) 2).array();
    try (Deserializer<PromptEvent> d = AvroSerdes.valueDeserializer(settings)) {
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
