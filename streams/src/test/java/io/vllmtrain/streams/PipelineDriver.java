package io.vllmtrain.streams;

import io.prometheus.metrics.model.registry.PrometheusRegistry;
import io.vllmtrain.events.FeedbackEvent;
import io.vllmtrain.events.PreferenceBatch;
import io.vllmtrain.events.PreferencePair;
import io.vllmtrain.events.PromptEvent;
import io.vllmtrain.events.ResponseEvent;
import io.vllmtrain.schemas.Topics;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.Properties;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.TestInputTopic;
import org.apache.kafka.streams.TestOutputTopic;
import org.apache.kafka.streams.TopologyTestDriver;
import org.apache.kafka.streams.test.TestRecord;

/**
 * The topology in a {@link TopologyTestDriver} with the in-memory registry: pipe events in at an event-time cursor
 * ({@link #at}), read pairs, batches and dead letters out.
 */
final class PipelineDriver implements AutoCloseable {
  final InMemoryRegistry registry = new InMemoryRegistry();
  final PairingMetrics metrics = new PairingMetrics(new PrometheusRegistry());
  private final TopologyTestDriver driver;
  private final TestInputTopic<String, PromptEvent> prompts;
  private final TestInputTopic<String, ResponseEvent> responses;
  private final TestInputTopic<String, FeedbackEvent> feedback;
  private final TestInputTopic<String, byte[]> rawFeedback;
  private final TestInputTopic<String, byte[]> rawPrompts;
  private final TestInputTopic<String, byte[]> rawResponses;
  private final TestOutputTopic<String, PreferencePair> pairs;
  private final TestOutputTopic<String, byte[]> batches;
  private final TestOutputTopic<byte[], byte[]> dlq;
  private Instant now = Events.T0;

  PipelineDriver(PairingRules rules, BatchPolicy batching, Path stateDir) {
    this(rules, batching, stateDir, null);
  }

  /** With {@code decoder} in place of the registry decoder of event values (null: the in-memory registry's). */
  PipelineDriver(PairingRules rules, BatchPolicy batching, Path stateDir,
                 org.apache.kafka.common.serialization.Deserializer<Object> decoder) {
    Properties props = new Properties();
    props.put(StreamsConfig.APPLICATION_ID_CONFIG, "streams-test");
    props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, "unused:9092");
    props.put(StreamsConfig.STATE_DIR_CONFIG, stateDir.toString());
    EventSerdes serdes = registry.eventSerdes();
    if (decoder != null) {
      serdes = new EventSerdes(decoder, serdes.pairs(), serdes.batches());
    }
    driver = new TopologyTestDriver(PreferenceTopology.build(rules, batching, RecordLimits.DEFAULTS, serdes, metrics), props, Events.T0);
    StringSerializer keys = new StringSerializer();
    prompts = driver.createInputTopic(Topics.PROMPTS.name(), keys, registry.serializer());
    responses = driver.createInputTopic(Topics.RESPONSES.name(), keys, registry.serializer());
    feedback = driver.createInputTopic(Topics.FEEDBACK.name(), keys, registry.serializer());
    rawFeedback = driver.createInputTopic(Topics.FEEDBACK.name(), keys, new ByteArraySerializer());
    rawPrompts = driver.createInputTopic(Topics.PROMPTS.name(), keys, new ByteArraySerializer());
    rawResponses = driver.createInputTopic(Topics.RESPONSES.name(), keys, new ByteArraySerializer());
    pairs = driver.createOutputTopic(Topics.PREFERENCE_PAIRS.name(), new StringDeserializer(),
        registry.deserializer(PreferencePair.class));
    batches = driver.createOutputTopic(Topics.PREFERENCE_BATCHES.name(), new StringDeserializer(),
        new ByteArrayDeserializer());
    dlq = driver.createOutputTopic(Topics.DLQ.name(), new ByteArrayDeserializer(), new ByteArrayDeserializer());
  }

  PipelineDriver(Path stateDir) {
    this(PairingRules.DEFAULTS, new BatchPolicy(1000, Duration.ofHours(1)), stateDir);
  }

  /** Moves the event-time cursor: records piped from now on carry this timestamp. */
  PipelineDriver at(Instant time) {
    now = time;
    return this;
  }

  PipelineDriver after(Duration d) {
    return at(now.plus(d));
  }

  /** A prompt and its responses, as the inference service writes them. */
  PipelineDriver request(PromptEvent prompt, ResponseEvent... rs) {
    prompt(prompt);
    for (ResponseEvent r : rs) {
      response(r);
    }
    return this;
  }

  PipelineDriver prompt(PromptEvent p) {
    prompts.pipeInput(p.getRequestId(), p, now);
    return this;
  }

  PipelineDriver response(ResponseEvent r) {
    responses.pipeInput(r.getRequestId(), r, now);
    return this;
  }

  PipelineDriver feedback(FeedbackEvent... fs) {
    for (FeedbackEvent f : fs) {
      feedback.pipeInput(f.getRequestId(), f, now);
    }
    return this;
  }

  PipelineDriver feedbackKeyed(String key, FeedbackEvent f) {
    feedback.pipeInput(key, f, now);
    return this;
  }

  PipelineDriver rawFeedback(String key, byte[] value) {
    rawFeedback.pipeInput(key, value, now);
    return this;
  }

  PipelineDriver rawPrompt(String key, byte[] value) {
    rawPrompts.pipeInput(key, value, now);
    return this;
  }

  PipelineDriver rawResponse(String key, byte[] value) {
    rawResponses.pipeInput(key, value, now);
    return this;
  }

  byte[] encoded(FeedbackEvent f) {
    return registry.<FeedbackEvent>serializer().serialize(Topics.FEEDBACK.name(), f);
  }

  void advanceWallClock(Duration d) {
    driver.advanceWallClockTime(d);
  }

  List<PreferencePair> pairs() {
    return pairs.readValuesToList();
  }

  List<PreferenceBatch> batches() {
    var decoder = registry.deserializer(PreferenceBatch.class);
    return rawBatches().stream().map(b -> decoder.deserialize(Topics.PREFERENCE_BATCHES.name(), b)).toList();
  }

  List<TestRecord<byte[], byte[]>> deadLetters() {
    return dlq.readRecordsToList();
  }

  /** The batches' values as written (registry-framed bytes). */
  List<byte[]> rawBatches() {
    return batches.readValuesToList();
  }

  /** The value of {@code key} in state store {@code store} (null when absent). */
  Object stored(String store, String key) {
    return driver.getKeyValueStore(store).get(key);
  }

  /** The largest key + value, in bytes, written so far to any changelog topic (read once: it drains them). */
  int largestChangelogRecord() {
    int largest = 0;
    for (String topic : driver.producedTopicNames()) {
      if (topic.endsWith("-changelog")) {
        for (TestRecord<byte[], byte[]> r : driver.createOutputTopic(topic, new ByteArrayDeserializer(),
            new ByteArrayDeserializer()).readRecordsToList()) {
          int size = (r.key() == null ? 0 : r.key().length) + (r.value() == null ? 0 : r.value().length);
          largest = Math.max(largest, size);
        }
      }
    }
    return largest;
  }

  @Override
  public void close() {
    driver.close();
  }
}
