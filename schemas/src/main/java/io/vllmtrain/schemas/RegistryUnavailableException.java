package io.vllmtrain.schemas;

import org.apache.kafka.common.errors.SerializationException;

/**
 * The schema registry gave no definite answer about a schema id: it could not be reached, did not answer in time,
 * or answered with an error that says nothing about the id (HTTP 5xx, 401/403, 429, ...). The record may be valid,
 * so a consumer must retry it later, not dead-letter it. Only a definite "unknown schema id" (HTTP 404) or bytes
 * that do not decode with their schema are the record's fault (a plain {@link SerializationException}).
 */
public final class RegistryUnavailableException extends SerializationException {
  public RegistryUnavailableException(String message, Throwable cause) {
    super(message, cause);
  }
}
