package io.vllmtrain.inference;

import io.vllmtrain.events.AdapterVersion;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.MessageDigest;
import java.util.HexFormat;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/**
 * The signature of an adapter version record: header {@value #HEADER}, the lower-case hex HMAC-SHA256, under
 * {@code rollout.signing.key}, of the UTF-8 bytes of
 * {@code "vllm-train adapter version v1\n<version_id>\n<run_id>\n<version>\n<base_model>\n<uri>\n<sha256>"}: every
 * field that decides what is loaded and under which name. Whoever can write to {@code llm.adapter-versions} without
 * the key cannot get a version loaded. Pure: values in, verdict out.
 */
final class VersionSignature {
  static final String HEADER = "vt-signature";
  private static final String DOMAIN = "vllm-train adapter version v1";

  private VersionSignature() {}

  /** The header value for {@code v} under {@code key}. */
  static String sign(byte[] key, AdapterVersion v) {
    try {
      Mac mac = Mac.getInstance("HmacSHA256");
      mac.init(new SecretKeySpec(key, "HmacSHA256"));
      String canonical = String.join("\n", DOMAIN, v.getVersionId(), v.getRunId(), Long.toString(v.getVersion()),
          v.getBaseModel(), v.getUri(), v.getSha256());
      return HexFormat.of().formatHex(mac.doFinal(canonical.getBytes(StandardCharsets.UTF_8)));
    } catch (GeneralSecurityException e) {
      throw new IllegalStateException("HmacSHA256 is not available in this JVM", e);
    }
  }

  /** Null when {@code header} (the raw header value, null when absent) signs {@code v} under {@code key}; else why not. */
  static String refusal(byte[] key, AdapterVersion v, byte[] header) {
    if (header == null) {
      return "not signed: rollout.signing.key is set and the record has no " + HEADER + " header";
    }
    byte[] expected = sign(key, v).getBytes(StandardCharsets.US_ASCII);
    return MessageDigest.isEqual(expected, header) ? null
        : HEADER + " does not verify with rollout.signing.key";
  }
}
