package io.vllmtrain.stack;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.vllmtrain.events.PromptEvent;
import io.vllmtrain.schemas.AvroSerdes;
import io.vllmtrain.schemas.KafkaSettings;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serializer;
import org.junit.jupiter.api.Test;
import org.testcontainers.junit.jupiter.Testcontainers;

/**
 * The Java serdes against Confluent's own Schema Registry (cp-schema-registry) and apache/kafka in containers.
 * Skipped where no Docker engine runs (as on the project's CI machines); every behaviour it checks is also covered
 * against the embedded stack by {@link AvroSerdesStackTest}.
 */
@Testcontainers(disabledWithoutDocker = true)
class ContainerStackTest {
  @Test
  void javaSerdesRoundTripThroughConfluentsRegistry() {
    KafkaSettings settings = ContainerStack.start();
    PromptEvent sent = AvroSerdesStackTest.prompt("r-containers");
    try (Serializer<PromptEvent> s = AvroSerdes.valueSerializer(settings);
        Deserializer<PromptEvent> d = AvroSerdes.valueDeserializer(settings)) {
      byte[] bytes = s.serialize("llm.prompts", sent);
      assertEquals(0, bytes[0]);
      assertEquals(sent, d.deserialize("llm.prompts", bytes));
    }
  }
}
