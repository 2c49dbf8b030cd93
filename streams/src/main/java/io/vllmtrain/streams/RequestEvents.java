package io.vllmtrain.streams;

import io.vllmtrain.events.PromptEvent;
import io.vllmtrain.events.ResponseEvent;
import java.util.ArrayList;
import java.util.List;

/**
 * What has arrived about one request: its prompt (null until it comes) and its responses in arrival order.
 *
 * @param firstSeenMs record time of the first event; the request is forgotten {@code retention} after it
 */
record RequestEvents(long firstSeenMs, PromptEvent prompt, List<ResponseEvent> responses) {
  RequestEvents {
    responses = List.copyOf(responses);
  }

  static RequestEvents empty(long firstSeenMs) {
    return new RequestEvents(firstSeenMs, null, List.of());
  }

  ResponseEvent response(String responseId) {
    for (ResponseEvent r : responses) {
      if (r.getResponseId().equals(responseId)) {
        return r;
      }
    }
    return null;
  }

  /** A repeated prompt (a producer retry) keeps the first. */
  RequestEvents withPrompt(PromptEvent p) {
    return prompt != null ? this : new RequestEvents(firstSeenMs, p, responses);
  }

  /** A repeated response id (a producer retry) keeps the first. */
  RequestEvents withResponse(ResponseEvent r) {
    if (response(r.getResponseId()) != null) {
      return this;
    }
    List<ResponseEvent> all = new ArrayList<>(responses);
    all.add(r);
    return new RequestEvents(firstSeenMs, prompt, all);
  }
}
