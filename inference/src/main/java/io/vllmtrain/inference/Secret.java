package io.vllmtrain.inference;

import java.util.Arrays;

/**
 * A key read from the config (base64 there). Its {@code toString} never shows it, so a logged config does not leak
 * it; {@link #bytes()} hands out a copy.
 */
public final class Secret {
  private final byte[] bytes;

  Secret(byte[] bytes) {
    this.bytes = bytes.clone();
  }

  byte[] bytes() {
    return bytes.clone();
  }

  @Override
  public boolean equals(Object o) {
    return o instanceof Secret s && java.security.MessageDigest.isEqual(bytes, s.bytes);
  }

  @Override
  public int hashCode() {
    return Arrays.hashCode(bytes);
  }

  @Override
  public String toString() {
    return "Secret[" + bytes.length + " bytes, not shown]";
  }
}
