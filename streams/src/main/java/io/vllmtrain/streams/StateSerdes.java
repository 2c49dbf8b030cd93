package io.vllmtrain.streams;

import io.vllmtrain.events.FeedbackEvent;
import io.vllmtrain.events.Prompt;
import io.vllmtrain.events.PromptEvent;
import io.vllmtrain.events.ResponseEvent;
import java.io.IOException;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import org.apache.avro.Schema;
import org.apache.avro.SchemaNormalization;
import org.apache.avro.io.BinaryDecoder;
import org.apache.avro.io.BinaryEncoder;
import org.apache.avro.io.DecoderFactory;
import org.apache.avro.io.EncoderFactory;
import org.apache.avro.specific.SpecificData;
import org.apache.avro.specific.SpecificDatumReader;
import org.apache.avro.specific.SpecificDatumWriter;
import org.apache.avro.specific.SpecificRecordBase;
import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;

/**
 * Serdes of the app's own state (stores, changelogs and the cross-request repartition topic); the registry is not
 * involved. Each value starts with a format byte. Contract records inside (prompts, responses, feedback, pairs) are
 * Avro binary preceded by their schema's fingerprint: a state written under another version of a contract schema
 * fails to load with a clear error instead of being misread.
 *
 * <p>Waiting feedback keeps its original record bytes (for its dead letter), which are usually the framing plus
 * the very Avro bytes stored for the event: then only the 5 framing bytes are stored ({@link #SAME_AS_EVENT}), so
 * that the state value of a large edit is not twice its size.
 */
final class StateSerdes {
  private static final byte FORMAT = 1;
  /** Length marker of original bytes stored as the framing only: framing + the event's Avro bytes just before. */
  private static final int SAME_AS_EVENT = -2;
  private static final int FRAMING = 5;

  private StateSerdes() {}

  static Serde<RequestEvents> requestEvents() {
    return serde((out, v) -> {
      out.i64(v.firstSeenMs());
      out.avro(v.prompt(), PromptEvent.class, PromptEvent.SCHEMA$);
      out.list(v.responses(), r -> out.avro(r, ResponseEvent.class, ResponseEvent.SCHEMA$));
    }, in -> new RequestEvents(in.i64(), in.avro(PromptEvent.class, PromptEvent.SCHEMA$),
        in.list(() -> in.avro(ResponseEvent.class, ResponseEvent.SCHEMA$))));
  }

  static Serde<FeedbackState> feedbackState() {
    return serde((out, v) -> {
      out.i64(v.firstSeenMs());
      out.list(v.seenIds(), out::str);
      out.list(v.ratings(), r -> {
        out.str(r.feedbackId());
        out.str(r.userId());
        out.str(r.responseId());
        out.f64(r.rating());
      });
      out.list(v.emittedRatingPairs(), out::str);
      out.list(v.pending(), p -> {
        int body = out.avro(p.event(), FeedbackEvent.class, FeedbackEvent.SCHEMA$);
        int bodyEnd = out.size;
        out.i64(p.timestamp());
        out.str(p.source().topic());
        out.i32(p.source().partition());
        out.i64(p.source().offset());
        out.bytes(p.source().key());
        out.original(p.source().value(), body, bodyEnd);
      });
    }, in -> new FeedbackState(in.i64(), in.list(in::str),
        in.list(() -> new RatingFact(in.str(), in.str(), in.str(), in.f64())),
        in.list(in::str),
        in.list(() -> new ReceivedFeedback(in.avro(FeedbackEvent.class, FeedbackEvent.SCHEMA$), in.i64(),
            new SourceRecord(in.str(), in.i32(), in.i64(), in.bytes(), in.original())))));
  }

  static Serde<RatedResponse> ratedResponse() {
    return serde(StateSerdes::writeRated, StateSerdes::readRated);
  }

  static Serde<CandidateSet> candidateSet() {
    return serde((out, v) -> {
      out.list(v.candidates(), c -> writeRated(out, c));
      out.list(v.emittedPairs(), out::str);
    }, in -> new CandidateSet(in.list(() -> readRated(in)), in.list(in::str)));
  }

  static Serde<BatchAssembler.OpenBatch> openBatch() {
    return serde((out, v) -> {
      out.i64(v.firstPairWallClockMs());
      out.i64(v.windowStartMs());
    }, in -> new BatchAssembler.OpenBatch(in.i64(), in.i64()));
  }

