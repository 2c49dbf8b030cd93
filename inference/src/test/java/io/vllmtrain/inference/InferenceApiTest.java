package io.vllmtrain.inference;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.grpc.health.v1.HealthGrpc;
import io.vllmtrain.events.FeedbackEvent;
import io.vllmtrain.events.PromptEvent;
import io.vllmtrain.events.ResponseEvent;
import io.vllmtrain.proto.v1.ActivateRequest;
import io.vllmtrain.proto.v1.ChatMessage;
import io.vllmtrain.proto.v1.FeedbackKind;
import io.vllmtrain.proto.v1.FeedbackServiceGrpc;
import io.vllmtrain.proto.v1.GenerateChunk;
import io.vllmtrain.proto.v1.GenerateRequest;
import io.vllmtrain.proto.v1.GenerateResponse;
import io.vllmtrain.proto.v1.Prompt;
import io.vllmtrain.proto.v1.SamplingParams;
import io.vllmtrain.proto.v1.SubmitFeedbackRequest;
import io.vllmtrain.schemas.Topics;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import java.util.stream.Stream;
import org.apache.avro.specific.SpecificRecord;
import org.apache.kafka.clients.producer.MockProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The public API over a real gRPC channel (in-process transport) against the real service, with in-process engine
 * replicas: generation, its events, feedback, and the status every bad call gets.
 */
class InferenceApiTest {
  static final String V1 = Versions.id("run-1", 1);
  InProcessInference service;

  @BeforeEach
  void start() {
    service = InProcessInference.start().started(Versions.of("run-1", 1));
  }

  @AfterEach
  void stop() {
    service.close();
  }

  static GenerateRequest chat(String text) {
    return GenerateRequest.newBuilder()
        .setPrompt(Prompt.newBuilder().addMessages(ChatMessage.newBuilder().setRole("user").setContent(text)))
        .setUserId("user-7")
        .setSessionId("session-3")
        .build();
  }

  @Test
  void generateAnswersWithResponseIdsAndTheActiveVersion() {
    GenerateResponse r = service.inference.generate(chat("Name a colour.").toBuilder()
        .setSampling(SamplingParams.newBuilder().setN(2).setTemperature(0.7)).build());
    assertEquals(V1, r.getAdapterVersion());
    assertEquals(Versions.BASE_MODEL, r.getBaseModel());
    assertEquals(2, r.getResponsesCount());
    for (int i = 0; i < 2; i++) {
      assertEquals(r.getRequestId() + "-r" + i, r.getResponses(i).getResponseId());
      assertEquals(i, r.getResponses(i).getIndex());
      assertEquals("[" + V1 + "] Name a colour. #" + i, r.getResponses(i).getText());
      assertEquals("stop", r.getResponses(i).getFinishReason());
    }
  }

  @Test
  void generateRecordsThePromptAndEachResponseKeyedByRequestId() {
    GenerateResponse r = service.inference.generate(chat("Name a colour.").toBuilder()
        .setSampling(SamplingParams.newBuilder().setN(2).setTemperature(0.7).setSeed(11)).build());
    Await.until("three events", () -> service.kafka.history().size() == 3);

    List<ProducerRecord<String, SpecificRecord>> prompts = service.events(Topics.PROMPTS.name());
    assertEquals(1, prompts.size());
    assertEquals(r.getRequestId(), prompts.get(0).key());
    PromptEvent p = (PromptEvent) prompts.get(0).value();
    assertEquals(r.getRequestId(), p.getRequestId());
    assertEquals("user-7", p.getUserId());
    assertEquals("session-3", p.getSessionId());
    assertEquals("Name a colour.", p.getPrompt().getMessages().get(0).getContent());
    assertEquals(V1, p.getAdapterVersion());
    assertEquals(Versions.BASE_MODEL, p.getBaseModel());
    assertEquals(2, p.getSampling().getN());
    assertEquals(0.7, p.getSampling().getTemperature());
    assertEquals(1.0, p.getSampling().getTopP(), "unset values are recorded as the engine applies them");
    assertEquals(128, p.getSampling().getMaxTokens());
    assertEquals(11L, p.getSampling().getSeed());

    List<ProducerRecord<String, SpecificRecord>> responses = service.events(Topics.RESPONSES.name());
    assertEquals(2, responses.size());
    for (int i = 0; i < 2; i++) {
      assertEquals(r.getRequestId(), responses.get(i).key());
      ResponseEvent e = (ResponseEvent) responses.get(i).value();
      assertEquals(r.getResponses(i).getResponseId(), e.getResponseId());
      assertEquals(i, e.getIndex());
      assertEquals(r.getResponses(i).getText(), e.getText());
      assertEquals(V1, e.getAdapterVersion());
      assertEquals(7, e.getPromptTokens());
      assertEquals(3, e.getCompletionTokens());
      assertTrue(e.getEngineReplica().startsWith("engine-"), e.getEngineReplica());
      assertTrue(e.getLatencyMs() >= 0);
    }
  }

