package io.vllmtrain.inference;

import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.security.SecureRandom;
import java.util.Arrays;
import java.util.Base64;
import java.util.UUID;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/**
 * The ids the service assigns. Every random bit comes from a cryptographic generator (a DRBG per thread, so the
 * request path takes no shared lock), so no id can be derived from others.
 *
 * <p>A request id is a random UUID plus a tag: {@code <uuid>.<tag>}, the tag being the first 128 bits of
 * HMAC-SHA256(key, uuid, user_id), base64url. So feedback is checked against its request without the service
 * remembering anything (any instance with the same key, after any restart): the request id must carry a tag for the
 * feedback's user_id. A response id is its request id plus {@code -r<index>}.
 */
final class Ids {
  private static final String RESPONSE_SEPARATOR = "-r";
  private static final String TAG_SEPARATOR = ".";
  private static final int UUID_CHARS = 36;
  private static final int TAG_BYTES = 16;
  private static final int TAG_CHARS = 22; // 16 bytes, base64url without padding
  /** Smallest signing key accepted: HMAC-SHA256 gains nothing from more than 32 bytes. */
  static final int MIN_KEY_BYTES = 32;
  private static final byte[] DOMAIN = "vllm-train request id v1\n".getBytes(StandardCharsets.UTF_8);
  private static final Base64.Encoder TAG_ENCODING = Base64.getUrlEncoder().withoutPadding();
  private static final ThreadLocal<SecureRandom> RANDOM = ThreadLocal.withInitial(Ids::drbg);

  private final ThreadLocal<Mac> mac;

  /** Ids signed with {@code key} (at least {@link #MIN_KEY_BYTES} bytes). */
  Ids(byte[] key) {
    if (key.length < MIN_KEY_BYTES) {
      throw new IllegalArgumentException("the signing key has " + key.length + " bytes; at least " + MIN_KEY_BYTES
          + " are needed");
    }
    SecretKeySpec spec = new SecretKeySpec(key.clone(), "HmacSHA256");
    this.mac = ThreadLocal.withInitial(() -> {
      try {
        Mac m = Mac.getInstance("HmacSHA256");
        m.init(spec);
        return m;
      } catch (GeneralSecurityException e) {
        throw new IllegalStateException("HmacSHA256 is not available in this JVM", e);
      }
    });
    // The JVM's first DRBG and HMAC cost ~0.2 s (providers load): pay it at start, not on the first request.
    issuedTo(newRequestId(""), "");
  }

  /** A random key of {@link #MIN_KEY_BYTES} bytes, for a service started without {@code ids.signing.key}. */
  static byte[] randomKey() {
    byte[] key = new byte[MIN_KEY_BYTES];
    RANDOM.get().nextBytes(key);
    return key;
  }

  /** A new request id for a request of {@code userId} ("" when the request carried none). */
  String newRequestId(String userId) {
    String random = newId();
    return random + TAG_SEPARATOR + tag(random, userId);
  }

  /** Whether {@code requestId} was issued by a service with this key to a request of {@code userId}. */
  boolean issuedTo(String requestId, String userId) {
    if (requestId.length() != UUID_CHARS + TAG_SEPARATOR.length() + TAG_CHARS
        || !requestId.startsWith(TAG_SEPARATOR, UUID_CHARS)) {
      return false;
    }
    String random = requestId.substring(0, UUID_CHARS);
    byte[] expected = tag(random, userId).getBytes(StandardCharsets.US_ASCII);
    byte[] given = requestId.substring(UUID_CHARS + TAG_SEPARATOR.length()).getBytes(StandardCharsets.US_ASCII);
    return MessageDigest.isEqual(expected, given); // constant time: the comparison tells nothing of the tag
  }

  private String tag(String random, String userId) {
    Mac m = mac.get();
    m.update(DOMAIN);
    m.update(random.getBytes(StandardCharsets.US_ASCII));
    m.update((byte) '\n');
    m.update(userId.getBytes(StandardCharsets.UTF_8));
    return TAG_ENCODING.encodeToString(Arrays.copyOf(m.doFinal(), TAG_BYTES));
  }

  /** A random (version 4) UUID from the thread's DRBG: feedback ids and the random part of request ids. */
  static String newId() {
    byte[] b = new byte[16];
    RANDOM.get().nextBytes(b);
    b[6] = (byte) ((b[6] & 0x0f) | 0x40); // version 4
    b[8] = (byte) ((b[8] & 0x3f) | 0x80); // IETF variant
    long msb = 0;
    long lsb = 0;
    for (int i = 0; i < 8; i++) {
      msb = (msb << 8) | (b[i] & 0xff);
      lsb = (lsb << 8) | (b[8 + i] & 0xff);
    }
    return new UUID(msb, lsb).toString();
  }

  private static SecureRandom drbg() {
    try {
      return SecureRandom.getInstance("DRBG"); // seeded from the system's entropy source
    } catch (NoSuchAlgorithmException e) {
      return new SecureRandom();
    }
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
