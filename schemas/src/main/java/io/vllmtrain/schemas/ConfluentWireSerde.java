package io.vllmtrain.schemas;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import org.apache.avro.Schema;
import org.apache.avro.io.BinaryEncoder;
import org.apache.avro.io.DecoderFactory;
import org.apache.avro.io.EncoderFactory;
import org.apache.avro.specific.SpecificData;
import org.apache.avro.specific.SpecificDatumReader;
import org.apache.avro.specific.SpecificDatumWriter;
import org.apache.avro.specific.SpecificRecord;
import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serializer;

/**
 * Avro in Confluent framing against a Confluent Schema Registry API ({@code registry.flavor=confluent}); subject
 * {@code <topic>-value}, schemas auto-registered, readers resolve the writer's schema to the generated class.
 */
final class ConfluentWireSerde {
  private ConfluentWireSerde() {}

  static final class AvroSerializer<T extends SpecificRecord> implements Serializer<T> {
    private final CcompatRegistryClient registry;

    AvroSerializer(CcompatRegistryClient registry) {
      this.registry = registry;
    }

    @Override
    public byte[] serialize(String topic, T data) {
      if (data == null) {
        return null;
      }
      Schema schema = data.getSchema();
      int id = registry.register(topic + "-value", schema);
      ByteArrayOutputStream out = new ByteArrayOutputStream(256);
      out.write(0);
      out.writeBytes(ByteBuffer.allocate(4).putInt(id).array());
      try {
        BinaryEncoder enc = EncoderFactory.get().directBinaryEncoder(out, null);
        new SpecificDatumWriter<T>(schema).write(data, enc);
        enc.flush();
      } catch (IOException | RuntimeException e) {
        throw new SerializationException(AvroSerdes.rootMessage(e), e);
      }
      return out.toByteArray();
    }
  }

  static final class AvroDeserializer<T extends SpecificRecord> implements Deserializer<T> {
    private final CcompatRegistryClient registry;

    AvroDeserializer(CcompatRegistryClient registry) {
      this.registry = registry;
    }

    @Override
    @SuppressWarnings("unchecked")
    public T deserialize(String topic, byte[] data) {
      if (data == null) {
        return null;
      }
      int id = AvroSerdes.schemaId(data);
      Schema writer = registry.byId(id);
      Schema reader = SpecificData.get().getSchema(SpecificData.get().getClass(writer));
      try {
        return (T) new SpecificDatumReader<>(writer, reader == null ? writer : reader)
            .read(null, DecoderFactory.get().binaryDecoder(data, 5, data.length - 5, null));
      } catch (IOException | RuntimeException e) {
        throw new SerializationException("cannot decode a record on " + topic + " (schema id " + id + "): "
            + AvroSerdes.rootMessage(e));
      }
    }
  }
}
