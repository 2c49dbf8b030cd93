package io.vllmtrain.inference;

import java.util.UUID;
import java.util.concurrent.ThreadLocalRandom;

/**
 * The ids the service assigns. A response id is its request id plus {@code -r<index>}, so that feedback can be
 * checked against its request without remembering requests (any instance of the service, after any restart).
 */
final class Ids {
  private static final String RESPONSE_SEPARATOR = "-r";

  private Ids() {}

  /** A random (version 4) UUID; ThreadLocalRandom keeps the request path free of SecureRandom's lock. */
  static String newId() {
    ThreadLocalRandom random = ThreadLocalRandom.current();
    long msb = (random.nextLong() & ~0xF000L) | 0x4000L;
    long lsb = (random.nextLong() & ~(0xC000000000000000L)) | 0x8000000000000000L;
    return new UUID(msb, lsb).toString();
  }

  static String responseId(String requestId, int index) {
    return requestId + RESPONSE_SEPARATOR + index;
  }

  /** Whether {@code responseId} names one of the responses of {@code requestId}. */
  static boolean isResponseOf(String responseId, String requestId) {
    String prefix = requestId + RESPONSE_SEPARATOR;
    if (!responseId.startsWith(prefix) || responseId.length() == prefix.length()) {
      return false;
    }
    String index = responseId.substring(prefix.length());
    return index.length() <= 4 && index.chars().allMatch(Character::isDigit);
  }
}