  @Test
  void streamingSendsDeltasAndClosesEachResponseWithItsId() {
    List<GenerateChunk> chunks = new ArrayList<>();
    service.inference.generateStream(chat("Hello").toBuilder().setSampling(SamplingParams.newBuilder().setN(2))
        .build()).forEachRemaining(chunks::add);
    String requestId = chunks.get(0).getRequestId();
    for (int i = 0; i < 2; i++) {
      int index = i;
      List<GenerateChunk> mine = chunks.stream().filter(c -> c.getIndex() == index).toList();
      StringBuilder text = new StringBuilder();
      mine.forEach(c -> text.append(c.getTextDelta()));
      assertEquals("[" + V1 + "] Hello #" + i, text.toString());
      GenerateChunk last = mine.get(mine.size() - 1);
      assertEquals(requestId + "-r" + i, last.getResponseId());
      assertEquals("stop", last.getFinishReason());
      assertTrue(mine.stream().allMatch(c -> c.getAdapterVersion().equals(V1)));
    }
    Await.until("prompt and two responses recorded", () -> service.kafka.history().size() == 3);
    ResponseEvent second = (ResponseEvent) service.events(Topics.RESPONSES.name()).get(1).value();
    assertEquals("[" + V1 + "] Hello #1", second.getText());
  }

  @Test
  void aCallerMayPinTheBaseModelOrAKeptVersion() {
    assertEquals("", service.inference.generate(chat("x").toBuilder().setAdapterVersion("base").build())
        .getAdapterVersion());
    service.rollOut(Versions.of("run-1", 2));
    GenerateResponse pinned = service.inference.generate(chat("x").toBuilder().setAdapterVersion(V1).build());
    assertEquals(V1, pinned.getAdapterVersion());
    assertEquals("[" + V1 + "] x #0", pinned.getResponses(0).getText());
    assertEquals(Versions.id("run-1", 2), service.inference.generate(chat("x")).getAdapterVersion());
  }

  static Stream<Arguments> badGenerateRequests() {
    GenerateRequest ok = chat("Hi");
    return Stream.of(
        Arguments.of(GenerateRequest.getDefaultInstance(), "prompt: is empty; set messages (chat) or text"),
        Arguments.of(ok.toBuilder().setPrompt(ok.getPrompt().toBuilder().setText("also")).build(),
            "prompt: both messages and text are set"),
        Arguments.of(GenerateRequest.newBuilder().setPrompt(Prompt.newBuilder().setText("  ")).build(),
            "prompt.text: is blank"),
        Arguments.of(GenerateRequest.newBuilder().setPrompt(Prompt.newBuilder()
            .addMessages(ChatMessage.newBuilder().setRole("bot").setContent("x"))).build(),
            "prompt.messages[0].role: 'bot' is not system, user or assistant"),
        Arguments.of(with(ok, s -> s.setN(9)), "sampling.n: 9 is outside [1, 8]"),
        Arguments.of(with(ok, s -> s.setN(-1)), "sampling.n: -1 is outside [1, 8]"),
        Arguments.of(with(ok, s -> s.setTopP(1.5)), "sampling.top_p: 1.5 is outside (0, 1]"),
        Arguments.of(with(ok, s -> s.setTopP(0)), "sampling.top_p: 0.0 is outside (0, 1]"),
        Arguments.of(with(ok, s -> s.setTemperature(-0.1)), "sampling.temperature: -0.1 is outside [0, 100]"),
        Arguments.of(with(ok, s -> s.setMaxTokens(5000)), "sampling.max_tokens: 5000 is outside [1, 4096]"),
        Arguments.of(with(ok, s -> s.addStop("")), "sampling.stop[0]: is empty"));
  }

  static GenerateRequest with(GenerateRequest r, Consumer<SamplingParams.Builder> change) {
    SamplingParams.Builder s = r.getSampling().toBuilder();
    change.accept(s);
    return r.toBuilder().setSampling(s).build();
  }

