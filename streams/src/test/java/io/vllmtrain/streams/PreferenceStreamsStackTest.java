package io.vllmtrain.streams;

import static io.vllmtrain.streams.Events.edit;
import static io.vllmtrain.streams.Events.pairwise;
import static io.vllmtrain.streams.Events.prompt;
import static io.vllmtrain.streams.Events.rating;
import static io.vllmtrain.streams.Events.response;
import static io.vllmtrain.streams.Events.thumbsDown;
import static io.vllmtrain.streams.Events.thumbsUp;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.vllmtrain.events.FeedbackEvent;
import io.vllmtrain.events.PairSource;
import io.vllmtrain.events.PreferenceBatch;
import io.vllmtrain.events.PreferencePair;
import io.vllmtrain.events.PromptEvent;
import io.vllmtrain.events.ResponseEvent;
import io.vllmtrain.schemas.AvroSerdes;
import io.vllmtrain.schemas.KafkaSettings;
import io.vllmtrain.schemas.Topics;
import io.vllmtrain.stack.EmbeddedStack;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.function.BooleanSupplier;
import org.apache.avro.specific.SpecificRecord;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The app against the real broker and registry ({@link EmbeddedStack}), with exactly-once processing: a realistic
 * mix of events goes in, the app is killed with SIGKILL halfway through and started again on the same state
 * directory, and every expected pair comes out exactly once, in exactly one batch; bad records land in the DLQ
 * exactly once.
 */
class PreferenceStreamsStackTest {
  private static final int REQUESTS = 80;

  @TempDir
  Path dir;

  /** The events of the run, and the ids of the pairs they must yield. */
  private static final class Mix {
    final String run;
    final List<PromptEvent> prompts = new ArrayList<>();
    final List<ResponseEvent> responses = new ArrayList<>();
    final List<ResponseEvent> lateResponses = new ArrayList<>();
    final List<FeedbackEvent> feedback = new ArrayList<>();
    final List<String> expectedPairIds = new ArrayList<>();

    Mix(String run) {
      this.run = run;
      for (int i = 0; i < REQUESTS; i++) {
        String q = run + "-q" + i;
        String a = q + "-a";
        String b = q + "-b";
        // Requests 8k+1 and 8k+5 ask the same question (modulo case and spacing): their ratings also pair across.
        String text = i % 4 == 1 ? run + " Question " + (i / 8) : run + " prompt " + i;
        prompts.add(prompt(q, i % 8 == 5 ? "  " + text.toUpperCase() + " " : text));
        ResponseEvent ra = response(q, a, "answer A to " + i, "it/v00000" + (i % 3 + 1));
        ResponseEvent rb = response(q, b, "answer B to " + i, null);
        // Some feedback arrives before the responses it refers to.
        (i % 8 == 0 ? lateResponses : responses).addAll(List.of(ra, rb));
        switch (i % 4) {
          case 0 -> {
            feedback.add(pairwise(q + "-f", q, a, b));
            expect(PairSource.PAIRWISE, a, b, q + "-f");
          }
          case 1 -> {
            feedback.add(thumbsUp(q + "-fa", q, "user" + i, a));
            feedback.add(thumbsDown(q + "-fb", q, "user" + i, b));
            expect(PairSource.RATING, a, b, q + "-fa", q + "-fb");
            if (i % 8 == 1) {
              String p = run + "-q" + (i + 4);
              expect(PairSource.RATING_CROSS_REQUEST, a, p + "-b", q + "-fa", p + "-fb");
              expect(PairSource.RATING_CROSS_REQUEST, p + "-a", b, p + "-fa", q + "-fb");
            }
          }
          case 2 -> {
            feedback.add(edit(q + "-f", q, a, "a better answer to " + i));
            expect(PairSource.EDIT, null, a, q + "-f");
          }
          default -> {
            // Five stars as ratings: 4 stars over 3 (gap 0.25); the later 1-star re-rating adds no second pair.
            feedback.add(rating(q + "-fa", q, "user" + i, a, 0.75));
            feedback.add(rating(q + "-fb", q, "user" + i, b, 0.5));
            feedback.add(rating(q + "-fb2", q, "user" + i, b, 0.0));
            expect(PairSource.RATING, a, b, q + "-fa", q + "-fb");
          }
        }
        if (i % 5 == 0) {
          feedback.add(feedback.get(feedback.size() - 1)); // a producer retry: same feedback id
        }
      }
    }

