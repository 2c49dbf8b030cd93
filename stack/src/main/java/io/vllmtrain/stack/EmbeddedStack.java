package io.vllmtrain.stack;

import io.vllmtrain.schemas.KafkaSettings;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Comparator;
import java.util.HashMap;
import java.util.Map;
import org.apache.kafka.common.test.KafkaClusterTestKit;
import org.apache.kafka.common.test.TestKitNodes;
import org.apache.kafka.common.utils.Exit;

/**
 * The broker + registry that integration tests run against, shared by every test of a JVM.
 *
 * <p>When {@code VT_KAFKA_BOOTSTRAP_SERVERS} and {@code VT_REGISTRY_URL} are set ({@code ./pipeline test} starts one
 * stack for all tests and sets them), those are used. Otherwise a real broker starts in-process (Kafka's
 * {@code KafkaClusterTestKit}, KRaft) and a real Apicurio Registry as a child process; both stop when the JVM exits.
 * With {@code VT_STACK=containers} the stack is apache/kafka + Confluent's cp-schema-registry in containers
 * (Testcontainers; the tests abort as skipped where no Docker engine runs). Either way every topic exists.
 *
 * <p>Call it from {@code @BeforeAll} (not a static initializer) so that an aborted start skips the class.
 */
public final class EmbeddedStack {
  private static EmbeddedStack shared;

  private final String bootstrapServers;
  private final String registryUrl;
  private final KafkaSettings settings;

  private EmbeddedStack(String bootstrapServers, String registryUrl) {
    this(KafkaSettings.of(bootstrapServers, registryUrl));
  }

  private EmbeddedStack(KafkaSettings settings) {
    this.bootstrapServers = settings.bootstrapServers();
    this.registryUrl = settings.registryUrl();
    this.settings = settings;
  }

  public static synchronized EmbeddedStack shared() {
    if (shared == null) {
      shared = start();
    }
    return shared;
  }

  public String bootstrapServers() {
    return bootstrapServers;
  }

  public String registryUrl() {
    return registryUrl;
  }

  /** Settings for clients and serdes; with {@code VT_STACK=containers} they speak Confluent's registry API. */
  public KafkaSettings settings() {
    return settings;
  }

  /** Admin/producer/consumer base properties (bootstrap servers only: the embedded stack is plaintext). */
  public Map<String, Object> clientProperties() {
    return new HashMap<>(Map.of("bootstrap.servers", bootstrapServers));
  }

  private static EmbeddedStack start() {
    if ("containers".equals(System.getenv("VT_STACK"))) {
      return new EmbeddedStack(ContainerStack.start());
    }
    String bootstrap = System.getenv("VT_KAFKA_BOOTSTRAP_SERVERS");
    String registry = System.getenv("VT_REGISTRY_URL");
    if (bootstrap != null && !bootstrap.isBlank() && registry != null && !registry.isBlank()) {
      TopicCreator.createAll(new HashMap<>(Map.of("bootstrap.servers", bootstrap)), (short) 1);
      return new EmbeddedStack(bootstrap, registry.replaceAll("/+$", ""));
    }
    // Kafka's test kit deletes its log directory from a shutdown hook of its own, which the JVM runs at the same
    // time as ours; a broker that then writes a checkpoint finds its directory gone and halts the JVM with status
    // 1, so a clean System.exit(0) sometimes ended as a failure (a benchmark lost its result line that way). While
    // the JVM is exiting anyway such a halt only changes the status, so it is ignored then.
    Exit.setHaltProcedure(EmbeddedStack::haltUnlessExiting);
    try {
      KafkaClusterTestKit cluster = new KafkaClusterTestKit.Builder(new TestKitNodes.Builder()
          .setCombined(true).setNumBrokerNodes(1).setNumControllerNodes(1).build())
          .setConfigProp("offsets.topic.replication.factor", "1")
          .setConfigProp("transaction.state.log.replication.factor", "1")
          .setConfigProp("transaction.state.log.min.isr", "1")
          .setConfigProp("group.initial.rebalance.delay.ms", "0")
          .setConfigProp("message.max.bytes", "16777216")
          .build();
      cluster.format();
      cluster.startup();
      cluster.waitForReadyBrokers();
      String servers = cluster.bootstrapServers();
      TopicCreator.createAll(new HashMap<>(Map.of("bootstrap.servers", servers)), (short) 1);

      Path root = RepoRoot.find();
      Path dir = Files.createTempDirectory("vt-registry-");
      StackConfig config = new StackConfig(dir, "127.0.0.1", 0, 0, Ports.free(), Ports.free(),
          System.getenv("VT_STACK_REGISTRY_JAVA"));
      RegistryServer registryServer = new RegistryServer(config);
      Runtime.getRuntime().addShutdownHook(new Thread(() -> {
        registryServer.process().stop(Duration.ofSeconds(10));
        deleteTree(dir);
        try {
          cluster.close();
        } catch (Exception e) {
          // the JVM is exiting
        }
      }, "embedded-stack-shutdown"));
      registryServer.start(root, "mem", servers);
      return new EmbeddedStack(servers, config.registryUrl());
    } catch (IOException e) {
      throw new StackException("cannot start the embedded stack: " + e.getMessage(), e);
    } catch (Exception e) {
      if (e instanceof StackException se) {
        throw se;
      }
      throw new StackException("cannot start the embedded Kafka broker: " + e.getMessage(), e);
    }
  }

  private static void haltUnlessExiting(int status, String message) {
    if (jvmExiting()) {
      System.err.println("embedded stack: the broker asked to halt the exiting JVM with status " + status
          + " (" + message + "); ignored");
      return;
    }
    Runtime.getRuntime().halt(status);
  }

  /** True once the JVM has begun to exit (no shutdown hook can be added any more). */
  private static boolean jvmExiting() {
    Thread probe = new Thread(() -> {});
    try {
      Runtime.getRuntime().addShutdownHook(probe);
      Runtime.getRuntime().removeShutdownHook(probe);
      return false;
    } catch (IllegalStateException e) {
      return true;
    }
  }

  /** Best effort: the registry's working directory (config, log) once the registry has stopped. */
  private static void deleteTree(Path dir) {
    try (var paths = Files.walk(dir)) {
      paths.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
    } catch (IOException | RuntimeException e) {
      System.err.println("embedded stack: could not remove " + dir + ": " + e.getMessage());
    }
  }
}
