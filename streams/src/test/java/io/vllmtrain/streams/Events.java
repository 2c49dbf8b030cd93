package io.vllmtrain.streams;

import io.vllmtrain.events.FeedbackEvent;
import io.vllmtrain.events.FeedbackKind;
import io.vllmtrain.events.Prompt;
import io.vllmtrain.events.PromptEvent;
import io.vllmtrain.events.ResponseEvent;
import io.vllmtrain.events.SamplingParams;
import java.time.Instant;
import java.util.List;

/** Short builders for the events of the tests, with the fields the rules look at up front. */
final class Events {
  static final String BASE_MODEL = "tiny-qwen";
  static final Instant T0 = Instant.parse("2026-01-05T10:00:00Z");

  private Events() {}

  static PromptEvent prompt(String requestId, String text) {
    return PromptEvent.newBuilder()
        .setRequestId(requestId)
        .setUserId("u1")
        .setPrompt(Prompt.newBuilder().setText(text).setMessages(List.of()).build())
        .setBaseModel(BASE_MODEL)
        .setAdapterVersion(null)
        .setSampling(SamplingParams.newBuilder().setN(2).build())
        .setCreatedAt(T0)
        .build();
  }

  static ResponseEvent response(String requestId, String responseId, String text, String adapterVersion) {
    return ResponseEvent.newBuilder()
        .setResponseId(responseId)
        .setRequestId(requestId)
        .setIndex(0)
        .setText(text)
        .setFinishReason("stop")
        .setPromptTokens(5)
        .setCompletionTokens(7)
        .setBaseModel(BASE_MODEL)
        .setAdapterVersion(adapterVersion)
        .setEngineReplica("engine-0")
        .setLatencyMs(12.5)
        .setCreatedAt(T0)
        .build();
  }

  static FeedbackEvent rating(String feedbackId, String requestId, String userId, String responseId, double rating) {
    return base(feedbackId, requestId, userId, FeedbackKind.RATING).setResponseId(responseId).setRating(rating).build();
  }

  static FeedbackEvent thumbsUp(String feedbackId, String requestId, String userId, String responseId) {
    return rating(feedbackId, requestId, userId, responseId, 1.0);
  }

  static FeedbackEvent thumbsDown(String feedbackId, String requestId, String userId, String responseId) {
    return rating(feedbackId, requestId, userId, responseId, 0.0);
  }

  static FeedbackEvent pairwise(String feedbackId, String requestId, String chosenId, String rejectedId) {
    return base(feedbackId, requestId, "u1", FeedbackKind.PAIRWISE)
        .setChosenResponseId(chosenId).setRejectedResponseId(rejectedId).build();
  }

  static FeedbackEvent edit(String feedbackId, String requestId, String responseId, String editedText) {
    return base(feedbackId, requestId, "u1", FeedbackKind.EDIT)
        .setResponseId(responseId).setEditedText(editedText).build();
  }

  private static FeedbackEvent.Builder base(String feedbackId, String requestId, String userId, FeedbackKind kind) {
    return FeedbackEvent.newBuilder()
        .setFeedbackId(feedbackId)
        .setRequestId(requestId)
        .setUserId(userId)
        .setKind(kind)
        .setCreatedAt(T0);
  }
}
