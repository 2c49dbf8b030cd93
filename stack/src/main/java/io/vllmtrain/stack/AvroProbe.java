package io.vllmtrain.stack;

import io.vllmtrain.schemas.AvroSerdes;
import io.vllmtrain.schemas.ConfigSource;
import io.vllmtrain.schemas.KafkaSettings;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import org.apache.avro.Schema;
import org.apache.avro.io.DecoderFactory;
import org.apache.avro.io.EncoderFactory;
import org.apache.avro.io.JsonEncoder;
import org.apache.avro.specific.SpecificDatumReader;
import org.apache.avro.specific.SpecificDatumWriter;
import org.apache.avro.specific.SpecificRecord;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Writes and reads records with the Java serdes, for the cross-language test (Python drives it):
 * {@code write TYPE TOPIC FILE} produces each Avro-JSON line of FILE as a TYPE record;
 * {@code read TYPE TOPIC COUNT FILE} consumes COUNT records from the start of TOPIC and writes them as Avro-JSON
 * lines. Kafka and registry come from {@code VT_KAFKA_BOOTSTRAP_SERVERS} and {@code VT_REGISTRY_URL}.
 */
public final class AvroProbe {
  private AvroProbe() {}

  public static void main(String[] args) throws Exception {
    if (args.length < 4) {
      System.err.println("usage: AvroProbe write TYPE TOPIC FILE | read TYPE TOPIC COUNT FILE");
      System.exit(2);
    }
    KafkaSettings settings = KafkaSettings.fromConfig(ConfigSource.load(null, System.getenv()));
    Schema schema = schemaOf(args[1]);
    ensureTopic(settings, args[2]);
    if (args[0].equals("write")) {
      write(settings, schema, args[2], Path.of(args[3]));
    } else {
      read(settings, schema, args[2], Integer.parseInt(args[3]), Path.of(args[4]));
    }
  }

  static Schema schemaOf(String type) throws ReflectiveOperationException {
    return (Schema) Class.forName("io.vllmtrain.events." + type).getMethod("getClassSchema").invoke(null);
  }

  private static void ensureTopic(KafkaSettings settings, String topic) throws Exception {
    try (Admin admin = Admin.create(settings.clientProperties())) {
      Set<String> names = admin.listTopics().names().get(30, TimeUnit.SECONDS);
      if (!names.contains(topic)) {
        admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all().get(30, TimeUnit.SECONDS);
      }
    }
  }

  private static void write(KafkaSettings settings, Schema schema, String topic, Path file) throws IOException {
    SpecificDatumReader<SpecificRecord> reader = new SpecificDatumReader<>(schema);
    Map<String, Object> props = settings.clientProperties();
    props.put("enable.idempotence", "true");
    try (KafkaProducer<String, SpecificRecord> producer = new KafkaProducer<>(props, new StringSerializer(),
        AvroSerdes.valueSerializer(settings))) {
      int i = 0;
      for (String line : Files.readAllLines(file)) {
        if (!line.isBlank()) {
          SpecificRecord record = reader.read(null, DecoderFactory.get().jsonDecoder(schema, line));
          producer.send(new ProducerRecord<>(topic, Integer.toString(i++), record));
        }
      }
      producer.flush();
      System.out.println("wrote " + i + " " + schema.getName() + " records to " + topic);
    }
  }

  private static void read(KafkaSettings settings, Schema schema, String topic, int count, Path file)
      throws IOException {
    Map<String, Object> props = new HashMap<>(settings.clientProperties());
    props.put("group.id", "avro-probe-" + System.nanoTime());
    props.put("auto.offset.reset", "earliest");
    SpecificDatumWriter<SpecificRecord> writer = new SpecificDatumWriter<>(schema);
    List<String> lines = new ArrayList<>();
    try (KafkaConsumer<String, SpecificRecord> consumer = new KafkaConsumer<>(props, new StringDeserializer(),
        AvroSerdes.<SpecificRecord>valueDeserializer(settings))) {
      consumer.subscribe(List.of(topic));
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
      while (lines.size() < count && System.nanoTime() < deadline) {
        for (ConsumerRecord<String, SpecificRecord> r : consumer.poll(Duration.ofMillis(500))) {
          ByteArrayOutputStream out = new ByteArrayOutputStream();
          JsonEncoder enc = EncoderFactory.get().jsonEncoder(schema, out);
          writer.write(r.value(), enc);
          enc.flush();
          lines.add(out.toString(StandardCharsets.UTF_8));
        }
      }
    }
    Files.write(file, lines);
    System.out.println("read " + lines.size() + " " + schema.getName() + " records from " + topic);
  }
}