    private void expect(PairSource source, String chosen, String rejected, String... feedbackIds) {
      expectedPairIds.add(PreferencePairer.pairId(source, chosen, rejected, List.of(feedbackIds)));
    }
  }

  @Test
  void everyExpectedPairComesOutExactlyOnceAcrossACrashAndRestartOfTheApp() throws Exception {
    EmbeddedStack stack = EmbeddedStack.shared();
    KafkaSettings settings = stack.settings();
    Mix mix = new Mix("it" + UUID.randomUUID().toString().substring(0, 8));
    int metricsPort;
    try (java.net.ServerSocket free = new java.net.ServerSocket(0)) {
      metricsPort = free.getLocalPort();
    }
    Path config = writeConfig(settings, mix.run, metricsPort);

    Map<String, Object> producerProps = new HashMap<>(settings.clientProperties());
    producerProps.put("linger.ms", "5");
    try (KafkaProducer<String, SpecificRecord> events =
             new KafkaProducer<>(producerProps, new StringSerializer(), AvroSerdes.valueSerializer(settings));
         KafkaProducer<String, byte[]> raw =
             new KafkaProducer<>(producerProps, new StringSerializer(), new ByteArraySerializer());
         TopicReader<PreferencePair> pairReader = TopicReader.avro(settings, Topics.PREFERENCE_PAIRS.name());
         TopicReader<PreferenceBatch> batchReader = TopicReader.avro(settings, Topics.PREFERENCE_BATCHES.name());
         TopicReader<byte[]> dlqReader = TopicReader.bytes(settings, Topics.DLQ.name())) {
      List<String> pairIds = Collections.synchronizedList(new ArrayList<>());
      Runnable readPairs = () -> pairReader.poll(Duration.ofMillis(200), r -> {
        if (r.value().getRequestId().startsWith(mix.run)) {
          pairIds.add(r.value().getPairId());
        }
      });

      mix.prompts.forEach(p -> events.send(new ProducerRecord<>(Topics.PROMPTS.name(), p.getRequestId(), p)));
      mix.responses.forEach(r -> events.send(new ProducerRecord<>(Topics.RESPONSES.name(), r.getRequestId(), r)));
      raw.send(new ProducerRecord<>(Topics.FEEDBACK.name(), mix.run + "-bad", "not avro".getBytes(StandardCharsets.UTF_8)));
      FeedbackEvent noResponseId = FeedbackEvent.newBuilder(thumbsUp(mix.run + "-fx", mix.run + "-q1", "u", "x"))
          .setResponseId(null).build();
      events.send(new ProducerRecord<>(Topics.FEEDBACK.name(), noResponseId.getRequestId(), noResponseId));
      events.flush();

      // Feed half of the feedback, and kill the first instance mid-stream once it has visibly written pairs.
      int sent = 0;
      AppProcess first = AppProcess.start(config, dir.resolve("first.log"));
      try {
        int half = mix.feedback.size() / 2;
        while (sent < half) {
          FeedbackEvent f = mix.feedback.get(sent++);
          events.send(new ProducerRecord<>(Topics.FEEDBACK.name(), f.getRequestId(), f));
          if (sent % 10 == 0) {
            events.flush();
            readPairs.run();
          }
        }
        events.flush();
        await("first pairs from the first instance", Duration.ofSeconds(90), () -> {
          readPairs.run();
          return pairIds.size() >= 5;
        }, first);
      } finally {
        first.kill();
      }
      int seenBeforeCrash = pairIds.size();
      System.out.printf("killed the first instance after %d of %d feedback events, %d of %d pairs visible%n",
          sent, mix.feedback.size(), seenBeforeCrash, mix.expectedPairIds.size());

      for (FeedbackEvent f : mix.feedback.subList(sent, mix.feedback.size())) {
        events.send(new ProducerRecord<>(Topics.FEEDBACK.name(), f.getRequestId(), f));
      }
      mix.lateResponses.forEach(r -> events.send(new ProducerRecord<>(Topics.RESPONSES.name(), r.getRequestId(), r)));
      events.flush();

      try (AppProcess second = AppProcess.start(config, dir.resolve("second.log"))) {
        await("every expected pair", Duration.ofSeconds(120), () -> {
          readPairs.run();
          return pairIds.size() >= mix.expectedPairIds.size();
        }, second);
        long quiet = System.nanoTime() + Duration.ofSeconds(3).toNanos();
        while (System.nanoTime() < quiet) {
          readPairs.run(); // a duplicate would show up here
        }
        assertEquals(sorted(mix.expectedPairIds), sorted(pairIds), "pairs (seen before the crash: "
            + seenBeforeCrash + ")");

        List<String> batched = new ArrayList<>();
        await("every pair in a batch", Duration.ofSeconds(30), () -> {
          batchReader.poll(Duration.ofMillis(200), r -> r.value().getPairs().stream()
              .filter(p -> p.getRequestId().startsWith(mix.run)).forEach(p -> batched.add(p.getPairId())));
          return batched.size() >= mix.expectedPairIds.size();
        }, second);
        assertEquals(sorted(mix.expectedPairIds), sorted(batched), "each pair in exactly one batch");

        List<String> deadKeys = new ArrayList<>();
        await("dead letters", Duration.ofSeconds(10), () -> {
          dlqReader.poll(Duration.ofMillis(200), r -> {
            String key = r.key() == null ? "" : new String(r.key(), StandardCharsets.UTF_8);
            if (key.startsWith(mix.run)) {
              String reason = new String(r.headers().lastHeader(Topics.DLQ_REASON).value(), StandardCharsets.UTF_8);
              deadKeys.add(key + " " + reason.substring(0, reason.indexOf(':')));
            }
          });
          return deadKeys.size() >= 2;
        }, second);
        Thread.sleep(500);
        dlqReader.poll(Duration.ofMillis(500), r -> {
          if (r.key() != null && new String(r.key(), StandardCharsets.UTF_8).startsWith(mix.run)) {
            deadKeys.add("unexpected extra dead letter");
          }
        });
        assertEquals(List.of(mix.run + "-bad UNDECODABLE", mix.run + "-q1 INVALID"), sorted(deadKeys));

        for (AppProcess app : List.of(first, second)) {
          assertFalse(app.log().contains("Exception in thread \"main\""), app.logTail());
        }

        String metrics = scrape(metricsPort);
        assertTrue(metrics.contains("vt_streams_pairs_total{source=\"PAIRWISE\"}"), metrics);
        assertTrue(metrics.contains("vt_streams_records_in_total{topic=\"llm.feedback\"}"), metrics);
        assertTrue(metrics.contains("vt_streams_consumer_lag{partition=\"0\",topic=\"llm.feedback\"}"), metrics);
      }
    }
  }

