package io.vllmtrain.inference;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.vllmtrain.events.FeedbackEvent;
import io.vllmtrain.events.PromptEvent;
import io.vllmtrain.events.ResponseEvent;
import io.vllmtrain.proto.v1.ChatMessage;
import io.vllmtrain.proto.v1.FeedbackKind;
import io.vllmtrain.proto.v1.GenerateRequest;
import io.vllmtrain.proto.v1.GenerateResponse;
import io.vllmtrain.proto.v1.ListVersionsRequest;
import io.vllmtrain.proto.v1.Prompt;
import io.vllmtrain.proto.v1.SamplingParams;
import io.vllmtrain.proto.v1.SubmitFeedbackRequest;
import io.vllmtrain.proto.v1.VersionStatus;
import io.vllmtrain.schemas.KafkaSettings;
import io.vllmtrain.schemas.Topics;
import io.vllmtrain.stack.EmbeddedStack;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.UUID;
import java.util.stream.Collectors;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The service against the real broker and registry (EmbeddedStack): its events on the topics in Avro, adapter
 * versions read from llm.adapter-versions (also after a restart), and events that wait out a Kafka or registry
 * outage. Engines are in-process here; RolloutAcceptanceTest runs real ones.
 */
class InferenceKafkaTest {
  static EmbeddedStack stack;
  // Versions of other tests share the topic; a base model of our own makes them someone else's.
  final String baseModel = "kafka-test-" + UUID.randomUUID().toString().substring(0, 8);
  final String run = "run-" + UUID.randomUUID().toString().substring(0, 8);
  InProcessInference service;

  @BeforeAll
  static void stack() {
    stack = EmbeddedStack.shared();
  }

  @AfterEach
  void stop() {
    if (service != null) {
      service.close();
    }
  }

  Map<String, String> config() {
    return new HashMap<>(Map.of("base.model", baseModel));
  }

  /** A service whose events go to {@code events} and whose adapter versions come from the real topic. */
  InProcessInference start(KafkaSettings events) {
    return start(events, Map.of());
  }

  InProcessInference start(KafkaSettings events, Map<String, String> overrides) {
    Map<String, String> config = config();
    config.putAll(overrides);
    return new InProcessInference(2, config, null,
        c -> EventRecorder.forKafka(events, c.eventBufferCapacity(), c.eventBufferBytes()),
        c -> AdapterVersionFollower.kafkaConsumer(stack.settings()));
  }

  /**
   * The signature of a version record as docs/inference.md defines it, computed here on its own (the service has
   * its own implementation): hex HMAC-SHA256 over the fields joined by newlines.
   */
  static byte[] signature(byte[] key, io.vllmtrain.events.AdapterVersion v) throws Exception {
    javax.crypto.Mac mac = javax.crypto.Mac.getInstance("HmacSHA256");
    mac.init(new javax.crypto.spec.SecretKeySpec(key, "HmacSHA256"));
    String canonical = String.join("\n", "vllm-train adapter version v1", v.getVersionId(), v.getRunId(),
        Long.toString(v.getVersion()), v.getBaseModel(), v.getUri(), v.getSha256());
    return java.util.HexFormat.of().formatHex(mac.doFinal(canonical.getBytes(java.nio.charset.StandardCharsets.UTF_8)))
        .getBytes(java.nio.charset.StandardCharsets.US_ASCII);
  }

  @Test
  void withASigningKeyOnlyVersionRecordsSignedWithItAreLoaded() throws Exception {
    byte[] key = new byte[32];
    new java.security.SecureRandom().nextBytes(key);
    byte[] otherKey = new byte[32];
    StackTopics.publish(stack.settings(), version(1), Map.of("vt-signature", signature(key, version(1))));
    StackTopics.publish(stack.settings(), version(2)); // unsigned: anyone with write access to the topic
    StackTopics.publish(stack.settings(), version(3), Map.of("vt-signature", signature(otherKey, version(3))));
    service = start(stack.settings(), Map.of("rollout.signing.key",
        java.util.Base64.getEncoder().encodeToString(key))).awaitStarted();
    service.awaitActive(version(1).getVersionId());
    var rollout = service.controller().rollout();
    assertEquals(AdapterRollout.Status.FAILED, rollout.view(version(2).getVersionId()).orElseThrow().status());
    assertEquals("not signed: rollout.signing.key is set and the record has no vt-signature header",
        rollout.view(version(2).getVersionId()).orElseThrow().failureReason());
    assertEquals("vt-signature does not verify with rollout.signing.key",
        rollout.view(version(3).getVersionId()).orElseThrow().failureReason());
    StackTopics.publish(stack.settings(), version(4), Map.of("vt-signature", signature(key, version(4))));
    service.awaitActive(version(4).getVersionId());
  }

  io.vllmtrain.events.AdapterVersion version(long n) {
    return Versions.builder(run, n).setBaseModel(baseModel).build();
  }

  static GenerateRequest chat(String text, int n) {
    return GenerateRequest.newBuilder().setUserId("user-1")
        .setPrompt(Prompt.newBuilder().addMessages(ChatMessage.newBuilder().setRole("user").setContent(text)))
        .setSampling(SamplingParams.newBuilder().setN(n)).build();
  }

