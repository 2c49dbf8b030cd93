package io.vllmtrain.streams;

import static io.vllmtrain.streams.Events.edit;
import static io.vllmtrain.streams.Events.pairwise;
import static io.vllmtrain.streams.Events.prompt;
import static io.vllmtrain.streams.Events.response;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.vllmtrain.events.FeedbackEvent;
import io.vllmtrain.events.PreferenceBatch;
import io.vllmtrain.events.PreferencePair;
import io.vllmtrain.events.PromptEvent;
import io.vllmtrain.events.ResponseEvent;
import io.vllmtrain.schemas.AvroSerdes;
import io.vllmtrain.schemas.KafkaSettings;
import io.vllmtrain.schemas.Topics;
import io.vllmtrain.stack.EmbeddedStack;
import io.vllmtrain.stack.RegistryFaultProxy;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import org.apache.avro.specific.SpecificRecord;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.streams.KafkaStreams;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The app (in this JVM, exactly-once) on the real broker and registry, against input and faults that used to stop
 * it or lose records: feedback whose pairs and waiting state a 1 MB producer could not send, records up to the
 * broker's limit on every input topic, and a registry that refuses to answer for a while. The app must keep
 * running, pair what is valid and dead-letter the rest with a reason (TopologyTestDriver enforces no sizes, hence
 * the real broker here).
 */
class HostileInputStackTest {
  private static final int KIB = 1024;
  private static EmbeddedStack stack;

  @TempDir
  Path dir;

  private final String run = "hi" + UUID.randomUUID().toString().substring(0, 8);
  private final List<AutoCloseable> open = new ArrayList<>();
  private StreamsApp app;

  @BeforeAll
  static void startStack() {
    stack = EmbeddedStack.shared();
  }

  @AfterEach
  void closeAll() throws Exception {
    for (int i = open.size() - 1; i >= 0; i--) {
      open.get(i).close();
    }
  }

  @Test
  void editsOfHundredsOfKilobytesBecomePairsAndBatchesWithoutStoppingTheApp() throws Exception {
    startApp(stack.settings().registryUrl(), true);
    KafkaProducer<String, SpecificRecord> events = eventProducer();
    List<String> expected = new ArrayList<>();
    for (int i = 0; i < 3; i++) { // three 400 kB edits: one batch of them is over the 1 MB a default producer sends
      String q = run + "-q" + i;
      send(events, prompt(q, "Fix this."), response(q, q + "-r", "short answer " + i, null),
          edit(q + "-f", q, q + "-r", text(400 * KIB, i)));
      expected.add(q + "-f");
    }
    String q = run + "-late"; // a 700 kB edit that waits for its response: edit and original bytes in one state value
    send(events, prompt(q, "Fix this."), edit(q + "-f", q, q + "-r", text(700 * KIB, 9)));
    events.flush();
    Thread.sleep(1000);
    send(events, response(q, q + "-r", "short answer", null));
    expected.add(q + "-f");
    events.flush();

    List<String> paired = new ArrayList<>();
    try (TopicReader<PreferenceBatch> batches = TopicReader.avro(stack.settings(), Topics.PREFERENCE_BATCHES.name())) {
      await("every edit in a batch", Duration.ofSeconds(60), () -> {
        batches.poll(Duration.ofMillis(200), r -> r.value().getPairs().stream()
            .filter(p -> p.getRequestId().startsWith(run))
            .forEach(p -> paired.addAll(p.getFeedbackIds())));
        return paired.size() >= expected.size();
      });
    }
    assertEquals(sorted(expected), sorted(paired));
    assertEquals(KafkaStreams.State.RUNNING, app.state());
  }

