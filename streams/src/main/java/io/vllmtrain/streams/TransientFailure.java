package io.vllmtrain.streams;

import io.vllmtrain.schemas.RegistryUnavailableException;
import java.net.SocketException;
import java.net.SocketTimeoutException;
import java.net.UnknownHostException;
import java.net.http.HttpTimeoutException;
import java.util.concurrent.TimeoutException;

/**
 * A failure that says nothing about the record: the schema registry (or another service) could not be reached or
 * gave no definite answer (HTTP 5xx, 401/403, a timeout: {@link RegistryUnavailableException}). Such a record must
 * not go to the DLQ; {@link RequestProcessor} retries it in place for a moment, then the stream thread fails, its
 * transaction aborts, and {@link StreamsApp} replaces the thread after a growing pause; the new one reads it again.
 */
final class TransientFailure extends RuntimeException {
  TransientFailure(String message, Throwable cause) {
    super(message, cause);
  }

  /** Whether a network failure or a registry without a definite answer is among the causes. */
  static boolean isCause(Throwable e) {
    for (Throwable t = e; t != null; t = t.getCause() == t ? null : t.getCause()) {
      if (t instanceof TransientFailure || t instanceof RegistryUnavailableException || t instanceof SocketException
          || t instanceof SocketTimeoutException || t instanceof UnknownHostException
          || t instanceof HttpTimeoutException || t instanceof TimeoutException) {
        return true;
      }
    }
    return false;
  }
}
