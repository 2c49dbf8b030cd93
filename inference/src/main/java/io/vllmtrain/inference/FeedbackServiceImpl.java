package io.vllmtrain.inference;

import io.grpc.Status;
import io.grpc.stub.StreamObserver;
import io.vllmtrain.proto.v1.FeedbackServiceGrpc;
import io.vllmtrain.proto.v1.SubmitFeedbackRequest;
import io.vllmtrain.proto.v1.SubmitFeedbackResponse;
import io.vllmtrain.schemas.Topics;
import java.time.Instant;

/**
 * {@code FeedbackService}: validates feedback (kind, ids present, rating in [0, 1], pairwise ids distinct and of the
 * request) and records a FeedbackEvent keyed by request id. Unlike generation, feedback is nothing but its event:
 * when the buffer cannot take it, the caller gets UNAVAILABLE and retries with the same feedback_id.
 */
final class FeedbackServiceImpl extends FeedbackServiceGrpc.FeedbackServiceImplBase {
  private final RequestValidator validator;
  private final EventRecorder events;

  FeedbackServiceImpl(RequestValidator validator, EventRecorder events) {
    this.validator = validator;
    this.events = events;
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
    boolean buffered = events.record(Topics.FEEDBACK.name(), request.getRequestId(),
        Events.feedback(request, feedbackId, Instant.now()));
    if (!buffered) {
      out.onError(Status.UNAVAILABLE.withDescription("event buffer full (Kafka is behind or unreachable); retry "
          + "with feedback_id " + feedbackId).asRuntimeException());
      return;
    }
    out.onNext(SubmitFeedbackResponse.newBuilder().setFeedbackId(feedbackId).build());
    out.onCompleted();
  }
}
