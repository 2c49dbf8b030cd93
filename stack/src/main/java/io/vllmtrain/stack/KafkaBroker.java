package io.vllmtrain.stack;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.common.Uuid;

/**
 * A real Apache Kafka broker in KRaft combined mode (broker + controller), started as its own JVM from the
 * Kafka jars on this module's classpath, with its data under {@code <stack dir>/kafka-data}.
 */
public final class KafkaBroker {
  private final StackConfig config;
  private final ManagedProcess process;

  public KafkaBroker(StackConfig config) {
    this.config = config;
    this.process = new ManagedProcess("kafka", config.dir());
  }

  public ManagedProcess process() {
    return process;
  }

  public String serverProperties() {
    String h = config.host();
    return String.join("\n",
        "# Written by vllm-train's LocalStack: a single-node KRaft broker+controller on loopback.",
        "process.roles=broker,controller",
        "node.id=1",
        "controller.quorum.bootstrap.servers=" + h + ":" + config.controllerPort(),
        "listeners=PLAINTEXT://" + h + ":" + config.kafkaPort() + ",CONTROLLER://" + h + ":" + config.controllerPort(),
        "advertised.listeners=PLAINTEXT://" + h + ":" + config.kafkaPort(),
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs=" + config.dir().resolve("kafka-data"),
        "num.partitions=1",
        "auto.create.topics.enable=false",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=3",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "transaction.state.log.num.partitions=3",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        "message.max.bytes=16777216",
        "") ;
  }

  public void start() {
    try {
      Path dir = config.dir();
      Files.createDirectories(dir);
      Path props = dir.resolve("server.properties");
      Files.writeString(props, serverProperties());
      Path log4j = dir.resolve("log4j2.properties");
      try (InputStream in = KafkaBroker.class.getResourceAsStream("/vllm_train/stack/log4j2.properties")) {
        Files.copy(in, log4j, StandardCopyOption.REPLACE_EXISTING);
      }
      List<String> jvm = List.of(javaBin(), "-Xms128m", "-Xmx768m", "-XX:+UseG1GC",
          "-Dlog4j2.configurationFile=" + log4j.toUri(),
          "-Dvt.log.file=" + dir.resolve("logs/kafka-server.log"),
          "-cp", absoluteClasspath());
      if (!Files.exists(dir.resolve("kafka-data/meta.properties"))) {
        format(jvm, props);
      }
      List<String> cmd = new ArrayList<>(jvm);
      cmd.add("kafka.Kafka");
      cmd.add(props.toString());
      process.start(cmd, dir);
      process.awaitReady(() -> Ports.isOpen(config.host(), config.kafkaPort()), Duration.ofSeconds(60),
          "listening on " + config.bootstrapServers());
    } catch (IOException e) {
      throw new StackException("cannot prepare the Kafka broker in " + config.dir() + ": " + e.getMessage(), e);
    }
  }

  private void format(List<String> jvm, Path props) throws IOException {
    List<String> cmd = new ArrayList<>(jvm);
    cmd.addAll(List.of("kafka.tools.StorageTool", "format", "--standalone", "-t", Uuid.randomUuid().toString(),
        "-c", props.toString()));
    Path log = config.dir().resolve("logs/kafka-format.log");
    Files.createDirectories(log.getParent());
    Process p = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile()).start();
    try {
      if (!p.waitFor(60, TimeUnit.SECONDS) || p.exitValue() != 0) {
        p.destroyForcibly();
        throw new StackException("formatting Kafka storage failed; see " + log + ":\n" + Files.readString(log));
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new StackException("interrupted while formatting Kafka storage");
    }
  }

  /** This JVM's classpath with absolute entries: the broker runs in another working directory. */
  static String absoluteClasspath() {
    return java.util.Arrays.stream(System.getProperty("java.class.path").split(java.io.File.pathSeparator))
        .map(e -> Path.of(e).toAbsolutePath().toString())
        .collect(java.util.stream.Collectors.joining(java.io.File.pathSeparator));
  }

  static String javaBin() {
    return Path.of(System.getProperty("java.home"), "bin", "java").toString();
  }
}
