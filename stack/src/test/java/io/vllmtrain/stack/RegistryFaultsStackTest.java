package io.vllmtrain.stack;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.vllmtrain.events.PromptEvent;
import io.vllmtrain.schemas.AvroSerdes;
import io.vllmtrain.schemas.KafkaSettings;
import io.vllmtrain.schemas.RegistryUnavailableException;
import io.vllmtrain.schemas.Topics;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.UUID;
import org.apache.kafka.common.errors.SerializationException;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * What the Java deserializers make of each way a registry can fail, in both flavors, through a
 * {@link RegistryFaultProxy} in front of the real registry: only a definite "unknown schema id" (HTTP 404) or bytes
 * that do not decode are the record's fault; anything else is a {@link RegistryUnavailableException}, to be retried.
 */
class RegistryFaultsStackTest {
  static EmbeddedStack stack;
  static byte[] good;
  private RegistryFaultProxy proxy;

  @BeforeAll
  static void stack() {
    stack = EmbeddedStack.shared();
    good = AvroSerdes.<PromptEvent>valueSerializer(stack.settings())
        .serialize(Topics.PROMPTS.name(), AvroSerdesStackTest.prompt(UUID.randomUUID().toString()));
  }

  @AfterEach
  void close() {
    if (proxy != null) {
      proxy.close();
    }
  }

  /** With VT_STACK=containers the registry is Confluent's: only that flavor. */
  static List<String> flavors() {
    return EmbeddedStack.shared().settings().confluentRegistry() ? List.of("confluent")
        : List.of("apicurio", "confluent");
  }

  private KafkaSettings throughProxy(String flavor) {
    proxy = RegistryFaultProxy.start(stack.settings().registryUrl());
    KafkaSettings direct = KafkaSettings.of(stack.bootstrapServers(), proxy.url());
    if (!flavor.equals("confluent")) {
      return direct;
    }
    return stack.settings().confluentRegistry() ? direct.withConfluentRegistry(proxy.url())
        : direct.withConfluentRegistry(proxy.url() + "/apis/ccompat/v7");
  }

  private static Object decode(KafkaSettings settings, byte[] data) {
    return AvroSerdes.valueDeserializer(settings).deserialize(Topics.PROMPTS.name(), data);
  }

  @ParameterizedTest
  @MethodSource("flavors")
  void anErrorThatSaysNothingAboutTheIdMeansTryAgainLater(String flavor) {
    KafkaSettings settings = throughProxy(flavor);
    for (int status : new int[] {500, 503, 401, 403, 429}) {
      proxy.failWith(status);
      RuntimeException e = assertThrows(RuntimeException.class, () -> decode(settings, good));
      assertInstanceOf(RegistryUnavailableException.class, e, "HTTP " + status + ": " + e);
    }
    proxy.heal();
    assertInstanceOf(PromptEvent.class, decode(settings, good));
  }

  @ParameterizedTest
  @MethodSource("flavors")
  void onlyANotFoundOrBytesThatDoNotDecodeAreTheRecordsFault(String flavor) {
    KafkaSettings settings = throughProxy(flavor);
    byte[] unknownId = good.clone();
    ByteBuffer.wrap(unknownId, 1, 4).putInt(987_654);
    SerializationException unknown = assertThrows(SerializationException.class, () -> decode(settings, unknownId));
    assertFalse(unknown instanceof RegistryUnavailableException, unknown.toString());
    assertTrue(unknown.getMessage().contains("schema id 987654") && unknown.getMessage().contains("unknown"),
        unknown.getMessage());

    SerializationException cut = assertThrows(SerializationException.class,
        () -> decode(settings, Arrays.copyOf(good, 8)));
    assertFalse(cut instanceof RegistryUnavailableException, cut.toString());

    proxy.failWith(404);
    SerializationException notFound = assertThrows(SerializationException.class, () -> decode(settings, good));
    assertFalse(notFound instanceof RegistryUnavailableException, notFound.toString());
  }

  @ParameterizedTest
  @MethodSource("flavors")
  void aRegistryThatDoesNotAnswerOrCannotBeReachedMeansTryAgainLater(String flavor) {
    KafkaSettings settings = throughProxy(flavor);
    proxy.hang();
    long start = System.nanoTime();
    RuntimeException hung = assertThrows(RuntimeException.class, () -> decode(settings, good));
    assertInstanceOf(RegistryUnavailableException.class, hung, hung.toString());
    assertTrue(Duration.ofNanos(System.nanoTime() - start).toSeconds() < 20, "gave up after the 10 s timeout");

    proxy.close();
    RuntimeException refused = assertThrows(RuntimeException.class, () -> decode(settings, good));
    assertInstanceOf(RegistryUnavailableException.class, refused, refused.toString());
  }

  @ParameterizedTest
  @MethodSource("flavors")
  void aSchemaOnceFetchedNeedsTheRegistryNoMore(String flavor) {
    KafkaSettings settings = throughProxy(flavor);
    var deserializer = AvroSerdes.valueDeserializer(settings);
    assertInstanceOf(PromptEvent.class, deserializer.deserialize(Topics.PROMPTS.name(), good));
    proxy.failWith(503);
    assertInstanceOf(PromptEvent.class, deserializer.deserialize(Topics.PROMPTS.name(), good));
    assertEquals(0, proxy.faults());
  }
}
