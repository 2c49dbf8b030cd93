package io.vllmtrain.stack;

import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.InetAddress;
import java.net.ServerSocket;
import org.junit.jupiter.api.Test;

class PortsTest {
  @Test
  void aTakenPortIsAClearErrorNamingTheSettingToChange() throws Exception {
    try (ServerSocket taken = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
      var e = assertThrows(StackException.class, () -> Ports.claim(taken.getLocalPort(), "Kafka broker", "VT_STACK_KAFKA_PORT"));
      assertTrue(e.getMessage().contains("already in use"), e.getMessage());
      assertTrue(e.getMessage().contains("VT_STACK_KAFKA_PORT"), e.getMessage());
    }
  }

  @Test
  void portZeroPicksAFreePort() {
    int p = Ports.claim(0, "x", "VT_X");
    assertNotEquals(0, p);
  }

  @Test
  void aRuntimeOfTheNeededVersionIsFoundOrTheErrorSaysWhatToInstall() {
    try {
      var java = JavaRuntimes.find(21, null, RepoRoot.find());
      assertTrue(java.toString().endsWith("bin/java"));
    } catch (StackException e) {
      assertTrue(e.getMessage().contains("VT_STACK_REGISTRY_JAVA"), e.getMessage());
    }
  }
}
