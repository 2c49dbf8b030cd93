package io.vllmtrain.inference;

import io.vllmtrain.proto.v1.ChatMessage;
import io.vllmtrain.proto.v1.FeedbackKind;
import io.vllmtrain.proto.v1.GenerateRequest;
import io.vllmtrain.proto.v1.Prompt;
import io.vllmtrain.proto.v1.SamplingParams;
import io.vllmtrain.proto.v1.SubmitFeedbackRequest;
import java.util.Set;
import java.util.regex.Pattern;

/**
 * Checks public requests before anything is routed or recorded. Each problem is reported as an {@link Invalid}
 * that names the field, so that the caller gets {@code INVALID_ARGUMENT} with e.g.
 * {@code "sampling.top_p: 1.5 is outside (0, 1]"}.
 */
final class RequestValidator {
  /** A request field with a bad value; the message starts with the field's path. */
  static final class Invalid extends RuntimeException {
    Invalid(String field, String problem) {
      super(field + ": " + problem, null, false, false);
    }
  }

  private static final Set<String> ROLES = Set.of("system", "user", "assistant");
  private static final Pattern CLIENT_ID = Pattern.compile("[A-Za-z0-9._:/-]{1,128}");
  private static final int MAX_ID_CHARS = 256;
  private static final int MAX_STOP_STRINGS = 16;

  private final int maxN;
  private final int defaultMaxTokens;
  private final int maxTokensLimit;

  RequestValidator(int maxN, int defaultMaxTokens, int maxTokensLimit) {
    this.maxN = maxN;
    this.defaultMaxTokens = defaultMaxTokens;
    this.maxTokensLimit = maxTokensLimit;
  }

  /** Validates a generate request and returns its sampling parameters with defaults applied (n, max_tokens). */
  SamplingParams generate(GenerateRequest request) {
    prompt(request.getPrompt());
    optionalId("user_id", request.getUserId());
    optionalId("session_id", request.getSessionId());
    SamplingParams s = request.getSampling();
    int n = s.getN() == 0 ? 1 : s.getN();
    if (n < 1 || n > maxN) {
      throw new Invalid("sampling.n", n + " is outside [1, " + maxN + "]");
    }
    int maxTokens = s.getMaxTokens() == 0 ? defaultMaxTokens : s.getMaxTokens();
    if (maxTokens < 1 || maxTokens > maxTokensLimit) {
      throw new Invalid("sampling.max_tokens", maxTokens + " is outside [1, " + maxTokensLimit + "]");
    }
    if (s.hasTemperature() && !(s.getTemperature() >= 0 && s.getTemperature() <= 100)) {
      throw new Invalid("sampling.temperature", s.getTemperature() + " is outside [0, 100] (0 = greedy)");
    }
    if (s.hasTopP() && !(s.getTopP() > 0 && s.getTopP() <= 1)) {
      throw new Invalid("sampling.top_p", s.getTopP() + " is outside (0, 1]");
    }
    if (s.getStopCount() > MAX_STOP_STRINGS) {
      throw new Invalid("sampling.stop", s.getStopCount() + " strings, at most " + MAX_STOP_STRINGS + " allowed");
    }
    for (int i = 0; i < s.getStopCount(); i++) {
      if (s.getStop(i).isEmpty()) {
        throw new Invalid("sampling.stop[" + i + "]", "is empty");
      }
    }
    return s.toBuilder().setN(n).setMaxTokens(maxTokens).build();
  }

  private static void prompt(Prompt p) {
    boolean hasText = !p.getText().isEmpty();
    boolean hasMessages = p.getMessagesCount() > 0;
    if (hasText == hasMessages) {
      throw new Invalid("prompt", hasText
          ? "both messages and text are set; set exactly one"
          : "is empty; set messages (chat) or text (raw prompt)");
    }
    if (hasText && p.getText().isBlank()) {
      throw new Invalid("prompt.text", "is blank");
    }
    for (int i = 0; i < p.getMessagesCount(); i++) {
      ChatMessage m = p.getMessages(i);
      if (!ROLES.contains(m.getRole())) {
        throw new Invalid("prompt.messages[" + i + "].role", "'" + m.getRole() + "' is not system, user or assistant");
      }
    }
  }

