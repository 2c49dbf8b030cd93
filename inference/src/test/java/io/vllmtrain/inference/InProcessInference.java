package io.vllmtrain.inference;

import io.grpc.ManagedChannel;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.inprocess.InProcessServerBuilder;
import io.vllmtrain.events.AdapterVersion;
import io.vllmtrain.proto.v1.AdapterServiceGrpc;
import io.vllmtrain.proto.v1.FeedbackServiceGrpc;
import io.vllmtrain.proto.v1.InferenceServiceGrpc;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.function.Function;
import org.apache.kafka.clients.consumer.Consumer;
import org.apache.avro.specific.SpecificRecord;
import org.apache.kafka.clients.producer.MockProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * The whole inference service (InferenceServer with its real services, router, rollout controller and event
 * recorder) on an in-process gRPC server, with {@link InProcessEngine} replicas and Kafka's MockProducer catching
 * the events. Adapter versions are handed to the controller directly instead of being read from Kafka.
 */
final class InProcessInference implements AutoCloseable {
  final Map<String, InProcessEngine> engines = new LinkedHashMap<>();
  /** The service's channel to each engine, by address (its calls can be made to fail as they start). */
  final Map<String, StartFailingChannel> engineChannels = new java.util.concurrent.ConcurrentHashMap<>();
  final MockProducer<String, SpecificRecord> kafka;
  final InferenceServer server;
  final ManagedChannel channel;
  final InferenceServiceGrpc.InferenceServiceBlockingStub inference;
  final FeedbackServiceGrpc.FeedbackServiceBlockingStub feedback;
  final AdapterServiceGrpc.AdapterServiceBlockingStub adapters;

  InProcessInference(int replicas, Map<String, String> overrides, MockProducer<String, SpecificRecord> kafka) {
    this(replicas, overrides, kafka, c -> new EventRecorder(kafka, c.eventBufferCapacity(), c.eventBufferBytes()), c -> null);
  }

  /**
   * With the event recorder and adapter-version consumer the functions build from the config (a null consumer:
   * versions are handed to the controller by the test). The engines serve the config's base.model.
   */
  InProcessInference(int replicas, Map<String, String> overrides, MockProducer<String, SpecificRecord> kafka,
      Function<InferenceConfig, EventRecorder> events,
      Function<InferenceConfig, Consumer<String, AdapterVersion>> versions) {
    String prefix = "engine-" + UUID.randomUUID().toString().substring(0, 8) + "-";
    List<String> addresses = new ArrayList<>();
    for (int i = 0; i < replicas; i++) {
      addresses.add(prefix + (char) ('a' + i) + ":1");
    }
    Map<String, String> config = new HashMap<>(Map.of(
        "base.model", Versions.BASE_MODEL,
        "engine.addresses", String.join(",", addresses),
        "engine.health.interval.ms", "50",
        "metrics.enabled", "false",
        "server.shutdown.grace.ms", "2000",
        "events.flush.timeout.ms", "200",
        "kafka.bootstrap.servers", "unused:9092",
        "registry.url", "http://unused:8080"));
    config.putAll(overrides);
    InferenceConfig c = InferenceConfig.fromMap(config);
    for (String address : addresses) {
      InProcessEngine engine = InProcessEngine.start(address);
      engine.model = c.baseModel();
      engines.put(address, engine);
    }
    this.kafka = kafka;
    String serverName = "inference-" + UUID.randomUUID();
    try {
      server = new InferenceServer(InProcessServerBuilder.forName(serverName), c,
          address -> engineChannels.computeIfAbsent(address,
              a -> new StartFailingChannel(InProcessChannelBuilder.forName(a).build())),
          events.apply(c), versions.apply(c)).start();
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    channel = InProcessChannelBuilder.forName(serverName).build();
    inference = InferenceServiceGrpc.newBlockingStub(channel);
    feedback = FeedbackServiceGrpc.newBlockingStub(channel);
    adapters = AdapterServiceGrpc.newBlockingStub(channel);
  }

  /** Two replicas, events acknowledged at once. */
  static InProcessInference start() {
    return new InProcessInference(2, Map.of(), autoAckKafka());
  }

  static MockProducer<String, SpecificRecord> autoAckKafka() {
    return new MockProducer<>(true, null, new StringSerializer(), (topic, value) -> new byte[0]);
  }

  InProcessEngine engine(int i) {
    return new ArrayList<>(engines.values()).get(i);
  }

  RolloutController controller() {
    return server.controller();
  }

  /** Publishes versions as the topic would, then marks the history read, and waits until the service serves. */
  InProcessInference started(AdapterVersion... history) {
    for (AdapterVersion v : history) {
      controller().published(v);
    }
    controller().caughtUp();
    return awaitStarted();
  }

  /** Waits until the service serves with every replica in service. */
  InProcessInference awaitStarted() {
    Await.until("the service to start", Duration.ofSeconds(60), () -> controller().started()
        && server.router().inService().size() == engines.size());
    return this;
  }

  /** Publishes a version and waits until it is active. */
  void rollOut(AdapterVersion v) {
    controller().published(v);
    awaitActive(v.getVersionId());
  }

  void awaitActive(String versionId) {
    Await.until("version " + versionId + " to be active", Duration.ofSeconds(30),
        () -> controller().rollout().active().equals(versionId),
        () -> "(active: '" + controller().rollout().active() + "', versions: " + controller().rollout().versions()
            + ")");
  }

  /** Every event recorded so far, by topic, in order. */
  List<ProducerRecord<String, SpecificRecord>> events(String topic) {
    return kafka.history().stream().filter(r -> r.topic().equals(topic)).toList();
  }

  @Override
  public void close() {
    channel.shutdownNow();
    server.stop();
    engines.values().forEach(InProcessEngine::crash);
  }
}
