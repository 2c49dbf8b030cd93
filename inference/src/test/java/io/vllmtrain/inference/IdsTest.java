package io.vllmtrain.inference;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.UUID;
import org.junit.jupiter.api.Test;

/** The ids the service assigns: unguessable, and request ids bound to their user. */
class IdsTest {
  /**
   * ThreadLocalRandom's output is an invertible mix of a seed that grows by a per-thread constant, so one UUID made from it
   * gives away the next ones. This runs that attack: from one request id, derive the next one made on the same
   * thread. It must fail.
   */
  @Test
  void theNextRequestIdCannotBeDerivedFromThePreviousOne() {
    Ids ids = new Ids(Ids.randomKey());
    for (int trial = 0; trial < 20; trial++) {
      UUID seen = UUID.fromString(ids.newRequestId("u").substring(0, 36));
      UUID next = UUID.fromString(ids.newRequestId("u").substring(0, 36));
      assertFalse(predicted(seen, next), "request id " + next + " was derived from " + seen);
      UUID feedbackId = UUID.fromString(Ids.newId());
      assertFalse(predicted(next, feedbackId), "feedback id " + feedbackId + " was derived from " + next);
    }
  }

  @Test
  void aRequestIdVerifiesForItsUserOnlyAndOnlyUnderItsKey() {
    byte[] key = Ids.randomKey();
    Ids ids = new Ids(key);
    String id = ids.newRequestId("user-7");
    assertTrue(id.matches("[0-9a-f-]{36}\\.[A-Za-z0-9_-]{22}"), id);
    assertTrue(ids.issuedTo(id, "user-7"));
    assertTrue(new Ids(key).issuedTo(id, "user-7"), "another instance with the same key");
    assertFalse(ids.issuedTo(id, "user-8"));
    assertFalse(ids.issuedTo(id, ""));
    assertFalse(new Ids(Ids.randomKey()).issuedTo(id, "user-7"), "another key");
    assertFalse(ids.issuedTo(id.substring(0, 36), "user-7"), "no tag");
    assertFalse(ids.issuedTo(id.substring(0, 36) + "." + "A".repeat(22), "user-7"), "a made-up tag");
    assertTrue(ids.issuedTo(ids.newRequestId(""), ""), "a request without user_id: feedback without one");
  }

  @Test
  void aShortKeyIsRefused() {
    assertThrows(IllegalArgumentException.class, () -> new Ids(new byte[16]));
  }

  /**
   * Whether {@code next} follows {@code seen} as ThreadLocalRandom makes them: each output is mix64 of a seed that
   * grows by a per-thread constant; the two halves of {@code seen} give two seeds and so the constant (the 6 bits a
   * UUID overwrites are tried).
   */
  static boolean predicted(UUID seen, UUID next) {
    for (long versionBits = 0; versionBits < 16; versionBits++) {
      for (long variantBits = 0; variantBits < 4; variantBits++) {
        long msb = (seen.getMostSignificantBits() & ~0xF000L) | (versionBits << 12);
        long lsb = (seen.getLeastSignificantBits() & ~0xC000000000000000L) | (variantBits << 62);
        long seed = unmix64(lsb);
        long step = seed - unmix64(msb);
        long nextMsb = mix64(seed + step);
        if ((nextMsb & ~0xF000L) == (next.getMostSignificantBits() & ~0xF000L)) {
          return true;
        }
      }
    }
    return false;
  }

  static long mix64(long z) {
    z = (z ^ (z >>> 33)) * 0xff51afd7ed558ccdL;
    z = (z ^ (z >>> 33)) * 0xc4ceb9fe1a85ec53L;
    return z ^ (z >>> 33);
  }

  static long unmix64(long z) {
    z = z ^ (z >>> 33);
    z = (z * inverse(0xc4ceb9fe1a85ec53L));
    z = z ^ (z >>> 33);
    z = (z * inverse(0xff51afd7ed558ccdL));
    return z ^ (z >>> 33);
  }

  /** The multiplicative inverse of odd {@code c} modulo 2^64 (Newton's iteration). */
  static long inverse(long c) {
    long x = c;
    for (int i = 0; i < 6; i++) {
      x *= 2 - c * x;
    }
    return x;
  }
}