  /** Validates feedback; returns the feedback id to use (the client's, or a new one). */
  String feedback(SubmitFeedbackRequest f) {
    String requestId = f.getRequestId();
    if (requestId.isEmpty()) {
      throw new Invalid("request_id", "is required");
    }
    if (requestId.length() > MAX_ID_CHARS) {
      throw new Invalid("request_id", "is longer than " + MAX_ID_CHARS + " characters");
    }
    optionalId("user_id", f.getUserId());
    switch (f.getKind()) {
      case RATING -> {
        responseOf("response_id", f.getResponseId(), requestId);
        if (!f.hasRating()) {
          throw new Invalid("rating", "is required for RATING (0 = thumbs down ... 1 = thumbs up)");
        }
        if (!(f.getRating() >= 0 && f.getRating() <= 1)) {
          throw new Invalid("rating", f.getRating() + " is outside [0, 1]");
        }
        notFor(f.getKind(), "chosen_response_id", f.getChosenResponseId());
        notFor(f.getKind(), "rejected_response_id", f.getRejectedResponseId());
        notFor(f.getKind(), "edited_text", f.getEditedText());
      }
      case PAIRWISE -> {
        responseOf("chosen_response_id", f.getChosenResponseId(), requestId);
        responseOf("rejected_response_id", f.getRejectedResponseId(), requestId);
        if (f.getChosenResponseId().equals(f.getRejectedResponseId())) {
          throw new Invalid("rejected_response_id", "equals chosen_response_id; a pairwise choice needs two "
              + "different responses");
        }
        notFor(f.getKind(), "response_id", f.getResponseId());
        if (f.hasRating()) {
          throw new Invalid("rating", "is only for RATING feedback");
        }
        notFor(f.getKind(), "edited_text", f.getEditedText());
      }
      case EDIT -> {
        responseOf("response_id", f.getResponseId(), requestId);
        if (f.getEditedText().isBlank()) {
          throw new Invalid("edited_text", "is required for EDIT (the corrected response)");
        }
        if (f.hasRating()) {
          throw new Invalid("rating", "is only for RATING feedback");
        }
        notFor(f.getKind(), "chosen_response_id", f.getChosenResponseId());
        notFor(f.getKind(), "rejected_response_id", f.getRejectedResponseId());
      }
      default -> throw new Invalid("kind", (f.getKind() == FeedbackKind.FEEDBACK_KIND_UNSPECIFIED
          ? "is not set" : "'" + f.getKind() + "' is unknown") + "; use RATING, PAIRWISE or EDIT");
    }
    if (f.getFeedbackId().isEmpty()) {
      return Ids.newId();
    }
    if (!CLIENT_ID.matcher(f.getFeedbackId()).matches()) {
      throw new Invalid("feedback_id", "must be 1-128 characters of letters, digits and ._:/-");
    }
    return f.getFeedbackId();
  }

  private static void responseOf(String field, String responseId, String requestId) {
    if (responseId.isEmpty()) {
      throw new Invalid(field, "is required");
    }
    if (!Ids.isResponseOf(responseId, requestId)) {
      throw new Invalid(field, "'" + responseId + "' is not a response of request '" + requestId + "'");
    }
  }

  private static void notFor(FeedbackKind kind, String field, String value) {
    if (!value.isEmpty()) {
      throw new Invalid(field, "is not used by " + kind + " feedback; leave it empty");
    }
  }

  private static void optionalId(String field, String value) {
    if (value.length() > MAX_ID_CHARS) {
      throw new Invalid(field, "is longer than " + MAX_ID_CHARS + " characters");
    }
  }
}