  private static void writeRated(Out out, RatedResponse r) {
    out.str(r.promptKey());
    out.str(r.requestId());
    out.str(r.responseId());
    out.str(r.feedbackId());
    out.str(r.userId());
    out.f64(r.rating());
    out.str(r.text());
    out.str(r.adapterVersion());
    out.str(r.baseModel());
    out.avro(r.prompt(), Prompt.class, Prompt.SCHEMA$);
    out.i64(r.timestamp());
  }

  private static RatedResponse readRated(In in) {
    return new RatedResponse(in.str(), in.str(), in.str(), in.str(), in.str(), in.f64(), in.str(), in.str(),
        in.str(), in.avro(Prompt.class, Prompt.SCHEMA$), in.i64());
  }

  private interface Writer<T> {
    void write(Out out, T value) throws IOException;
  }

  private interface Reader<T> {
    T read(In in) throws IOException;
  }

  private static <T> Serde<T> serde(Writer<T> writer, Reader<T> reader) {
    return Serdes.serdeFrom((topic, value) -> {
      if (value == null) {
        return null;
      }
      Out out = new Out();
      try {
        out.write(FORMAT);
        writer.write(out, value);
      } catch (IOException e) {
        throw new UncheckedIOException(e);
      }
      return out.toByteArray();
    }, (topic, bytes) -> {
      if (bytes == null) {
        return null;
      }
      In in = new In(bytes);
      if (bytes.length == 0 || bytes[0] != FORMAT) {
        throw new SerializationException("state record of " + topic + " has format "
            + (bytes.length == 0 ? "(empty)" : bytes[0]) + ", expected " + FORMAT
            + ": reset the app's state (kafka-streams-application-reset) after this upgrade");
      }
      in.pos = 1;
      try {
        return reader.read(in);
      } catch (IOException | RuntimeException e) {
        throw new SerializationException("cannot read a state record of " + topic + ": " + e.getMessage(), e);
      }
    });
  }

  /**
   * A contract record class's Avro binary codec for state: its schema's 64-bit parsing fingerprint, then the
   * record. Reading checks the fingerprint, so state written under another version of the schema fails loudly.
   */
  private static final class AvroCodec<T extends SpecificRecordBase> {
    private static final Map<Class<?>, AvroCodec<?>> ALL = new ConcurrentHashMap<>();
    final long fingerprint;
    final SpecificDatumWriter<T> writer;
    final SpecificDatumReader<T> reader;
    final String name;

    private AvroCodec(Schema schema, SpecificData model) {
      fingerprint = SchemaNormalization.parsingFingerprint64(schema);
      writer = new SpecificDatumWriter<>(schema, model);
      reader = new SpecificDatumReader<>(schema, schema, model);
      name = schema.getName();
    }

    @SuppressWarnings("unchecked")
    static <T extends SpecificRecordBase> AvroCodec<T> of(Class<T> type, Schema schema) {
      return (AvroCodec<T>) ALL.computeIfAbsent(type, t -> new AvroCodec<T>(schema, SpecificData.getForClass(t)));
    }
  }

  /** Writes into a growable array (unsynchronized, unlike ByteArrayOutputStream); lengths and -1 for null. */
  private static final class Out extends OutputStream {
    private static final ThreadLocal<BinaryEncoder> ENCODER = new ThreadLocal<>();
    private byte[] buf = new byte[512];
    private int size;

    private void ensure(int extra) {
      if (size + extra > buf.length) {
        buf = Arrays.copyOf(buf, Math.max(buf.length * 2, size + extra));
      }
    }

    @Override
    public void write(int b) {
      ensure(1);
      buf[size++] = (byte) b;
    }

    @Override
    public void write(byte[] b, int off, int len) {
      ensure(len);
      System.arraycopy(b, off, buf, size, len);
      size += len;
    }

    byte[] toByteArray() {
      return Arrays.copyOf(buf, size);
    }

    void i32(int v) {
      ensure(4);
      buf[size++] = (byte) (v >>> 24);
      buf[size++] = (byte) (v >>> 16);
      buf[size++] = (byte) (v >>> 8);
      buf[size++] = (byte) v;
    }

    void i64(long v) {
      i32((int) (v >>> 32));
      i32((int) v);
    }

    void f64(double v) {
      i64(Double.doubleToLongBits(v));
    }

    void bytes(byte[] v) {
      if (v == null) {
        i32(-1);
      } else {
        i32(v.length);
        write(v, 0, v.length);
      }
    }

    void str(String v) {
      bytes(v == null ? null : v.getBytes(StandardCharsets.UTF_8));
    }

