package io.vllmtrain.streams;

import io.vllmtrain.events.FeedbackEvent;
import io.vllmtrain.events.PromptEvent;
import io.vllmtrain.events.ResponseEvent;

/**
 * Checks a decoded event before it touches any state: the key is its request id, and every id and field that its
 * kind needs is present and in range. A failed check names the field, and the record goes to the DLQ.
 */
final class EventValidator {
  /** A failed check. */
  record Problem(DlqReason reason, String detail) {}

  private EventValidator() {}

  static Problem prompt(String key, PromptEvent p) {
    Problem k = key(key, p.getRequestId());
    if (k != null) {
      return k;
    }
    if (blank(p.getBaseModel())) {
      return invalid("prompt event " + p.getRequestId() + " has an empty base_model");
    }
    if (p.getPrompt() == null || (p.getPrompt().getText() == null && p.getPrompt().getMessages().isEmpty())) {
      return invalid("prompt event " + p.getRequestId() + " has neither prompt text nor messages");
    }
    return null;
  }

  static Problem response(String key, ResponseEvent r) {
    Problem k = key(key, r.getRequestId());
    if (k != null) {
      return k;
    }
    if (blank(r.getResponseId())) {
      return invalid("response to request " + r.getRequestId() + " has an empty response_id");
    }
    if (r.getText() == null) {
      return invalid("response " + r.getResponseId() + " has no text");
    }
    return null;
  }

  static Problem feedback(String key, FeedbackEvent f) {
    Problem k = key(key, f.getRequestId());
    if (k != null) {
      return k;
    }
    if (blank(f.getFeedbackId())) {
      return invalid("feedback on request " + f.getRequestId() + " has an empty feedback_id");
    }
    String id = "feedback " + f.getFeedbackId();
    return switch (f.getKind()) {
      case RATING -> {
        if (blank(f.getResponseId())) {
          yield invalid(id + " (RATING) has no response_id");
        }
        Double r = f.getRating();
        if (r == null || r.isNaN() || r < 0 || r > 1) {
          yield invalid(id + " (RATING) needs a rating in [0, 1], got " + r);
        }
        yield null;
      }
      case PAIRWISE -> {
        if (blank(f.getChosenResponseId()) || blank(f.getRejectedResponseId())) {
          yield invalid(id + " (PAIRWISE) needs chosen_response_id and rejected_response_id");
        }
        if (f.getChosenResponseId().equals(f.getRejectedResponseId())) {
          yield invalid(id + " (PAIRWISE) chooses response " + f.getChosenResponseId() + " over itself");
        }
        yield null;
      }
      case EDIT -> {
        if (blank(f.getResponseId())) {
          yield invalid(id + " (EDIT) has no response_id");
        }
        if (blank(f.getEditedText())) {
          yield invalid(id + " (EDIT) has no edited_text");
        }
        yield null;
      }
    };
  }

  private static Problem key(String key, String requestId) {
    if (blank(requestId)) {
      return invalid("request_id is empty");
    }
    if (key == null) {
      return new Problem(DlqReason.MISSING_KEY, "record has no key (expected request id " + requestId + ")");
    }
    if (!key.equals(requestId)) {
      return new Problem(DlqReason.KEY_MISMATCH, "key '" + key + "' is not the request id '" + requestId + "'");
    }
    return null;
  }

  private static Problem invalid(String detail) {
    return new Problem(DlqReason.INVALID, detail);
  }

  private static boolean blank(String s) {
    return s == null || s.isBlank();
  }
}
