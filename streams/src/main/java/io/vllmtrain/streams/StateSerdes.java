package io.vllmtrain.streams;

import io.vllmtrain.events.FeedbackEvent;
import io.vllmtrain.events.PreferencePair;
import io.vllmtrain.events.Prompt;
import io.vllmtrain.events.PromptEvent;
import io.vllmtrain.events.ResponseEvent;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import org.apache.avro.message.BinaryMessageDecoder;
import org.apache.avro.message.BinaryMessageEncoder;
import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;

/**
 * Serdes of the app's own state (stores, changelogs and the cross-request repartition topic); the registry is not
 * involved. Each value starts with a format byte. Contract records inside (prompts, responses, feedback, pairs) use
 * Avro single-object encoding, which carries the schema fingerprint: a state written under another version of a
 * contract schema fails to load with a clear error instead of being misread.
 */
final class StateSerdes {
  private static final byte FORMAT = 1;

  private StateSerdes() {}

  static Serde<RequestEvents> requestEvents() {
    return serde((out, v) -> {
      out.i64(v.firstSeenMs());
      out.avro(v.prompt(), PromptEvent.getEncoder());
      out.list(v.responses(), r -> out.avro(r, ResponseEvent.getEncoder()));
    }, in -> new RequestEvents(in.i64(), in.avro(PromptEvent.getDecoder()),
        in.list(() -> in.avro(ResponseEvent.getDecoder()))));
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
        out.avro(p.event(), FeedbackEvent.getEncoder());
        out.i64(p.timestamp());
        out.str(p.source().topic());
        out.i32(p.source().partition());
        out.i64(p.source().offset());
        out.bytes(p.source().key());
        out.bytes(p.source().value());
      });
    }, in -> new FeedbackState(in.i64(), in.list(in::str),
        in.list(() -> new RatingFact(in.str(), in.str(), in.str(), in.f64())),
        in.list(in::str),
        in.list(() -> new ReceivedFeedback(in.avro(FeedbackEvent.getDecoder()), in.i64(),
            new SourceRecord(in.str(), in.i32(), in.i64(), in.bytes(), in.bytes())))));
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

  static Serde<PreferencePair> pair() {
    return serde((out, v) -> out.avro(v, PreferencePair.getEncoder()),
        in -> in.avro(PreferencePair.getDecoder()));
  }

  static Serde<BatchAssembler.OpenBatch> openBatch() {
    return serde((out, v) -> {
      out.i64(v.firstPairWallClockMs());
      out.i64(v.windowStartMs());
      out.i64(v.firstSeq());
      out.i32(v.size());
    }, in -> new BatchAssembler.OpenBatch(in.i64(), in.i64(), in.i64(), in.i32()));
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
    out.avro(r.prompt(), Prompt.getEncoder());
    out.i64(r.timestamp());
  }

  private static RatedResponse readRated(In in) {
    return new RatedResponse(in.str(), in.str(), in.str(), in.str(), in.str(), in.f64(), in.str(), in.str(),
        in.str(), in.avro(Prompt.getDecoder()), in.i64());
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
        out.data.writeByte(FORMAT);
        writer.write(out, value);
      } catch (IOException e) {
        throw new UncheckedIOException(e);
      }
      return out.buffer.toByteArray();
    }, (topic, bytes) -> {
      if (bytes == null) {
        return null;
      }
      In in = new In(bytes);
      try {
        byte format = in.data.readByte();
        if (format != FORMAT) {
          throw new SerializationException("state record of " + topic + " has format " + format + ", expected "
              + FORMAT + ": reset the app's state (kafka-streams-application-reset) after this upgrade");
        }
        return reader.read(in);
      } catch (IOException e) {
        throw new SerializationException("cannot read a state record of " + topic + ": " + e.getMessage(), e);
      }
    });
  }

  /** Length-prefixed writes; -1 stands for null. */
  private static final class Out {
    final ByteArrayOutputStream buffer = new ByteArrayOutputStream(256);
    final DataOutputStream data = new DataOutputStream(buffer);

    void i32(int v) {
      io(() -> data.writeInt(v));
    }

    void i64(long v) {
      io(() -> data.writeLong(v));
    }

    void f64(double v) {
      io(() -> data.writeDouble(v));
    }

    void bytes(byte[] v) {
      io(() -> {
        if (v == null) {
          data.writeInt(-1);
        } else {
          data.writeInt(v.length);
          data.write(v);
        }
      });
    }

    void str(String v) {
      bytes(v == null ? null : v.getBytes(StandardCharsets.UTF_8));
    }

    <T> void avro(T v, BinaryMessageEncoder<T> encoder) {
      if (v == null) {
        bytes(null);
        return;
      }
      try {
        ByteBuffer b = encoder.encode(v);
        byte[] a = new byte[b.remaining()];
        b.get(a);
        bytes(a);
      } catch (IOException e) {
        throw new UncheckedIOException(e);
      }
    }

    <T> void list(List<T> items, java.util.function.Consumer<T> each) {
      i32(items.size());
      items.forEach(each);
    }

    private interface Io {
      void run() throws IOException;
    }

    private static void io(Io op) {
      try {
        op.run();
      } catch (IOException e) {
        throw new UncheckedIOException(e);
      }
    }
  }

  private static final class In {
    final DataInputStream data;

    In(byte[] bytes) {
      data = new DataInputStream(new ByteArrayInputStream(bytes));
    }

    int i32() {
      return io(data::readInt);
    }

    long i64() {
      return io(data::readLong);
    }

    double f64() {
      return io(data::readDouble);
    }

    byte[] bytes() {
      int n = i32();
      if (n < 0) {
        return null;
      }
      byte[] b = new byte[n];
      io(() -> {
        data.readFully(b);
        return null;
      });
      return b;
    }

    String str() {
      byte[] b = bytes();
      return b == null ? null : new String(b, StandardCharsets.UTF_8);
    }

    <T> T avro(BinaryMessageDecoder<T> decoder) {
      byte[] b = bytes();
      if (b == null) {
        return null;
      }
      try {
        return decoder.decode(b);
      } catch (IOException e) {
        throw new SerializationException("state holds a contract record this version cannot read: "
            + e.getMessage(), e);
      }
    }

    <T> List<T> list(java.util.function.Supplier<T> each) {
      int n = i32();
      List<T> items = new ArrayList<>(n);
      for (int i = 0; i < n; i++) {
        items.add(each.get());
      }
      return items;
    }

    private interface Io<T> {
      T get() throws IOException;
    }

    private static <T> T io(Io<T> op) {
      try {
        return op.get();
      } catch (IOException e) {
        throw new SerializationException("truncated state record", e);
      }
    }
  }
}
