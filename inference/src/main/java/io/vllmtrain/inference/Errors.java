package io.vllmtrain.inference;

import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutionException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/** The one mapping from the service's exceptions to gRPC status codes. */
final class Errors {
  private static final Logger log = LoggerFactory.getLogger(Errors.class);

  private Errors() {}

  static StatusRuntimeException toStatus(Throwable error) {
    Throwable e = error;
    while ((e instanceof CompletionException || e instanceof ExecutionException) && e.getCause() != null) {
      e = e.getCause();
    }
    if (e instanceof StatusRuntimeException s) {
      return s;
    }
    if (e instanceof RequestValidator.Invalid) {
      return Status.INVALID_ARGUMENT.withDescription(e.getMessage()).asRuntimeException();
    }
    if (e instanceof RequestValidator.Denied) {
      return Status.PERMISSION_DENIED.withDescription(e.getMessage()).asRuntimeException();
    }
    if (e instanceof AdapterRollout.UnknownVersionException) {
      return Status.NOT_FOUND.withDescription(e.getMessage()).asRuntimeException();
    }
    if (e instanceof IllegalStateException) {
      return Status.FAILED_PRECONDITION.withDescription(e.getMessage()).asRuntimeException();
    }
    log.error("unexpected error", e);
    return Status.INTERNAL.withDescription("internal error: " + e).asRuntimeException();
  }
}
