package io.vllmtrain.inference;

import io.grpc.Server;
import io.grpc.Status;
import io.grpc.inprocess.InProcessServerBuilder;
import io.grpc.stub.StreamObserver;
import io.vllmtrain.proto.v1.AdapterInfo;
import io.vllmtrain.proto.v1.Completion;
import io.vllmtrain.proto.v1.EngineGenerateChunk;
import io.vllmtrain.proto.v1.EngineGenerateRequest;
import io.vllmtrain.proto.v1.EngineGenerateResponse;
import io.vllmtrain.proto.v1.EngineHealthRequest;
import io.vllmtrain.proto.v1.EngineHealthResponse;
import io.vllmtrain.proto.v1.EngineServiceGrpc;
import io.vllmtrain.proto.v1.ListAdaptersRequest;
import io.vllmtrain.proto.v1.ListAdaptersResponse;
import io.vllmtrain.proto.v1.LoadAdapterRequest;
import io.vllmtrain.proto.v1.LoadAdapterResponse;
import io.vllmtrain.proto.v1.UnloadAdapterRequest;
import io.vllmtrain.proto.v1.UnloadAdapterResponse;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Function;

/**
 * An EngineService on an in-process gRPC server for API tests: answers at once with text that names the adapter
 * ({@code "[run/v000001] <prompt>"}), keeps the adapters it was given, and can be told to refuse loads, report not
 * ready, crash (stop its server) and come back empty (restart). The rollout acceptance tests use real engines.
 */
final class InProcessEngine extends EngineServiceGrpc.EngineServiceImplBase {
  final String name;
  final Map<String, LoadAdapterRequest> adapters = new ConcurrentHashMap<>();
  final List<String> loadLog = new CopyOnWriteArrayList<>();
  final List<String> unloadLog = new CopyOnWriteArrayList<>();
  final AtomicInteger generated = new AtomicInteger();
  final AtomicInteger refusedGenerates = new AtomicInteger();
  final AtomicInteger listCalls = new AtomicInteger();
  /** The status a LoadAdapter gets, or null to accept it. */
  volatile Function<LoadAdapterRequest, Status> loadOutcome = r -> null;
  volatile boolean ready = true;
  volatile String model = Versions.BASE_MODEL;
  /** Generate answers this much later (a stand-in for an engine's compute time). */
  volatile long delayMs;
  private static final java.util.concurrent.ScheduledExecutorService LATER =
      java.util.concurrent.Executors.newSingleThreadScheduledExecutor(r -> {
        Thread t = new Thread(r, "engine-delay");
        t.setDaemon(true);
        return t;
      });
  private Server server;

  private InProcessEngine(String name) {
    this.name = name;
  }

  static InProcessEngine start(String name) {
    InProcessEngine e = new InProcessEngine(name);
    e.serve();
    return e;
  }

