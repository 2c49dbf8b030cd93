package io.vllmtrain.stack;

import io.vllmtrain.schemas.ConfigSource;
import io.vllmtrain.schemas.KafkaSettings;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;

/**
 * {@code ./pipeline up|down|status}: the local stack as background processes — a real Kafka broker (KRaft) and a
 * real Apicurio Registry (schemas stored in that broker) — on loopback, with state under {@code .stack/}.
 *
 * <p>{@code up} starts what is not running, creates the topics, waits until both answer and prints their
 * addresses (also written to {@code .stack/stack.env} for scripts); {@code down} stops both and leaves no
 * process behind; {@code status} says what runs. {@code topics} only creates the topic table's missing topics on the
 * cluster named by {@code VT_KAFKA_*} (bootstrap servers and client security settings, as for every service), with
 * no checkout and no local stack: docker-compose.yml runs it once before the services start.
 */
public final class LocalStack {
  private final StackConfig config;
  private final Path repoRoot;

  public LocalStack(StackConfig config, Path repoRoot) {
    this.config = config;
    this.repoRoot = repoRoot;
  }

  public static void main(String[] args) {
    String cmd = args.length > 0 ? args[0] : "status";
    try {
      if (cmd.equals("topics")) {
        createTopics(System.getenv());
        return;
      }
      Path root = RepoRoot.find();
      LocalStack stack = new LocalStack(StackConfig.fromEnv(System.getenv(), root.resolve(".stack")), root);
      switch (cmd) {
        case "up" -> stack.up(System.getenv().getOrDefault("VT_STACK_REGISTRY_STORAGE", "kafkasql"));
        case "down" -> stack.down();
        case "status" -> System.exit(stack.status() ? 0 : 3);
        default -> {
          System.err.println("usage: LocalStack up|down|status|topics");
          System.exit(2);
        }
      }
    } catch (StackException | IllegalArgumentException e) {
      System.err.println("error: " + e.getMessage());
      System.exit(1);
    }
  }

  /**
   * Creates the missing topics of the topic table on the cluster of {@code VT_KAFKA_BOOTSTRAP_SERVERS} (plus any other
   * {@code VT_KAFKA_*} client setting), replication factor {@code VT_TOPICS_REPLICATION_FACTOR} (default 1).
   */
  static void createTopics(Map<String, String> env) {
    Map<String, Object> admin = new HashMap<>();
    ConfigSource.load(null, env).forEach((key, value) -> {
      if (key.startsWith(KafkaSettings.KAFKA_PREFIX)) {
        admin.put(key.substring(KafkaSettings.KAFKA_PREFIX.length()), value);
      }
    });
    if (!admin.containsKey("bootstrap.servers")) {
      throw new IllegalArgumentException("VT_KAFKA_BOOTSTRAP_SERVERS is not set: the brokers to create the topics on");
    }
    String factor = env.getOrDefault("VT_TOPICS_REPLICATION_FACTOR", "1");
    short replicationFactor;
    try {
      replicationFactor = Short.parseShort(factor.trim());
    } catch (NumberFormatException e) {
      throw new IllegalArgumentException("VT_TOPICS_REPLICATION_FACTOR = '" + factor + "' is not a number");
    }
    List<String> created = TopicCreator.createAll(admin, replicationFactor);
    System.out.println("topics    " + (created.isEmpty() ? "all exist" : "created " + String.join(", ", created))
        + " on " + admin.get("bootstrap.servers"));
  }

