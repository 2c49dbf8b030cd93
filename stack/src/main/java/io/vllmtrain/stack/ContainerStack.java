package io.vllmtrain.stack;

import io.vllmtrain.schemas.KafkaSettings;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import org.opentest4j.TestAbortedException;
import org.testcontainers.DockerClientFactory;
import org.testcontainers.containers.GenericContainer;
import org.testcontainers.containers.Network;
import org.testcontainers.containers.wait.strategy.Wait;
import org.testcontainers.kafka.KafkaContainer;

/**
 * The stack as containers ({@code VT_STACK=containers}): Apache Kafka (apache/kafka, KRaft) and Confluent's own
 * Schema Registry (confluentinc/cp-schema-registry). Without a Docker engine the tests that need it are aborted
 * (reported as skipped), never failed.
 */
final class ContainerStack {
  static final String KAFKA_IMAGE = System.getenv().getOrDefault("VT_KAFKA_IMAGE", "apache/kafka:4.1.1");
  static final String REGISTRY_IMAGE = System.getenv().getOrDefault("VT_REGISTRY_IMAGE",
      "confluentinc/cp-schema-registry:8.0.0");

  private ContainerStack() {}

  static boolean dockerAvailable() {
    try {
      return DockerClientFactory.instance().isDockerAvailable();
    } catch (RuntimeException e) {
      return false;
    }
  }

  /** Starts Kafka + Confluent Schema Registry; returns settings with the Confluent registry flavor. */
  static KafkaSettings start() {
    if (!dockerAvailable()) {
      throw new TestAbortedException("VT_STACK=containers needs a Docker engine and none answers; run without "
          + "VT_STACK to use the embedded stack");
    }
    Network network = Network.newNetwork();
    KafkaContainer kafka = new KafkaContainer(KAFKA_IMAGE).withNetwork(network).withListener("kafka:19092");
    kafka.start();
    GenericContainer<?> registry = new GenericContainer<>(REGISTRY_IMAGE).withNetwork(network)
        .withExposedPorts(8081)
        .withEnv("SCHEMA_REGISTRY_HOST_NAME", "schema-registry")
        .withEnv("SCHEMA_REGISTRY_LISTENERS", "http://0.0.0.0:8081")
        .withEnv("SCHEMA_REGISTRY_KAFKASTORE_BOOTSTRAP_SERVERS", "PLAINTEXT://kafka:19092")
        .waitingFor(Wait.forHttp("/subjects").forStatusCode(200).withStartupTimeout(Duration.ofMinutes(2)));
    registry.start();
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      registry.stop();
      kafka.stop();
      network.close();
    }, "container-stack-shutdown"));
    Map<String, Object> admin = new HashMap<>(Map.of("bootstrap.servers", kafka.getBootstrapServers()));
    TopicCreator.createAll(admin, (short) 1);
    String url = "http://" + registry.getHost() + ":" + registry.getMappedPort(8081);
    return KafkaSettings.of(kafka.getBootstrapServers(), url).withConfluentRegistry(url);
  }
}