  @Test
  void aRecordUpToTheBrokersLimitOnEveryInputTopicIsDeadLetteredAndTheAppKeepsRunning() throws Exception {
    startApp(stack.settings().registryUrl(), true);
    KafkaProducer<String, SpecificRecord> events = eventProducer();
    KafkaProducer<String, byte[]> raw = rawProducer();
    int limit = brokerLimit(Topics.PROMPTS.name());
    int nearLimit = limit - KIB;
    String q = run + "-q";
    send(events, prompt(q, "Hi."), response(q, q + "-a", "Hello.", null), response(q, q + "-b", "Bye.", null));
    events.flush();

    Map<String, Integer> sent = new TreeMap<>(); // dead letter key -> original value size
    sent.put(run + "-garbage-2mb", 2 * 1024 * KIB);
    raw.send(new ProducerRecord<>(Topics.PROMPTS.name(), run + "-garbage-2mb", garbage(2 * 1024 * KIB)));
    for (String topic : List.of(Topics.PROMPTS.name(), Topics.RESPONSES.name(), Topics.FEEDBACK.name())) {
      String key = run + "-garbage-" + topic;
      raw.send(new ProducerRecord<>(topic, key, garbage(nearLimit)));
      sent.put(key, nearLimit);
    }
    String big = text(nearLimit - 4 * KIB, 1); // valid events, as large as the topic takes
    String bq = run + "-big";
    Map<String, byte[]> valid = Map.of(
        Topics.PROMPTS.name(), encode(Topics.PROMPTS.name(), prompt(bq, big)),
        Topics.RESPONSES.name(), encode(Topics.RESPONSES.name(), response(q, q + "-big", big, null)),
        Topics.FEEDBACK.name(), encode(Topics.FEEDBACK.name(), edit(q + "-fbig", q, q + "-a", big)));
    for (var e : valid.entrySet()) {
      String key = e.getKey().equals(Topics.PROMPTS.name()) ? bq : q;
      raw.send(new ProducerRecord<>(e.getKey(), key, e.getValue()));
      sent.put(key + " " + e.getKey(), e.getValue().length);
    }
    raw.flush();
    send(events, pairwise(q + "-f", q, q + "-a", q + "-b"));
    events.flush();

    Map<String, ConsumerRecord<byte[], byte[]>> dead = new TreeMap<>();
    try (TopicReader<byte[]> dlq = TopicReader.bytes(stack.settings(), Topics.DLQ.name())) {
      await("a dead letter for each", Duration.ofSeconds(90), () -> {
        dlq.poll(Duration.ofMillis(200), r -> {
          String key = r.key() == null ? "" : new String(r.key(), StandardCharsets.UTF_8);
          if (key.startsWith(run)) {
            dead.put(key.contains("garbage") ? key : key + " " + header(r, Topics.DLQ_SOURCE_TOPIC), r);
          }
        });
        return dead.size() >= sent.size();
      });
    }
    assertEquals(sent.keySet(), dead.keySet());
    for (var e : sent.entrySet()) {
      ConsumerRecord<byte[], byte[]> r = dead.get(e.getKey());
      String reason = header(r, Topics.DLQ_REASON);
      assertTrue(reason.matches("(UNDECODABLE|STATE_TOO_LARGE|PAIR_TOO_LARGE): .*"), e.getKey() + ": " + reason);
      String truncated = header(r, Topics.DLQ_PAYLOAD_TRUNCATED);
      if (truncated == null) {
        assertEquals(e.getValue(), r.value().length, e.getKey() + " whole");
      } else {
        assertEquals(Integer.toString(e.getValue()), truncated, e.getKey());
        assertTrue(r.value().length < e.getValue(), e.getKey());
      }
      if (e.getKey().contains("garbage-llm.")) {
        assertTrue(truncated != null, e.getKey() + ": a record at the DLQ's own limit cannot fit with its headers");
      }
      if (e.getKey().endsWith("garbage-2mb")) {
        assertEquals(null, truncated, "2 MB fit in the DLQ whole");
      }
    }
    try (TopicReader<PreferencePair> pairs = TopicReader.avro(stack.settings(), Topics.PREFERENCE_PAIRS.name())) {
      List<String> ids = new ArrayList<>();
      await("the pair of the normal feedback", Duration.ofSeconds(30), () -> {
        pairs.poll(Duration.ofMillis(200), r -> {
          if (r.value().getRequestId().startsWith(run)) {
            ids.addAll(r.value().getFeedbackIds());
          }
        });
        return !ids.isEmpty();
      });
      assertEquals(List.of(q + "-f"), ids);
    }
    assertEquals(KafkaStreams.State.RUNNING, app.state());
  }

  @Test
  void aRegistryThatRefusesToAnswerForAWhileDelaysProcessingAndDeadLettersNothing() throws Exception {
    RegistryFaultProxy registry = RegistryFaultProxy.start(stack.settings().registryUrl());
    open.add(registry);
    registry.failWith(503);
    KafkaProducer<String, SpecificRecord> events = eventProducer();
    List<String> expected = new ArrayList<>();
    for (int i = 0; i < 10; i++) {
      String q = run + "-q" + i;
      send(events, prompt(q, "Hi " + i), response(q, q + "-a", "Hello " + i, null),
          response(q, q + "-b", "Bye " + i, null), pairwise(q + "-f", q, q + "-a", q + "-b"));
      expected.add(q + "-f");
    }
    events.flush();
    startApp(registry.url(), false); // it cannot settle while its stream thread fails on every record

    List<String> paired = new ArrayList<>();
    List<String> dead = new ArrayList<>();
    try (TopicReader<PreferencePair> pairs = TopicReader.avro(stack.settings(), Topics.PREFERENCE_PAIRS.name());
         TopicReader<byte[]> dlq = TopicReader.bytes(stack.settings(), Topics.DLQ.name())) {
      Runnable read = () -> {
        pairs.poll(Duration.ofMillis(100), r -> {
          if (r.value().getRequestId().startsWith(run)) {
            paired.addAll(r.value().getFeedbackIds());
          }
        });
        dlq.poll(Duration.ofMillis(100), r -> {
          if (r.key() != null && new String(r.key(), StandardCharsets.UTF_8).startsWith(run)) {
            dead.add(header(r, Topics.DLQ_REASON));
          }
        });
      };
      for (int status : new int[] {503, 401, 403}) {
        registry.failWith(status);
        long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(4);
        while (System.nanoTime() < until) {
          read.run();
          assertTrue(app.state() != KafkaStreams.State.ERROR && app.state() != KafkaStreams.State.NOT_RUNNING,
              "app " + app.state());
        }
        assertEquals(List.of(), dead, "while the registry answers " + status);
        assertEquals(List.of(), paired, "nothing is processed while the registry answers " + status);
      }
      assertTrue(registry.faults() > 0, "the app asked the registry");
      registry.heal();
      await("every pair once the registry answers", Duration.ofSeconds(60), () -> {
        read.run();
        return paired.size() >= expected.size();
      });
      long quiet = System.nanoTime() + TimeUnit.SECONDS.toNanos(2);
      while (System.nanoTime() < quiet) {
        read.run();
      }
    }
    assertEquals(sorted(expected), sorted(paired));
    assertEquals(List.of(), dead);
  }

