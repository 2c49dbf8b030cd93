package io.vllmtrain.inference;

import io.grpc.Status;
import io.grpc.stub.ServerCallStreamObserver;
import io.grpc.stub.StreamObserver;
import io.vllmtrain.proto.v1.FeedbackServiceGrpc;
import io.vllmtrain.proto.v1.SubmitFeedbackRequest;
import io.vllmtrain.proto.v1.SubmitFeedbackResponse;
import io.vllmtrain.schemas.Topics;
import java.time.Duration;
import java.time.Instant;
import java.util.concurrent.CompletionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * {@code FeedbackService}: validates feedback (kind, ids present, rating in [0, 1], pairwise ids distinct and of the
 * request, sizes) and records a FeedbackEvent keyed by request id. Unlike a generation, feedback is nothing but its
 * event, so the caller is answered OK only once Kafka has acknowledged it ({@code acks=all}); when the buffer cannot
 * take it, or Kafka does not acknowledge it within {@code feedback.ack.timeout.ms}, the caller gets UNAVAILABLE and
 * retries with the same feedback_id (a retry of an event that did arrive is a duplicate the Streams app drops).
 */
final class FeedbackServiceImpl extends FeedbackServiceGrpc.FeedbackServiceImplBase {
  private final RequestValidator validator;
  private final EventRecorder events;
  private final Duration ackTimeout;

  FeedbackServiceImpl(RequestValidator validator, EventRecorder events, Duration ackTimeout) {
    this.validator = validator;
    this.events = events;
    this.ackTimeout = ackTimeout;
  }

  @Override
  public void submitFeedback(SubmitFeedbackRequest request, StreamObserver<SubmitFeedbackResponse> out) {
    String feedbackId;
    try {
      feedbackId = validator.feedback(request);
    } catch (RuntimeException e) {
      out.onError(Errors.toStatus(e));
      return;
    }
    // The answer comes from Kafka's callback thread; a caller that went away meanwhile is no error.
    ((ServerCallStreamObserver<SubmitFeedbackResponse>) out).setOnCancelHandler(() -> {});
    events.recordDurably(Topics.FEEDBACK.name(), request.getRequestId(),
            Events.feedback(request, feedbackId, Instant.now()))
        .orTimeout(ackTimeout.toMillis(), TimeUnit.MILLISECONDS)
        .whenComplete((ok, error) -> {
          if (error == null) {
            out.onNext(SubmitFeedbackResponse.newBuilder().setFeedbackId(feedbackId).build());
            out.onCompleted();
          } else {
            out.onError(notRecorded(error, feedbackId).asRuntimeException());
          }
        });
  }

  private Status notRecorded(Throwable error, String feedbackId) {
    Throwable e = error instanceof CompletionException && error.getCause() != null ? error.getCause() : error;
    if (e instanceof EventRecorder.BufferFull) {
      return Status.UNAVAILABLE.withDescription("event buffer full (Kafka is behind or unreachable): " + e.getMessage()
          + "; retry with feedback_id " + feedbackId);
    }
    if (e instanceof TimeoutException) {
      return Status.UNAVAILABLE.withDescription("feedback not acknowledged by Kafka within " + ackTimeout.toMillis()
          + " ms (feedback.ack.timeout.ms); it may still arrive: retry with feedback_id " + feedbackId);
    }
    return Status.INTERNAL.withDescription("feedback not recorded: Kafka refused its event: " + e);
  }
}
