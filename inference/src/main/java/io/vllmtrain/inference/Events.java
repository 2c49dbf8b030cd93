package io.vllmtrain.inference;

import io.vllmtrain.events.FeedbackEvent;
import io.vllmtrain.events.PromptEvent;
import io.vllmtrain.events.ResponseEvent;
import io.vllmtrain.proto.v1.GenerateRequest;
import io.vllmtrain.proto.v1.SubmitFeedbackRequest;
import java.time.Instant;
import java.util.List;

/** Turns the public API's messages into the Avro events of the contract (proto → {@code io.vllmtrain.events}). */
final class Events {
  private Events() {}

  /** {@code sampling} is the request's sampling with defaults applied; {@code adapter} is "" for the base model. */
  static PromptEvent prompt(String requestId, GenerateRequest request, io.vllmtrain.proto.v1.SamplingParams sampling,
      String baseModel, String adapter, Instant acceptedAt) {
    return PromptEvent.newBuilder()
        .setRequestId(requestId)
        .setUserId(emptyToNull(request.getUserId()))
        .setSessionId(emptyToNull(request.getSessionId()))
        .setPrompt(prompt(request.getPrompt()))
        .setBaseModel(baseModel)
        .setAdapterVersion(emptyToNull(adapter))
        .setSampling(sampling(sampling))
        .setCreatedAt(acceptedAt)
        .build();
  }

  static ResponseEvent response(String requestId, int index, String text, String finishReason, int promptTokens,
      int completionTokens, String baseModel, String adapter, String replica, double latencyMs, Instant doneAt) {
    return ResponseEvent.newBuilder()
        .setResponseId(Ids.responseId(requestId, index))
        .setRequestId(requestId)
        .setIndex(index)
        .setText(text)
        .setFinishReason(finishReason)
        .setPromptTokens(promptTokens)
        .setCompletionTokens(completionTokens)
        .setBaseModel(baseModel)
        .setAdapterVersion(emptyToNull(adapter))
        .setEngineReplica(replica)
        .setLatencyMs(latencyMs)
        .setCreatedAt(doneAt)
        .build();
  }

  /** {@code f} is validated; {@code feedbackId} is the client's or a new one. */
  static FeedbackEvent feedback(SubmitFeedbackRequest f, String feedbackId, Instant at) {
    return FeedbackEvent.newBuilder()
        .setFeedbackId(feedbackId)
        .setRequestId(f.getRequestId())
        .setUserId(emptyToNull(f.getUserId()))
        .setKind(io.vllmtrain.events.FeedbackKind.valueOf(f.getKind().name()))
        .setResponseId(emptyToNull(f.getResponseId()))
        .setRating(f.hasRating() ? f.getRating() : null)
        .setChosenResponseId(emptyToNull(f.getChosenResponseId()))
        .setRejectedResponseId(emptyToNull(f.getRejectedResponseId()))
        .setEditedText(emptyToNull(f.getEditedText()))
        .setCreatedAt(at)
        .build();
  }

  static io.vllmtrain.events.Prompt prompt(io.vllmtrain.proto.v1.Prompt p) {
    List<io.vllmtrain.events.ChatMessage> messages = p.getMessagesList().stream()
        .map(m -> new io.vllmtrain.events.ChatMessage(m.getRole(), m.getContent()))
        .toList();
    return new io.vllmtrain.events.Prompt(messages, emptyToNull(p.getText()));
  }

  static io.vllmtrain.events.SamplingParams sampling(io.vllmtrain.proto.v1.SamplingParams s) {
    return io.vllmtrain.events.SamplingParams.newBuilder()
        .setN(s.getN())
        .setTemperature(s.hasTemperature() ? s.getTemperature() : 1.0)
        .setTopP(s.hasTopP() ? s.getTopP() : 1.0)
        .setMaxTokens(s.getMaxTokens())
        .setSeed(s.hasSeed() ? s.getSeed() : null)
        .setStop(List.copyOf(s.getStopList()))
        .build();
  }

  private static String emptyToNull(String s) {
    return s == null || s.isEmpty() ? null : s;
  }
}