  private void startApp(String registryUrl, boolean awaitRunning) throws Exception {
    KafkaSettings settings = stack.settings();
    Map<String, String> cfg = new HashMap<>();
    cfg.put("kafka.bootstrap.servers", settings.bootstrapServers());
    cfg.put("registry.url", registryUrl);
    if (settings.confluentRegistry()) {
      cfg.put("registry.flavor", "confluent");
    }
    cfg.put("streams.application.id", "vt-streams-" + run);
    cfg.put("streams.state.dir", dir.resolve("state").toString());
    cfg.put("streams.batch.size", "8");
    cfg.put("streams.batch.max.wait", "1s");
    cfg.put("streams.metrics.port", "0");
    StreamsAppConfig config = StreamsAppConfig.from(cfg);
    app = new StreamsApp(config, EventSerdes.registry(config.kafka()));
    open.add(app);
    app.start();
    if (awaitRunning) {
      app.awaitRunning(Duration.ofSeconds(60));
    }
  }

  private KafkaProducer<String, SpecificRecord> eventProducer() {
    KafkaProducer<String, SpecificRecord> p = new KafkaProducer<>(producerProps(), new StringSerializer(),
        AvroSerdes.valueSerializer(stack.settings()));
    open.add(p);
    return p;
  }

  private KafkaProducer<String, byte[]> rawProducer() {
    KafkaProducer<String, byte[]> p = new KafkaProducer<>(producerProps(), new StringSerializer(),
        new ByteArraySerializer());
    open.add(p);
    return p;
  }

  private static Map<String, Object> producerProps() {
    Map<String, Object> props = new HashMap<>(stack.settings().clientProperties());
    props.put("linger.ms", "5");
    props.put("max.request.size", Integer.toString(32 * 1024 * KIB)); // the broker decides what is too large
    props.put("buffer.memory", Long.toString(128L * 1024 * KIB));
    return props;
  }

  private static void send(KafkaProducer<String, SpecificRecord> producer, SpecificRecord... records) {
    for (SpecificRecord r : records) {
      String topic = r instanceof PromptEvent ? Topics.PROMPTS.name()
          : r instanceof ResponseEvent ? Topics.RESPONSES.name() : Topics.FEEDBACK.name();
      String key = r instanceof PromptEvent p ? p.getRequestId()
          : r instanceof ResponseEvent s ? s.getRequestId() : ((FeedbackEvent) r).getRequestId();
      producer.send(new ProducerRecord<>(topic, key, r));
    }
  }

  private static byte[] encode(String topic, SpecificRecord r) {
    return AvroSerdes.valueSerializer(stack.settings()).serialize(topic, r);
  }

  /** The largest record value the broker takes on {@code topic} (its max.message.bytes). */
  private static int brokerLimit(String topic) throws Exception {
    try (Admin admin = Admin.create(stack.clientProperties())) {
      ConfigResource resource = new ConfigResource(ConfigResource.Type.TOPIC, topic);
      Config config = admin.describeConfigs(List.of(resource)).all().get(30, TimeUnit.SECONDS).get(resource);
      return Integer.parseInt(config.get("max.message.bytes").value());
    }
  }

  private void await(String what, Duration timeout, BooleanSupplier done) throws InterruptedException {
    long deadline = System.nanoTime() + timeout.toNanos();
    while (!done.getAsBoolean()) {
      if (app.state() == KafkaStreams.State.ERROR || app.state() == KafkaStreams.State.NOT_RUNNING) {
        fail("the app stopped (" + app.state() + ") while waiting for " + what);
      }
      if (System.nanoTime() > deadline) {
        fail("timed out after " + timeout + " waiting for " + what);
      }
      Thread.sleep(50);
    }
  }

  private static byte[] garbage(int size) {
    byte[] b = new byte[size];
    Arrays.fill(b, (byte) '#');
    return b;
  }

  private static String text(int bytes, int seed) {
    String unit = "word" + seed + " ";
    return unit.repeat(bytes / unit.length() + 1).substring(0, bytes);
  }

  private static String header(ConsumerRecord<byte[], byte[]> r, String name) {
    Header h = r.headers().lastHeader(name);
    return h == null ? null : new String(h.value(), StandardCharsets.UTF_8);
  }

  private static List<String> sorted(List<String> ids) {
    List<String> copy = new ArrayList<>(ids);
    java.util.Collections.sort(copy);
    return copy;
  }
}
