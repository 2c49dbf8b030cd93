package io.vllmtrain.streams;

import io.vllmtrain.events.FeedbackEvent;

/** A decoded, valid feedback event with its record timestamp and origin (kept while it waits for its responses). */
record ReceivedFeedback(FeedbackEvent event, long timestamp, SourceRecord source) {
  String id() {
    return event.getFeedbackId();
  }
}
