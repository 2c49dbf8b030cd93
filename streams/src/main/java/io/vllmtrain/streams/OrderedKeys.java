package io.vllmtrain.streams;

/** Store keys whose byte order is numeric order: zero-padded decimal (String.format is far too slow per record). */
final class OrderedKeys {
  private static final String ZEROS = "0000000000000000000";

  private OrderedKeys() {}

  /** {@code value} (>= 0; negative counts as 0) as {@code width} digits, followed by {@code suffix}. */
  static String of(long value, int width, String suffix) {
    String digits = Long.toString(Math.max(0, value));
    StringBuilder k = new StringBuilder(width + suffix.length());
    k.append(ZEROS, 0, Math.max(0, width - digits.length())).append(digits).append(suffix);
    return k.toString();
  }
}