  @ParameterizedTest
  @MethodSource("badGenerateRequests")
  void aMalformedGenerateIsInvalidArgumentNamingTheField(GenerateRequest bad, String description) {
    StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> service.inference.generate(bad));
    assertEquals(Status.Code.INVALID_ARGUMENT, e.getStatus().getCode());
    assertTrue(e.getStatus().getDescription().startsWith(description), e.getStatus().getDescription());
    StatusRuntimeException streamed = assertThrows(StatusRuntimeException.class,
        () -> service.inference.generateStream(bad).hasNext());
    assertEquals(Status.Code.INVALID_ARGUMENT, streamed.getStatus().getCode());
    assertEquals(0, service.kafka.history().size(), "nothing is recorded for a refused request");
  }

  static String bytes(int n) {
    return "x".repeat(n);
  }

  static GenerateRequest messages(int count, int bytesEach) {
    Prompt.Builder p = Prompt.newBuilder();
    for (int i = 0; i < count; i++) {
      p.addMessages(ChatMessage.newBuilder().setRole(i % 2 == 0 ? "user" : "assistant").setContent(bytes(bytesEach)));
    }
    return GenerateRequest.newBuilder().setPrompt(p).build();
  }

  /** Past every size limit by one (defaults: docs/inference.md), each refused naming the field and its config key. */
  static Stream<Arguments> oversizedGenerateRequests() {
    GenerateRequest ok = chat("Hi");
    return Stream.of(
        Arguments.of(GenerateRequest.newBuilder().setPrompt(Prompt.newBuilder().setText(bytes(256 * 1024 + 1)))
            .build(), "prompt.text: 262145 bytes, above the limit of 262144 (limits.prompt.bytes)"),
        Arguments.of(GenerateRequest.newBuilder().setPrompt(Prompt.newBuilder().setText("é".repeat(131_073)))
            .build(), "prompt.text: 262146 bytes, above the limit of 262144 (limits.prompt.bytes)"),
        Arguments.of(messages(1, 256 * 1024 + 1),
            "prompt.messages[0].content: 262145 bytes, above the limit of 262144 (limits.prompt.bytes)"),
        Arguments.of(messages(3, 100 * 1024),
            "prompt.messages: 307200 bytes of content in all, above the limit of 262144 (limits.prompt.bytes)"),
        Arguments.of(messages(257, 1), "prompt.messages: 257 messages, above the limit of 256 (limits.prompt.messages)"),
        Arguments.of(with(ok, s -> {
          for (int i = 0; i < 17; i++) {
            s.addStop("s" + i);
          }
        }), "sampling.stop: 17 strings, above the limit of 16 (limits.stop.strings)"),
        Arguments.of(with(ok, s -> s.addStop(bytes(513))),
            "sampling.stop[0]: 513 bytes, above the limit of 512 (limits.stop.bytes)"),
        Arguments.of(ok.toBuilder().setUserId(bytes(257)).build(),
            "user_id: 257 characters, above the limit of 256 (limits.id.chars)"),
        Arguments.of(ok.toBuilder().setSessionId(bytes(257)).build(),
            "session_id: 257 characters, above the limit of 256 (limits.id.chars)"),
        Arguments.of(ok.toBuilder().setAdapterVersion(bytes(257)).build(),
            "adapter_version: 257 characters, above the limit of 256 (limits.id.chars)"),
        Arguments.of(GenerateRequest.newBuilder().setPrompt(Prompt.newBuilder()
            .addMessages(ChatMessage.newBuilder().setRole(bytes(100_000)).setContent("x"))).build(),
            "prompt.messages[0].role: '" + bytes(80) + "...' (100000 characters) is not system, user or assistant"));
  }

  @ParameterizedTest
  @MethodSource("oversizedGenerateRequests")
  void anOversizedGenerateIsInvalidArgumentNamingTheLimit(GenerateRequest bad, String description) {
    StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> service.inference.generate(bad));
    assertEquals(Status.Code.INVALID_ARGUMENT, e.getStatus().getCode());
    assertEquals(description, e.getStatus().getDescription());
    assertEquals(0, service.kafka.history().size(), "nothing is recorded for a refused request");
  }

  @Test
  void theLargestGenerateAcceptedMakesAPromptEventWellUnderKafkasOneMegabyte() throws Exception {
    GenerateRequest.Builder largest = messages(256, 1024).toBuilder()
        .setUserId("ü".repeat(256)).setSessionId("ü".repeat(256));
    SamplingParams.Builder s = SamplingParams.newBuilder();
    for (int i = 0; i < 16; i++) {
      s.addStop(bytes(512));
    }
    GenerateResponse r = service.inference.generate(largest.setSampling(s).build());
    Await.until("the prompt recorded", () -> service.events(Topics.PROMPTS.name()).size() == 1);
    int size = avroBytes(service.events(Topics.PROMPTS.name()).get(0).value());
    assertTrue(size > 256 * 1024 && size < 300 * 1024, "PromptEvent of " + size + " bytes");
    assertEquals(r.getRequestId(), service.events(Topics.PROMPTS.name()).get(0).key());
  }

  static int avroBytes(SpecificRecord record) throws java.io.IOException {
    var out = new java.io.ByteArrayOutputStream();
    var encoder = org.apache.avro.io.EncoderFactory.get().binaryEncoder(out, null);
    new org.apache.avro.specific.SpecificDatumWriter<SpecificRecord>(record.getSchema()).write(record, encoder);
    encoder.flush();
    return out.size();
  }

  @Test
  void aThreeMegabyteEditIsRefusedUpFrontNamingTheLimitAndNothingIsRecorded() {
    GenerateResponse r = service.inference.generate(chat("Fix this."));
    Await.until("prompt and response recorded", () -> service.kafka.history().size() == 2);
    SubmitFeedbackRequest edit = SubmitFeedbackRequest.newBuilder().setRequestId(r.getRequestId())
        .setUserId("user-7").setKind(FeedbackKind.EDIT).setResponseId(r.getResponses(0).getResponseId())
        .setEditedText(bytes(3 * 1024 * 1024)).build();
    StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> service.feedback.submitFeedback(edit));
    assertEquals(Status.Code.INVALID_ARGUMENT, e.getStatus().getCode());
    assertEquals("edited_text: 3145728 bytes, above the limit of 131072 (limits.edited.text.bytes)",
        e.getStatus().getDescription());
    assertEquals(0, service.events(Topics.FEEDBACK.name()).size());
    StatusRuntimeException longUser = assertThrows(StatusRuntimeException.class, () -> service.feedback
        .submitFeedback(edit.toBuilder().setEditedText("better").setUserId(bytes(300)).build()));
    assertEquals("user_id: 300 characters, above the limit of 256 (limits.id.chars)",
        longUser.getStatus().getDescription());
  }

  @Test
  void anUnknownVersionIsNotFoundAndOneNotLoadedIsAFailedPrecondition() {
    StatusRuntimeException unknown = assertThrows(StatusRuntimeException.class,
        () -> service.inference.generate(chat("x").toBuilder().setAdapterVersion("run-1/v000099").build()));
    assertEquals(Status.Code.NOT_FOUND, unknown.getStatus().getCode());
    assertEquals("adapter_version 'run-1/v000099' is not a known adapter version",
        unknown.getStatus().getDescription());

    service.controller().pause();
    service.controller().published(Versions.of("run-1", 2));
    Await.until("v2 published", () -> service.controller().rollout().view(Versions.id("run-1", 2)).isPresent());
    StatusRuntimeException notLoaded = assertThrows(StatusRuntimeException.class,
        () -> service.inference.generate(chat("x").toBuilder().setAdapterVersion(Versions.id("run-1", 2)).build()));
    assertEquals(Status.Code.FAILED_PRECONDITION, notLoaded.getStatus().getCode());
  }

  static SubmitFeedbackRequest rating(String requestId, String responseId, double rating) {
    return SubmitFeedbackRequest.newBuilder().setRequestId(requestId).setUserId("user-7")
        .setKind(FeedbackKind.RATING).setResponseId(responseId).setRating(rating).build();
  }

  @Test
  void feedbackIsRecordedKeyedByRequestIdAndKeepsTheClientsId() {
    GenerateResponse r = service.inference.generate(chat("Pick one.").toBuilder()
        .setSampling(SamplingParams.newBuilder().setN(2)).build());
    String chosen = r.getResponses(1).getResponseId();
    String rejected = r.getResponses(0).getResponseId();
    String id = service.feedback.submitFeedback(SubmitFeedbackRequest.newBuilder().setRequestId(r.getRequestId())
        .setUserId("user-7").setKind(FeedbackKind.PAIRWISE).setChosenResponseId(chosen).setRejectedResponseId(rejected)
        .setFeedbackId("client-fb-1").build()).getFeedbackId();
    assertEquals("client-fb-1", id);
    String assigned = service.feedback.submitFeedback(rating(r.getRequestId(), chosen, 1.0)).getFeedbackId();
    assertEquals(36, assigned.length(), "a UUID when the client gives none");

    Await.until("two feedback events", () -> service.events(Topics.FEEDBACK.name()).size() == 2);
    List<ProducerRecord<String, SpecificRecord>> feedback = service.events(Topics.FEEDBACK.name());
    FeedbackEvent pairwise = (FeedbackEvent) feedback.get(0).value();
    assertEquals(r.getRequestId(), feedback.get(0).key());
    assertEquals(io.vllmtrain.events.FeedbackKind.PAIRWISE, pairwise.getKind());
    assertEquals(chosen, pairwise.getChosenResponseId());
    assertEquals(rejected, pairwise.getRejectedResponseId());
    assertEquals(null, pairwise.getRating());
    FeedbackEvent rated = (FeedbackEvent) feedback.get(1).value();
    assertEquals(assigned, rated.getFeedbackId());
    assertEquals(1.0, rated.getRating());
    assertEquals("user-7", rated.getUserId());
  }

  static SubmitFeedbackRequest pairwise(GenerateResponse r, String userId) {
    return SubmitFeedbackRequest.newBuilder().setRequestId(r.getRequestId()).setUserId(userId)
        .setKind(FeedbackKind.PAIRWISE).setChosenResponseId(r.getResponses(0).getResponseId())
        .setRejectedResponseId(r.getResponses(1).getResponseId()).build();
  }

  static GenerateRequest abTest(String userId) {
    return chat("Pick one.").toBuilder().setUserId(userId).setSampling(SamplingParams.newBuilder().setN(2)).build();
  }

  @Test
  void feedbackUnderAnotherUserIdThanItsRequestsIsPermissionDenied() {
    GenerateResponse victims = service.inference.generate(abTest("victim"));
    for (String other : List.of("attacker", "")) {
      StatusRuntimeException e = assertThrows(StatusRuntimeException.class,
          () -> service.feedback.submitFeedback(pairwise(victims, other)));
      assertEquals(Status.Code.PERMISSION_DENIED, e.getStatus().getCode());
      assertEquals("request_id: was not issued to user_id '" + other + "' (feedback must carry the user_id of its "
          + "request)", e.getStatus().getDescription());
    }
    service.feedback.submitFeedback(pairwise(victims, "victim"));
    Await.until("the victim's feedback recorded", () -> service.events(Topics.FEEDBACK.name()).size() == 1);
    assertEquals("victim", ((FeedbackEvent) service.events(Topics.FEEDBACK.name()).get(0).value()).getUserId());
  }

  @Test
  void feedbackOnARequestIdTheServiceDidNotIssueIsPermissionDenied() {
    GenerateResponse real = service.inference.generate(abTest("user-7"));
    String id = real.getRequestId();
    String tampered = id.substring(0, 35) + (id.charAt(35) == '0' ? '1' : '0') + id.substring(36);
    for (String forged : List.of("3f1c2b4e-0000-4000-8000-000000000001", tampered, id + "x")) {
      SubmitFeedbackRequest f = rating(forged, forged + "-r0", 1);
      StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> service.feedback.submitFeedback(f));
      assertEquals(Status.Code.PERMISSION_DENIED, e.getStatus().getCode(), forged);
    }
    assertEquals(0, service.events(Topics.FEEDBACK.name()).size());
  }

  @Test
  void requestIdsSignedWithTheConfiguredKeyVerifyOnAnotherInstanceOrAfterARestart() {
    String key = java.util.Base64.getEncoder().encodeToString(new byte[32]).replace('A', 'k');
    try (InProcessInference a = new InProcessInference(2, Map.of("ids.signing.key", key),
            InProcessInference.autoAckKafka()).started();
        InProcessInference b = new InProcessInference(2, Map.of("ids.signing.key", key),
            InProcessInference.autoAckKafka()).started();
        InProcessInference other = InProcessInference.start().started()) {
      GenerateResponse r = a.inference.generate(abTest("user-7"));
      b.feedback.submitFeedback(pairwise(r, "user-7"));
      StatusRuntimeException e = assertThrows(StatusRuntimeException.class,
          () -> other.feedback.submitFeedback(pairwise(r, "user-7")));
      assertEquals(Status.Code.PERMISSION_DENIED, e.getStatus().getCode(), "another key: not an id of this service");
    }
  }

  static Stream<Arguments> badFeedback() {
    String req = "3f1c2b4e-0000-4000-8000-000000000001";
    String r0 = req + "-r0";
    String r1 = req + "-r1";
    SubmitFeedbackRequest.Builder pairwise = SubmitFeedbackRequest.newBuilder().setRequestId(req)
        .setKind(FeedbackKind.PAIRWISE).setChosenResponseId(r0).setRejectedResponseId(r1);
    return Stream.of(
        Arguments.of(rating("", r0, 1).toBuilder().build(), "request_id: is required"),
        Arguments.of(SubmitFeedbackRequest.newBuilder().setRequestId(req).build(), "kind: is not set"),
        Arguments.of(rating(req, "", 1), "response_id: is required"),
        Arguments.of(rating(req, r0, 1.5), "rating: 1.5 is outside [0, 1]"),
        Arguments.of(rating(req, r0, -1), "rating: -1.0 is outside [0, 1]"),
        Arguments.of(rating(req, r0, 1).toBuilder().clearRating().build(), "rating: is required for RATING"),
        Arguments.of(rating(req, "other-request-r0", 1),
            "response_id: 'other-request-r0' is not a response of request '" + req + "'"),
        Arguments.of(pairwise.clone().setRejectedResponseId(r0).build(),
            "rejected_response_id: equals chosen_response_id"),
        Arguments.of(pairwise.clone().setChosenResponseId("").build(), "chosen_response_id: is required"),
        Arguments.of(pairwise.clone().setRejectedResponseId("x-r1").build(),
            "rejected_response_id: 'x-r1' is not a response of request"),
        Arguments.of(pairwise.clone().setRating(1).build(), "rating: is only for RATING feedback"),
        Arguments.of(SubmitFeedbackRequest.newBuilder().setRequestId(req).setKind(FeedbackKind.EDIT)
            .setResponseId(r0).build(), "edited_text: is required for EDIT"),
        Arguments.of(rating(req, r0, 1).toBuilder().setEditedText("better").build(),
            "edited_text: is not used by RATING feedback"),
        Arguments.of(rating(req, r0, 1).toBuilder().setFeedbackId("has space").build(),
            "feedback_id: must be 1-128 characters"));
  }

  @ParameterizedTest
  @MethodSource("badFeedback")
  void malformedFeedbackIsInvalidArgumentNamingTheField(SubmitFeedbackRequest bad, String description) {
    StatusRuntimeException e = assertThrows(StatusRuntimeException.class,
        () -> service.feedback.submitFeedback(bad));
    assertEquals(Status.Code.INVALID_ARGUMENT, e.getStatus().getCode());
    assertTrue(e.getStatus().getDescription().startsWith(description), e.getStatus().getDescription());
    assertEquals(0, service.kafka.history().size());
  }

  @Test
  void adapterControlsRefuseWhatTheyCannotDo() {
    StatusRuntimeException empty = assertThrows(StatusRuntimeException.class,
        () -> service.adapters.activate(ActivateRequest.getDefaultInstance()));
    assertEquals(Status.Code.INVALID_ARGUMENT, empty.getStatus().getCode());
    assertTrue(empty.getStatus().getDescription().startsWith("version_id: is required"));
    StatusRuntimeException unknown = assertThrows(StatusRuntimeException.class,
        () -> service.adapters.activate(ActivateRequest.newBuilder().setVersionId("run-9/v000001").build()));
    assertEquals(Status.Code.NOT_FOUND, unknown.getStatus().getCode());
    service.controller().published(Versions.builder("run-1", 2).setSha256("not-a-digest").build());
    Await.until("v2 refused", () -> service.controller().rollout().view(Versions.id("run-1", 2)).isPresent());
    StatusRuntimeException refused = assertThrows(StatusRuntimeException.class, () -> service.adapters
        .activate(ActivateRequest.newBuilder().setVersionId(Versions.id("run-1", 2)).build()));
    assertEquals(Status.Code.FAILED_PRECONDITION, refused.getStatus().getCode());
    assertTrue(refused.getStatus().getDescription().contains("sha256 'not-a-digest' is not 64 lower-case hex"));
  }

  @Test
  void rollbackWithTheBaseModelActiveIsAFailedPrecondition() {
    service.adapters.activate(ActivateRequest.newBuilder().setVersionId("base").build());
    StatusRuntimeException e = assertThrows(StatusRuntimeException.class,
        () -> service.adapters.rollback(io.vllmtrain.proto.v1.RollbackRequest.getDefaultInstance()));
    assertEquals(Status.Code.FAILED_PRECONDITION, e.getStatus().getCode());
    assertEquals("the base model is active: there is no earlier version to roll back to",
        e.getStatus().getDescription());
  }

  @Test
  void anUnreachableReplicaIsTakenOutAndTheRequestServedByAnother() {
    service.engine(0).crash();
    for (int i = 0; i < 6; i++) {
      assertEquals(V1, service.inference.generate(chat("still here?")).getAdapterVersion());
    }
    assertEquals(List.of(service.engine(1).name),
        service.server.router().inService().stream().map(EngineReplica::name).toList());
  }

  @Test
  void anEngineCallThatFailsToStartGoesToAnotherReplicaAndLeavesNothingOutstanding() {
    InProcessEngine a = service.engine(0);
    service.engineChannels.get(a.name).failToStart = true;
    for (int i = 0; i < 4; i++) {
      assertEquals(V1, service.inference.generate(chat("still here?")).getAdapterVersion());
      List<GenerateChunk> chunks = new ArrayList<>();
      service.inference.generateStream(chat("and streaming?")).forEachRemaining(chunks::add);
      assertTrue(chunks.get(chunks.size() - 1).getFinishReason().equals("stop"), chunks.toString());
    }
    EngineReplica replicaA = service.server.router().replicas().stream().filter(r -> r.name().equals(a.name))
        .findFirst().orElseThrow();
    assertEquals(0, replicaA.outstanding(), "a call that never started is not outstanding");
  }

  @Test
  void healthIsServingOnceStartedAndNotServingWithoutEngines() {
    var health = HealthGrpc.newBlockingStub(service.channel);
    assertEquals(ServingStatus.SERVING, health.check(HealthCheckRequest.newBuilder()
        .setService("vllm_train.proto.v1.InferenceService").build()).getStatus());
    service.engine(0).crash();
    service.engine(1).crash();
    // Generous: a replica answering slowly is only failed after three slow answers, and this box may be loaded.
    Await.until("NOT_SERVING", java.time.Duration.ofSeconds(90), () -> health.check(
        HealthCheckRequest.getDefaultInstance()).getStatus() == ServingStatus.NOT_SERVING);
    StatusRuntimeException e = assertThrows(StatusRuntimeException.class,
        () -> service.inference.generate(chat("anyone?")));
    assertEquals(Status.Code.UNAVAILABLE, e.getStatus().getCode());
  }

  @Test
  void beforeTheVersionHistoryIsReadRequestsAreUnavailable() {
    try (InProcessInference fresh = InProcessInference.start()) {
      Await.until("replicas joined", () -> fresh.server.router().inService().size() == 2);
      StatusRuntimeException e = assertThrows(StatusRuntimeException.class,
          () -> fresh.inference.generate(chat("too early")));
      assertEquals(Status.Code.UNAVAILABLE, e.getStatus().getCode());
      assertTrue(e.getStatus().getDescription().startsWith("starting"), e.getStatus().getDescription());
      fresh.started();
      assertEquals("", fresh.inference.generate(chat("now")).getAdapterVersion(), "an empty history: base model");
    }
  }

  @Test
  void eventsThatDoNotFitTheBufferNeverFailAGenerateButFailFeedbackWithUnavailable() {
    MockProducer<String, SpecificRecord> stuckKafka =
        new MockProducer<>(false, null, new StringSerializer(), (t, v) -> new byte[0]);
    try (InProcessInference small = new InProcessInference(1, Map.of("events.buffer.capacity", "2"), stuckKafka)) {
      small.started();
      GenerateResponse first = null;
      for (int i = 0; i < 5; i++) {
        first = small.inference.generate(chat("request " + i));
      }
      EventRecorder.Stats stats = small.server.events().stats();
      assertEquals(2, stats.buffered());
      assertEquals(8, stats.dropped(), "5 prompts + 5 responses, 2 held: 8 counted as dropped");
      SubmitFeedbackRequest thumbsUp = rating(first.getRequestId(), first.getResponses(0).getResponseId(), 1);
      StatusRuntimeException e = assertThrows(StatusRuntimeException.class,
          () -> small.feedback.submitFeedback(thumbsUp));
      assertEquals(Status.Code.UNAVAILABLE, e.getStatus().getCode());
    }
  }

  static MockProducer<String, SpecificRecord> manualKafka() {
    return new MockProducer<>(false, null, new StringSerializer(), (t, v) -> new byte[0]);
  }

  @Test
  void feedbackIsAnsweredOnlyOnceKafkaHasAcknowledgedItsEvent() throws Exception {
    MockProducer<String, SpecificRecord> kafka = manualKafka();
    try (InProcessInference s = new InProcessInference(1, Map.of(), kafka)) {
      s.started();
      GenerateResponse r = s.inference.generate(chat("Rate me."));
      Await.until("prompt and response handed to Kafka", () -> kafka.history().size() == 2);
      var reply = FeedbackServiceGrpc.newFutureStub(s.channel).submitFeedback(rating(r.getRequestId(),
          r.getResponses(0).getResponseId(), 1).toBuilder().setFeedbackId("fb-durable").build());
      Await.until("feedback handed to Kafka", () -> kafka.history().size() == 3);
      Thread.sleep(200);
      assertFalse(reply.isDone(), "no answer while the feedback event is not acknowledged");
      while (kafka.completeNext()) {
        // prompt, response, feedback
      }
      assertEquals("fb-durable", reply.get(10, TimeUnit.SECONDS).getFeedbackId());
    }
  }

  @Test
  void feedbackKafkaRefusesOrDoesNotAcknowledgeInTimeIsNotAcknowledged() {
    MockProducer<String, SpecificRecord> kafka = manualKafka();
    try (InProcessInference s = new InProcessInference(1, Map.of("feedback.ack.timeout.ms", "300"), kafka)) {
      s.started();
      GenerateResponse r = s.inference.generate(chat("Rate me."));
      SubmitFeedbackRequest thumbsUp = rating(r.getRequestId(), r.getResponses(0).getResponseId(), 1);
      StatusRuntimeException late = assertThrows(StatusRuntimeException.class,
          () -> s.feedback.submitFeedback(thumbsUp.toBuilder().setFeedbackId("fb-late").build()));
      assertEquals(Status.Code.UNAVAILABLE, late.getStatus().getCode());
      assertTrue(late.getStatus().getDescription().contains("not acknowledged by Kafka within 300 ms")
          && late.getStatus().getDescription().contains("retry with feedback_id fb-late"),
          late.getStatus().getDescription());

      while (kafka.completeNext()) {
        // everything so far
      }
      var reply = FeedbackServiceGrpc.newFutureStub(s.channel).submitFeedback(thumbsUp);
      Await.until("the feedback handed to Kafka", () -> kafka.history().size() == 4);
      kafka.errorNext(new org.apache.kafka.common.errors.SerializationException("schema not compatible"));
      ExecutionException refused = assertThrows(ExecutionException.class, () -> reply.get(10, TimeUnit.SECONDS));
      Status status = Status.fromThrowable(refused.getCause());
      assertEquals(Status.Code.INTERNAL, status.getCode());
      assertTrue(status.getDescription().startsWith("feedback not recorded: Kafka refused its event"),
          status.getDescription());
    }
  }

  @Test
  void theEventBufferIsBoundedInBytesGenerateStillAnswersFeedbackIsUnavailable() {
    try (InProcessInference s = new InProcessInference(1, Map.of("events.buffer.bytes", "1048576"), manualKafka())) {
      s.started();
      List<GenerateResponse> answers = new ArrayList<>();
      for (int i = 0; i < 3; i++) {
        // ~400 KiB of prompt and as much again of response (the in-process engine echoes the prompt)
        answers.add(s.inference.generate(GenerateRequest.newBuilder().setUserId("user-7")
            .setPrompt(Prompt.newBuilder().setText(i + bytes(200 * 1024))).build()));
      }
      GenerateResponse first = answers.get(0);
      EventRecorder.Stats stats = s.server.events().stats();
      assertEquals(2, stats.buffered(), "one request's prompt and response fit in 1 MiB, the others do not");
      assertEquals(4, stats.dropped());
      SubmitFeedbackRequest bigEdit = SubmitFeedbackRequest.newBuilder().setRequestId(first.getRequestId())
          .setUserId("user-7").setKind(FeedbackKind.EDIT).setResponseId(first.getResponses(0).getResponseId())
          .setEditedText(bytes(120 * 1024)).build(); // ~240 KiB more: past 1 MiB
      StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> s.feedback.submitFeedback(bigEdit));
      assertEquals(Status.Code.UNAVAILABLE, e.getStatus().getCode());
      assertTrue(e.getStatus().getDescription().startsWith("event buffer full"), e.getStatus().getDescription());
    }
  }

  @Test
  void theStreamOfAnUnknownVersionFailsBeforeAnyChunk() {
    Iterator<GenerateChunk> it = service.inference.generateStream(chat("x").toBuilder()
        .setAdapterVersion("nope/v000001").build());
    StatusRuntimeException e = assertThrows(StatusRuntimeException.class, it::hasNext);
    assertEquals(Status.Code.NOT_FOUND, e.getStatus().getCode());
  }
}