  public void up(String registryStorage) {
    KafkaBroker kafka = new KafkaBroker(resolvedConfig());
    RegistryServer registry = new RegistryServer(resolvedConfig());
    StackConfig c = resolvedConfig();
    if (kafka.process().alive()) {
      System.out.println("kafka     already running at " + c.bootstrapServers());
    } else {
      System.out.println("kafka     starting (KRaft, data in " + c.dir().resolve("kafka-data") + ") ...");
      kafka.start();
    }
    List<String> created = TopicCreator.createAll(new HashMap<>(Map.of("bootstrap.servers", c.bootstrapServers())),
        (short) 1);
    if (!created.isEmpty()) {
      System.out.println("topics    created " + String.join(", ", created));
    }
    if (registry.process().alive()) {
      System.out.println("registry  already running at " + c.registryUrl());
    } else {
      System.out.println("registry  starting (Apicurio " + RegistryServer.VERSION + ", storage " + registryStorage
          + ") ...");
      try {
        registry.start(repoRoot, registryStorage, c.bootstrapServers());
      } catch (StackException e) {
        kafka.process().stop(Duration.ofSeconds(10));
        throw e;
      }
    }
    writeEnv(c);
    System.out.println();
    System.out.println("Kafka bootstrap servers  " + c.bootstrapServers());
    System.out.println("Schema registry          " + c.registryUrl() + "  (Confluent API: " + c.registryUrl()
        + "/apis/ccompat/v7)");
    System.out.println("Logs                     " + c.dir().resolve("logs"));
    System.out.println("Environment for clients  source " + c.dir().resolve("stack.env"));
  }

  public void down() {
    StackConfig c = config;
    boolean r = new RegistryServer(c).process().stop(Duration.ofSeconds(15));
    boolean k = new KafkaBroker(c).process().stop(Duration.ofSeconds(30));
    System.out.println("registry  " + (r ? "stopped" : "was not running"));
    System.out.println("kafka     " + (k ? "stopped" : "was not running"));
    try {
      Files.deleteIfExists(c.dir().resolve("stack.env"));
      Files.deleteIfExists(c.dir().resolve("ports.properties"));
    } catch (IOException e) {
      // nothing else to clean
    }
  }

  public boolean status() {
    StackConfig c = resolvedConfig();
    boolean k = new KafkaBroker(c).process().alive();
    boolean r = new RegistryServer(c).process().alive();
    boolean kUp = k && Ports.isOpen(c.host(), c.kafkaPort());
    boolean rUp = r && RegistryServer.healthy(c.registryUrl());
    System.out.println("kafka     " + (kUp ? "running at " + c.bootstrapServers() : k ? "starting" : "stopped"));
    System.out.println("registry  " + (rUp ? "running at " + c.registryUrl() : r ? "starting" : "stopped"));
    return kUp && rUp;
  }

  /** Ports: those of a running stack (remembered in ports.properties), else the configured ones, 0 = free. */
  private StackConfig resolvedConfig() {
    Path ports = config.dir().resolve("ports.properties");
    try {
      if (Files.isRegularFile(ports)) {
        Properties p = new Properties();
        try (var r = Files.newBufferedReader(ports)) {
          p.load(r);
        }
        return config.withPorts(Integer.parseInt(p.getProperty("kafka")), Integer.parseInt(p.getProperty("controller")),
            Integer.parseInt(p.getProperty("registry")), Integer.parseInt(p.getProperty("management")));
      }
      if (new KafkaBroker(config).process().alive()) {
        return config;
      }
      StackConfig c = config.withPorts(
          Ports.claim(config.kafkaPort(), "Kafka broker", "VT_STACK_KAFKA_PORT"),
          Ports.claim(config.controllerPort(), "Kafka controller", "VT_STACK_CONTROLLER_PORT"),
          Ports.claim(config.registryPort(), "schema registry", "VT_STACK_REGISTRY_PORT"),
          Ports.claim(config.registryManagementPort(), "registry management", "VT_STACK_REGISTRY_MANAGEMENT_PORT"));
      Files.createDirectories(config.dir());
      Files.writeString(ports, "kafka=" + c.kafkaPort() + "\ncontroller=" + c.controllerPort() + "\nregistry="
          + c.registryPort() + "\nmanagement=" + c.registryManagementPort() + "\n");
      return c;
    } catch (IOException e) {
      throw new StackException("cannot use " + config.dir() + ": " + e.getMessage(), e);
    }
  }

  private static void writeEnv(StackConfig c) {
    try {
      Files.writeString(c.dir().resolve("stack.env"), "export VT_KAFKA_BOOTSTRAP_SERVERS=" + c.bootstrapServers()
          + "\nexport VT_REGISTRY_URL=" + c.registryUrl() + "\n");
    } catch (IOException e) {
      throw new StackException("cannot write " + c.dir().resolve("stack.env") + ": " + e.getMessage(), e);
    }
  }
}
