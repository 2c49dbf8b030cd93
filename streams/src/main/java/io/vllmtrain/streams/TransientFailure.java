package io.vllmtrain.streams;

import java.net.SocketException;
import java.net.SocketTimeoutException;
import java.net.UnknownHostException;
import java.net.http.HttpTimeoutException;
import java.util.concurrent.TimeoutException;

/**
 * A failure that says nothing about the record: the schema registry (or another service) could not be reached.
 * Such a record must not go to the DLQ; the stream thread fails, its transaction aborts, and {@link StreamsApp}
 * replaces the thread, which reads the record again.
 */
final class TransientFailure extends RuntimeException {
  TransientFailure(String message, Throwable cause) {
    super(message, cause);
  }

  /** Whether a network failure (connection refused or reset, timeout, unknown host) is among the causes. */
  static boolean isCause(Throwable e) {
    for (Throwable t = e; t != null; t = t.getCause() == t ? null : t.getCause()) {
      if (t instanceof TransientFailure || t instanceof SocketException || t instanceof SocketTimeoutException
          || t instanceof UnknownHostException || t instanceof HttpTimeoutException || t instanceof TimeoutException) {
        return true;
      }
    }
    return false;
  }
}
