package io.vllmtrain.streams;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;

/** Deterministic ids: SHA-256 over the parts, each followed by a NUL byte, as 32 hex digits (128 bits). */
final class Hashing {
  private static final ThreadLocal<MessageDigest> SHA256 = ThreadLocal.withInitial(() -> {
    try {
      return MessageDigest.getInstance("SHA-256");
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException("SHA-256 is missing from this JVM", e);
    }
  });

  private Hashing() {}

  static String id(Iterable<String> parts) {
    MessageDigest md = SHA256.get();
    md.reset();
    for (String part : parts) {
      md.update(part.getBytes(StandardCharsets.UTF_8));
      md.update((byte) 0);
    }
    return HexFormat.of().formatHex(md.digest(), 0, 16);
  }

  static String id(String... parts) {
    return id(java.util.Arrays.asList(parts));
  }
}