    /**
     * Original record bytes that follow an Avro record written at {@code [body, bodyEnd)}: the framing alone when
     * they are that framing plus those very bytes.
     */
    void original(byte[] value, int body, int bodyEnd) {
      if (body >= 0 && value != null && value.length == FRAMING + bodyEnd - body && value.length > FRAMING
          && value[0] == 0 && Arrays.equals(buf, body, bodyEnd, value, FRAMING, value.length)) {
        i32(SAME_AS_EVENT);
        write(value, 0, FRAMING);
      } else {
        bytes(value);
      }
    }

    /** Writes the record; returns where its Avro bytes start (they end at {@link #size}); -1 for null. */
    <T extends SpecificRecordBase> int avro(T v, Class<T> type, Schema schema) {
      if (v == null) {
        i32(-1);
        return -1;
      }
      AvroCodec<T> codec = AvroCodec.of(type, schema);
      int lengthAt = size;
      i32(0); // patched below
      i64(codec.fingerprint);
      try {
        BinaryEncoder enc = EncoderFactory.get().directBinaryEncoder(this, ENCODER.get());
        ENCODER.set(enc);
        codec.writer.write(v, enc);
        enc.flush();
      } catch (IOException e) {
        throw new UncheckedIOException(e);
      }
      int length = size - lengthAt - 4;
      buf[lengthAt] = (byte) (length >>> 24);
      buf[lengthAt + 1] = (byte) (length >>> 16);
      buf[lengthAt + 2] = (byte) (length >>> 8);
      buf[lengthAt + 3] = (byte) length;
      return lengthAt + 4 + 8;
    }

    <T> void list(List<T> items, java.util.function.Consumer<T> each) {
      i32(items.size());
      items.forEach(each);
    }
  }

  private static final class In {
    private static final ThreadLocal<BinaryDecoder> DECODER = new ThreadLocal<>();
    final byte[] buf;
    int pos;
    private int lastBody; // where the Avro bytes of the last record read start and end
    private int lastBodyEnd;

    In(byte[] bytes) {
      buf = bytes;
    }

    private void need(int n) {
      if (pos + n > buf.length) {
        throw new SerializationException("truncated state record");
      }
    }

    int i32() {
      need(4);
      int v = ((buf[pos] & 0xff) << 24) | ((buf[pos + 1] & 0xff) << 16) | ((buf[pos + 2] & 0xff) << 8)
          | (buf[pos + 3] & 0xff);
      pos += 4;
      return v;
    }

    long i64() {
      return ((long) i32() << 32) | (i32() & 0xffffffffL);
    }

    double f64() {
      return Double.longBitsToDouble(i64());
    }

    byte[] bytes() {
      int n = i32();
      if (n < 0) {
        return null;
      }
      need(n);
      byte[] b = Arrays.copyOfRange(buf, pos, pos + n);
      pos += n;
      return b;
    }

    String str() {
      int n = i32();
      if (n < 0) {
        return null;
      }
      need(n);
      String s = new String(buf, pos, n, StandardCharsets.UTF_8);
      pos += n;
      return s;
    }

    /** Reads what {@link Out#original} wrote, after the Avro record it may refer to. */
    byte[] original() {
      int start = pos;
      if (i32() != SAME_AS_EVENT) {
        pos = start;
        return bytes();
      }
      need(FRAMING);
      byte[] b = new byte[FRAMING + lastBodyEnd - lastBody];
      System.arraycopy(buf, pos, b, 0, FRAMING);
      System.arraycopy(buf, lastBody, b, FRAMING, lastBodyEnd - lastBody);
      pos += FRAMING;
      return b;
    }

    <T extends SpecificRecordBase> T avro(Class<T> type, Schema schema) {
      int n = i32();
      if (n < 0) {
        return null;
      }
      need(n);
      AvroCodec<T> codec = AvroCodec.of(type, schema);
      int end = pos + n;
      long fingerprint = i64();
      lastBody = pos;
      lastBodyEnd = end;
      if (fingerprint != codec.fingerprint) {
        throw new SerializationException("state holds a " + codec.name + " written under another version of its "
            + "schema (fingerprint " + Long.toHexString(fingerprint) + "); reset the app's state after this upgrade");
      }
      try {
        BinaryDecoder dec = DecoderFactory.get().binaryDecoder(buf, pos, end - pos, DECODER.get());
        DECODER.set(dec);
        T value = codec.reader.read(null, dec);
        pos = end;
        return value;
      } catch (IOException e) {
        throw new SerializationException("cannot read a " + codec.name + " from state: " + e.getMessage(), e);
      }
    }

    <T> List<T> list(java.util.function.Supplier<T> each) {
      int n = i32();
      List<T> items = new ArrayList<>(Math.min(n, 1024));
      for (int i = 0; i < n; i++) {
        items.add(each.get());
      }
      return items;
    }
  }
}
