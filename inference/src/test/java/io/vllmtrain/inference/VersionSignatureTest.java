package io.vllmtrain.inference;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;

import io.vllmtrain.events.AdapterVersion;
import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.Test;

/** The signature of adapter version records: a fixed vector for other implementations, and what it covers. */
class VersionSignatureTest {
  static final byte[] KEY = new byte[32];

  static {
    for (int i = 0; i < 32; i++) {
      KEY[i] = (byte) i;
    }
  }

  static byte[] header(String hex) {
    return hex.getBytes(StandardCharsets.US_ASCII);
  }

  /** The same value as Python's hmac.new(bytes(range(32)), "\n".join([...]).encode(), hashlib.sha256).hexdigest(). */
  @Test
  void aKnownVector() {
    assertEquals("727a6332c24a2760b1f4c45ee367e590f09333bbd2d8ad56f78c1f88b9462797",
        VersionSignature.sign(KEY, Versions.of("run-1", 1)));
  }

  @Test
  void theSignatureCoversEveryFieldThatDecidesWhatIsLoaded() {
    AdapterVersion v = Versions.of("run-1", 1);
    byte[] signed = header(VersionSignature.sign(KEY, v));
    assertNull(VersionSignature.refusal(KEY, v, signed));
    for (AdapterVersion changed : new AdapterVersion[] {
        Versions.builder("run-1", 1).setUri("elsewhere").build(),
        Versions.builder("run-1", 1).setSha256(Versions.sha(2)).build(),
        Versions.builder("run-1", 1).setBaseModel("other").build(),
        Versions.of("run-1", 2)}) {
      assertEquals("vt-signature does not verify with rollout.signing.key",
          VersionSignature.refusal(KEY, changed, signed));
    }
    assertEquals("not signed: rollout.signing.key is set and the record has no vt-signature header",
        VersionSignature.refusal(KEY, v, null));
  }
}