  private static String scrape(int port) throws Exception {
    var request = java.net.http.HttpRequest.newBuilder(java.net.URI.create("http://127.0.0.1:" + port + "/metrics"))
        .build();
    return java.net.http.HttpClient.newHttpClient()
        .send(request, java.net.http.HttpResponse.BodyHandlers.ofString()).body();
  }

  private Path writeConfig(KafkaSettings settings, String run, int metricsPort) throws Exception {
    Path file = dir.resolve("streams.properties");
    StringBuilder s = new StringBuilder();
    s.append("kafka.bootstrap.servers=").append(settings.bootstrapServers()).append('\n');
    s.append("registry.url=").append(settings.registryUrl()).append('\n');
    if (settings.confluentRegistry()) {
      s.append("registry.flavor=confluent\n");
    }
    s.append("streams.application.id=vt-streams-").append(run).append('\n');
    s.append("streams.state.dir=").append(dir.resolve("state")).append('\n');
    s.append("streams.batch.size=8\nstreams.batch.max.wait=2s\nstreams.metrics.port=").append(metricsPort)
        .append('\n');
    // A killed member holds its partitions until its session times out: keep that short for the restart.
    s.append("kafka.session.timeout.ms=6000\nkafka.heartbeat.interval.ms=1000\n");
    Files.writeString(file, s.toString());
    return file;
  }

  private static List<String> sorted(List<String> ids) {
    List<String> copy = new ArrayList<>(ids);
    Collections.sort(copy);
    return copy;
  }

  private static void await(String what, Duration timeout, BooleanSupplier done, AppProcess app)
      throws InterruptedException {
    long deadline = System.nanoTime() + timeout.toNanos();
    while (!done.getAsBoolean()) {
      if (!app.alive()) {
        fail("the app exited while waiting for " + what + ":\n" + app.logTail());
      }
      if (System.nanoTime() > deadline) {
        fail("timed out after " + timeout + " waiting for " + what + "; app log:\n" + app.logTail());
      }
      Thread.sleep(50);
    }
  }
}