  @Test
  void promptResponsesAndFeedbackLandOnTheirTopicsAsAvroKeyedByRequestId() {
    service = start(stack.settings()).awaitStarted();
    GenerateResponse r = service.inference.generate(chat("Name a colour.", 2));
    String id = r.getRequestId();
    service.feedback.submitFeedback(SubmitFeedbackRequest.newBuilder().setRequestId(id).setUserId("user-1")
        .setKind(FeedbackKind.PAIRWISE)
        .setChosenResponseId(r.getResponses(0).getResponseId())
        .setRejectedResponseId(r.getResponses(1).getResponseId()).build());

    List<ConsumerRecord<String, PromptEvent>> prompts = StackTopics.read(stack.settings(), Topics.PROMPTS.name(),
        rec -> id.equals(rec.key()), 1, Duration.ofSeconds(60));
    assertEquals("Name a colour.", prompts.get(0).value().getPrompt().getMessages().get(0).getContent());
    assertEquals(baseModel, prompts.get(0).value().getBaseModel());
    List<ConsumerRecord<String, ResponseEvent>> responses = StackTopics.read(stack.settings(),
        Topics.RESPONSES.name(), rec -> id.equals(rec.key()), 2, Duration.ofSeconds(60));
    assertEquals(Set.of(id + "-r0", id + "-r1"),
        responses.stream().map(rec -> rec.value().getResponseId()).collect(Collectors.toSet()));
    assertEquals(Set.of(prompts.get(0).partition()),
        responses.stream().map(ConsumerRecord::partition).collect(Collectors.toSet()),
        "keyed by request id: prompt and responses are co-partitioned");
    List<ConsumerRecord<String, FeedbackEvent>> feedback = StackTopics.read(stack.settings(),
        Topics.FEEDBACK.name(), rec -> id.equals(rec.key()), 1, Duration.ofSeconds(60));
    assertEquals(id + "-r0", feedback.get(0).value().getChosenResponseId());
  }

  @Test
  void versionsComeFromTheTopicAndARestartRecoversTheActiveVersion() {
    StackTopics.publish(stack.settings(), version(1));
    service = start(stack.settings()).awaitStarted();
    service.awaitActive(version(1).getVersionId());
    StackTopics.publish(stack.settings(), version(2),
        Versions.builder(run, 3).setBaseModel(baseModel).setSha256("").build());
    service.awaitActive(version(2).getVersionId());
    Await.until("v3 seen", () -> service.controller().rollout().view(version(3).getVersionId()).isPresent());
    var v3 = service.adapters.listVersions(ListVersionsRequest.getDefaultInstance()).getVersionsList().stream()
        .filter(v -> v.getVersionId().equals(version(3).getVersionId())).findFirst().orElseThrow();
    assertEquals(VersionStatus.FAILED, v3.getStatus());
    assertEquals("sha256 is missing", v3.getFailureReason());
    service.close();

    service = start(stack.settings()).awaitStarted();
    assertEquals(version(2).getVersionId(), service.controller().rollout().active(),
        "the newest good version of the topic, loaded before the first request is served");
    assertEquals(version(2).getVersionId(), service.inference.generate(chat("again", 1)).getAdapterVersion());
  }

  @Test
  void whileKafkaIsUnreachableRequestsSucceedAndTheirEventsWaitThenArrive() throws Exception {
    try (TcpForwarder broker = new TcpForwarder(stack.bootstrapServers())) {
      KafkaSettings viaForwarder = KafkaSettings.of(broker.address(), stack.registryUrl());
      service = start(viaForwarder).awaitStarted();
      List<String> ids = new java.util.ArrayList<>();
      for (int i = 0; i < 3; i++) {
        ids.add(service.inference.generate(chat("while Kafka is away " + i, 1)).getRequestId());
      }
      EventRecorder.Stats waiting = service.server.events().stats();
      assertEquals(6, waiting.buffered());
      assertEquals(0, waiting.sent() + waiting.dropped() + waiting.failed());
      broker.open();
      Await.until("events delivered", Duration.ofSeconds(60), () -> service.server.events().stats().sent() == 6,
          () -> service.server.events().stats().toString());
      StackTopics.<ResponseEvent>read(stack.settings(), Topics.RESPONSES.name(), rec -> ids.contains(rec.key()), 3,
          Duration.ofSeconds(60));
    }
  }

  @Test
  void whileTheRegistryIsUnreachableEventsWaitThenArrive() throws Exception {
    String registry = stack.registryUrl().replaceFirst("^https?://", "");
    try (TcpForwarder forwarder = new TcpForwarder(registry)) {
      KafkaSettings viaForwarder = KafkaSettings.of(stack.bootstrapServers(), "http://" + forwarder.address());
      service = start(viaForwarder).awaitStarted();
      String id = service.inference.generate(chat("while the registry is away", 1)).getRequestId();
      Thread.sleep(1_000);
      EventRecorder.Stats waiting = service.server.events().stats();
      assertEquals(2, waiting.buffered(), waiting.toString());
      assertEquals(0, waiting.failed(), "an unreachable registry is an outage, not a bad event");
      forwarder.open();
      Await.until("events delivered", Duration.ofSeconds(60), () -> service.server.events().stats().sent() == 2,
          () -> service.server.events().stats().toString());
      assertTrue(StackTopics.<PromptEvent>read(stack.settings(), Topics.PROMPTS.name(), rec -> id.equals(rec.key()),
          1, Duration.ofSeconds(60)).size() == 1);
    }
  }
}
