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
 * {@code "sampling.top_p: 1.5 is outside (0, 1]"}; a size above one of the {@link RequestLimits} also names the
 * config key of that limit. Sizes are read from the wire bytes, so the checks cost the same for any input.
 */
final class RequestValidator {
  /** A request field with a bad value; the message starts with the field's path. */
  static final class Invalid extends RuntimeException {
    Invalid(String field, String problem) {
      super(field + ": " + problem, null, false, false);
    }
  }

  /** Well-formed, but the caller may not do it (feedback on a request of another user_id); PERMISSION_DENIED. */
  static final class Denied extends RuntimeException {
    Denied(String field, String problem) {
      super(field + ": " + problem, null, false, false);
    }
  }

  private static final Set<String> ROLES = Set.of("system", "user", "assistant");
  private static final Pattern CLIENT_ID = Pattern.compile("[A-Za-z0-9._:/-]{1,128}");
  /** How much of a bad value an error message quotes: a description must not carry a caller's megabytes back. */
  private static final int QUOTE_CHARS = 80;

  private final int maxN;
  private final int defaultMaxTokens;
  private final int maxTokensLimit;
  private final RequestLimits limits;
  private final Ids ids;

  RequestValidator(int maxN, int defaultMaxTokens, int maxTokensLimit, RequestLimits limits, Ids ids) {
    this.maxN = maxN;
    this.defaultMaxTokens = defaultMaxTokens;
    this.maxTokensLimit = maxTokensLimit;
    this.limits = limits;
    this.ids = ids;
  }

  /** Validates a generate request and returns its sampling parameters with defaults applied (n, max_tokens). */
  SamplingParams generate(GenerateRequest request) {
    prompt(request.getPrompt());
    optionalId("user_id", request.getUserId());
    optionalId("session_id", request.getSessionId());
    optionalId("adapter_version", request.getAdapterVersion());
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
    if (s.getStopCount() > limits.stopStrings()) {
      throw new Invalid("sampling.stop", above(s.getStopCount(), "strings", limits.stopStrings(),
          "limits.stop.strings"));
    }
    for (int i = 0; i < s.getStopCount(); i++) {
      int size = s.getStopBytes(i).size();
      if (size == 0) {
        throw new Invalid("sampling.stop[" + i + "]", "is empty");
      }
      if (size > limits.stopBytes()) {
        throw new Invalid("sampling.stop[" + i + "]", above(size, "bytes", limits.stopBytes(), "limits.stop.bytes"));
      }
    }
    return s.toBuilder().setN(n).setMaxTokens(maxTokens).build();
  }

  private void prompt(Prompt p) {
    // Sizes from the UTF-8 bytes as they came off the wire: no copy, no decoding.
    int textBytes = p.getTextBytes().size();
    boolean hasMessages = p.getMessagesCount() > 0;
    if ((textBytes > 0) == hasMessages) {
      throw new Invalid("prompt", textBytes > 0
          ? "both messages and text are set; set exactly one"
          : "is empty; set messages (chat) or text (raw prompt)");
    }
    if (textBytes > limits.promptBytes()) {
      throw new Invalid("prompt.text", above(textBytes, "bytes", limits.promptBytes(), "limits.prompt.bytes"));
    }
    if (textBytes > 0 && p.getText().isBlank()) {
      throw new Invalid("prompt.text", "is blank");
    }
    if (p.getMessagesCount() > limits.promptMessages()) {
      throw new Invalid("prompt.messages", above(p.getMessagesCount(), "messages", limits.promptMessages(),
          "limits.prompt.messages"));
    }
    long total = 0;
    for (int i = 0; i < p.getMessagesCount(); i++) {
      ChatMessage m = p.getMessages(i);
      if (!ROLES.contains(m.getRole())) {
        throw new Invalid("prompt.messages[" + i + "].role", quote(m.getRole()) + " is not system, user or assistant");
      }
      int size = m.getContentBytes().size();
      if (size > limits.promptBytes()) {
        throw new Invalid("prompt.messages[" + i + "].content", above(size, "bytes", limits.promptBytes(),
            "limits.prompt.bytes"));
      }
      total += size;
    }
    if (total > limits.promptBytes()) {
      throw new Invalid("prompt.messages", above(total, "bytes of content in all", limits.promptBytes(),
          "limits.prompt.bytes"));
    }
  }

  /**
   * Validates feedback, then checks that its request id was issued to its user_id ({@link Denied} if not); returns
   * the feedback id to use (the client's, or a new one).
   */
  String feedback(SubmitFeedbackRequest f) {
    String requestId = f.getRequestId();
    if (requestId.isEmpty()) {
      throw new Invalid("request_id", "is required");
    }
    optionalId("request_id", requestId);
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
        int size = f.getEditedTextBytes().size();
        if (size > limits.editedTextBytes()) {
          throw new Invalid("edited_text", above(size, "bytes", limits.editedTextBytes(), "limits.edited.text.bytes"));
        }
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
    if (!f.getFeedbackId().isEmpty() && !CLIENT_ID.matcher(f.getFeedbackId()).matches()) {
      throw new Invalid("feedback_id", "must be 1-128 characters of letters, digits and ._:/-");
    }
    // Last: a request id is checked against the user only once the request is well-formed.
    if (!ids.issuedTo(requestId, f.getUserId())) {
      throw new Denied("request_id", "was not issued to user_id " + quote(f.getUserId()) + " (feedback must carry "
          + "the user_id of its request)");
    }
    return f.getFeedbackId().isEmpty() ? Ids.newId() : f.getFeedbackId();
  }

  private void responseOf(String field, String responseId, String requestId) {
    if (responseId.isEmpty()) {
      throw new Invalid(field, "is required");
    }
    optionalId(field, responseId);
    if (!Ids.isResponseOf(responseId, requestId)) {
      throw new Invalid(field, quote(responseId) + " is not a response of request " + quote(requestId));
    }
  }

  private static void notFor(FeedbackKind kind, String field, String value) {
    if (!value.isEmpty()) {
      throw new Invalid(field, "is not used by " + kind + " feedback; leave it empty");
    }
  }

  private void optionalId(String field, String value) {
    if (value.length() > limits.idChars()) {
      throw new Invalid(field, above(value.length(), "characters", limits.idChars(), "limits.id.chars"));
    }
  }

  /** "300 bytes, above the limit of 256 (limits.x)": the size, the limit and the key that sets it. */
  private static String above(long size, String unit, int limit, String key) {
    return size + " " + unit + ", above the limit of " + limit + " (" + key + ")";
  }

  /** A caller's value for an error message, cut to its first characters when long. */
  static String quote(String value) {
    return value.length() <= QUOTE_CHARS ? "'" + value + "'"
        : "'" + value.substring(0, QUOTE_CHARS) + "...' (" + value.length() + " characters)";
  }
}