  /**
   * The same engine on a real TCP port (the benchmark's echo engine), answering Generate after {@code delayMs}
   * (0 = at once); stop it with the returned server.
   */
  static Server onPort(String name, int port, long delayMs) {
    InProcessEngine engine = new InProcessEngine(name);
    engine.delayMs = delayMs;
    try {
      return io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder
          .forAddress(new java.net.InetSocketAddress("127.0.0.1", port))
          .addService(engine).build().start();
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  private void serve() {
    try {
      server = InProcessServerBuilder.forName(name).addService(this).build().start();
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /** The process died: every call fails UNAVAILABLE until {@link #restart()}. */
  void crash() {
    server.shutdownNow();
  }

  /** A new process: no adapters loaded. */
  void restart() {
    adapters.clear();
    serve();
  }

  /** A new process that someone else has loaded {@code held} into before this service sees it. */
  void restartHolding(LoadAdapterRequest... held) {
    adapters.clear();
    for (LoadAdapterRequest r : held) {
      adapters.put(r.getName(), r);
    }
    serve();
  }

  /** An adapter named {@code name} whose content (digest) is not the published one. */
  static LoadAdapterRequest otherContent(String name) {
    return LoadAdapterRequest.newBuilder().setName(name).setUri("somewhere/else").setSha256(Versions.sha(999_999))
        .build();
  }

  static String text(EngineGenerateRequest r, int index) {
    String label = r.getAdapter().isEmpty() ? "base" : r.getAdapter();
    String prompt = r.getPrompt().getText().isEmpty()
        ? r.getPrompt().getMessages(r.getPrompt().getMessagesCount() - 1).getContent()
        : r.getPrompt().getText();
    return "[" + label + "] " + prompt + " #" + index;
  }

  private boolean refuseUnloaded(EngineGenerateRequest r, StreamObserver<?> out) {
    if (!r.getAdapter().isEmpty() && !adapters.containsKey(r.getAdapter())) {
      refusedGenerates.incrementAndGet();
      out.onError(Status.NOT_FOUND.withDescription("adapter " + r.getAdapter() + " is not loaded on " + name)
          .asRuntimeException());
      return true;
    }
    return false;
  }

  @Override
  public void generate(EngineGenerateRequest r, StreamObserver<EngineGenerateResponse> out) {
    if (refuseUnloaded(r, out)) {
      return;
    }
    generated.incrementAndGet();
    EngineGenerateResponse.Builder b = EngineGenerateResponse.newBuilder()
        .setPromptTokens(7).setAdapter(r.getAdapter()).setReplica(name);
    for (int i = 0; i < r.getSampling().getN(); i++) {
      b.addCompletions(Completion.newBuilder().setIndex(i).setText(text(r, i)).setFinishReason("stop")
          .setCompletionTokens(3));
    }
    if (delayMs > 0) {
      LATER.schedule(() -> {
        out.onNext(b.build());
        out.onCompleted();
      }, delayMs, java.util.concurrent.TimeUnit.MILLISECONDS);
      return;
    }
    out.onNext(b.build());
    out.onCompleted();
  }

  @Override
  public void generateStream(EngineGenerateRequest r, StreamObserver<EngineGenerateChunk> out) {
    if (refuseUnloaded(r, out)) {
      return;
    }
    generated.incrementAndGet();
    for (int i = 0; i < r.getSampling().getN(); i++) {
      String text = text(r, i);
      int half = text.length() / 2;
      out.onNext(EngineGenerateChunk.newBuilder().setIndex(i).setTextDelta(text.substring(0, half))
          .setCompletionTokens(1).setPromptTokens(7).build());
      out.onNext(EngineGenerateChunk.newBuilder().setIndex(i).setTextDelta(text.substring(half))
          .setCompletionTokens(3).setPromptTokens(7).setFinishReason("stop").build());
    }
    out.onCompleted();
  }

  @Override
  public void loadAdapter(LoadAdapterRequest r, StreamObserver<LoadAdapterResponse> out) {
    loadLog.add(r.getName());
    if (adapters.containsKey(r.getName())) {
      out.onError(Status.ALREADY_EXISTS.withDescription(r.getName() + " is loaded").asRuntimeException());
      return;
    }
    Status refusal = loadOutcome.apply(r);
    if (refusal != null) {
      out.onError(refusal.asRuntimeException());
      return;
    }
    adapters.put(r.getName(), r);
    out.onNext(LoadAdapterResponse.newBuilder().setAdapter(info(r)).setLoadMs(1).build());
    out.onCompleted();
  }

  @Override
  public void unloadAdapter(UnloadAdapterRequest r, StreamObserver<UnloadAdapterResponse> out) {
    unloadLog.add(r.getName());
    if (adapters.remove(r.getName()) == null) {
      out.onError(Status.NOT_FOUND.withDescription(r.getName() + " is not loaded").asRuntimeException());
      return;
    }
    out.onNext(UnloadAdapterResponse.newBuilder().setUnloaded(true).build());
    out.onCompleted();
  }

  @Override
  public void listAdapters(ListAdaptersRequest r, StreamObserver<ListAdaptersResponse> out) {
    listCalls.incrementAndGet();
    ListAdaptersResponse.Builder b = ListAdaptersResponse.newBuilder();
    adapters.values().forEach(a -> b.addAdapters(info(a)));
    out.onNext(b.build());
    out.onCompleted();
  }

  @Override
  public void health(EngineHealthRequest r, StreamObserver<EngineHealthResponse> out) {
    out.onNext(EngineHealthResponse.newBuilder().setReady(ready).setModel(model).setBackend("in-process")
        .setMaxLoraRank(64).setMaxLoras(8).setReplica(name).build());
    out.onCompleted();
  }

  private static AdapterInfo info(LoadAdapterRequest r) {
    return AdapterInfo.newBuilder().setName(r.getName()).setUri(r.getUri()).setSha256(r.getSha256()).setRank(8)
        .build();
  }
}
