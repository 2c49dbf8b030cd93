package io.vllmtrain.stack;

import java.nio.file.Path;
import java.util.Map;

/**
 * Where the local stack lives and which loopback ports it uses. Port 0 means "pick a free port".
 *
 * <p>Environment: {@code VT_STACK_DIR} (default {@code .stack}), {@code VT_STACK_KAFKA_PORT} (9092),
 * {@code VT_STACK_CONTROLLER_PORT} (9093), {@code VT_STACK_REGISTRY_PORT} (8081), {@code VT_STACK_REGISTRY_MANAGEMENT_PORT} (9091),
 * {@code VT_STACK_REGISTRY_JAVA} (a java binary of version 21 or newer, found automatically when unset).
 */
public record StackConfig(Path dir, String host, int kafkaPort, int controllerPort, int registryPort,
    int registryManagementPort, String registryJava) {

  public static StackConfig fromEnv(Map<String, String> env, Path defaultDir) {
    return new StackConfig(
        Path.of(env.getOrDefault("VT_STACK_DIR", defaultDir.toString())).toAbsolutePath(),
        "127.0.0.1",
        port(env, "VT_STACK_KAFKA_PORT", 9092),
        port(env, "VT_STACK_CONTROLLER_PORT", 9093),
        port(env, "VT_STACK_REGISTRY_PORT", 8081),
        port(env, "VT_STACK_REGISTRY_MANAGEMENT_PORT", 9091),
        env.get("VT_STACK_REGISTRY_JAVA"));
  }

  public StackConfig withPorts(int kafka, int controller, int registry, int management) {
    return new StackConfig(dir, host, kafka, controller, registry, management, registryJava);
  }

  public String bootstrapServers() {
    return host + ":" + kafkaPort;
  }

  public String registryUrl() {
    return "http://" + host + ":" + registryPort;
  }

  private static int port(Map<String, String> env, String name, int dflt) {
    String v = env.get(name);
    if (v == null || v.isBlank()) {
      return dflt;
    }
    try {
      int p = Integer.parseInt(v.trim());
      if (p < 0 || p > 65535) {
        throw new NumberFormatException();
      }
      return p;
    } catch (NumberFormatException e) {
      throw new IllegalArgumentException(name + " must be a port number (0-65535), not '" + v + "'");
    }
  }
}
