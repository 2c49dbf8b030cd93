package io.vllmtrain.inference;

import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.StreamObserver;
import io.vllmtrain.proto.v1.Completion;
import io.vllmtrain.proto.v1.EngineGenerateChunk;
import io.vllmtrain.proto.v1.EngineGenerateRequest;
import io.vllmtrain.proto.v1.EngineGenerateResponse;
import io.vllmtrain.proto.v1.GenerateChunk;
import io.vllmtrain.proto.v1.GenerateRequest;
import io.vllmtrain.proto.v1.GenerateResponse;
import io.vllmtrain.proto.v1.GeneratedResponse;
import io.vllmtrain.proto.v1.InferenceServiceGrpc;
import io.vllmtrain.proto.v1.SamplingParams;
import io.vllmtrain.schemas.Topics;
import java.time.Duration;
import java.time.Instant;
import java.util.HashSet;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * {@code InferenceService}: validates a request, assigns its id (signed for its user_id, see {@link Ids}), picks the adapter version (the caller's or the
 * active one, fixed for the whole request) and an engine replica, forwards the generation, answers with the
 * response ids and the version that served it, and records the PromptEvent and ResponseEvents. A replica that is
 * unreachable before it produced anything is taken out of service and the request goes to another one, once.
 */
final class InferenceServiceImpl extends InferenceServiceGrpc.InferenceServiceImplBase {
  private static final Logger log = LoggerFactory.getLogger(InferenceServiceImpl.class);

  private final RequestValidator validator;
  private final Ids ids;
  private final RolloutController controller;
  private final AdapterRollout rollout;
  private final EngineRouter router;
  private final EventRecorder events;
  private final Duration engineTimeout;

  InferenceServiceImpl(RequestValidator validator, Ids ids, RolloutController controller, EngineRouter router,
      EventRecorder events, Duration engineTimeout) {
    this.validator = validator;
    this.ids = ids;
    this.controller = controller;
    this.rollout = controller.rollout();
    this.router = router;
    this.events = events;
    this.engineTimeout = engineTimeout;
  }

  /** A request past validation, with everything fixed for its lifetime. */
  private record Accepted(String requestId, GenerateRequest request, SamplingParams sampling, String adapter,
      EngineGenerateRequest engineRequest, long startNanos, Instant acceptedAt) {}

  @Override
  public void generate(GenerateRequest request, StreamObserver<GenerateResponse> out) {
    Accepted a = acceptOrFail(request, out);
    if (a != null) {
      generateOn(a, out, new HashSet<>());
    }
  }

  @Override
  public void generateStream(GenerateRequest request, StreamObserver<GenerateChunk> out) {
    Accepted a = acceptOrFail(request, out);
    if (a != null) {
      streamOn(a, out, new HashSet<>());
    }
  }

  /** The accepted request, or null after answering {@code out} with the status of why it was refused. */
  private Accepted acceptOrFail(GenerateRequest request, StreamObserver<?> out) {
    try {
      return accept(request);
    } catch (RuntimeException e) {
      out.onError(Errors.toStatus(e));
      return null;
    }
  }

  private Accepted accept(GenerateRequest request) {
    if (!controller.started()) {
      throw Status.UNAVAILABLE.withDescription("starting: reading adapter versions and bringing the engines to the "
          + "active version").asRuntimeException();
    }
    SamplingParams sampling = validator.generate(request);
    String adapter = rollout.resolve(request.getAdapterVersion());
    String requestId = ids.newRequestId(request.getUserId());
    EngineGenerateRequest engineRequest = EngineGenerateRequest.newBuilder()
        .setRequestId(requestId)
        .setPrompt(request.getPrompt())
        .setSampling(sampling)
        .setAdapter(adapter)
        .build();
    return new Accepted(requestId, request, sampling, adapter, engineRequest, System.nanoTime(), Instant.now());
  }

  private Optional<EngineReplica> pick(Accepted a, Set<EngineReplica> tried, StreamObserver<?> out) {
    Optional<EngineReplica> replica = router.pick(a.adapter(), tried);
    if (replica.isEmpty()) {
      out.onError(Status.UNAVAILABLE.withDescription(tried.isEmpty()
          ? "no engine replica in service for " + RolloutController.label(a.adapter())
          : "engine replicas unreachable: " + tried.stream().map(EngineReplica::name).toList()).asRuntimeException());
    }
    return replica;
  }

  private void generateOn(Accepted a, StreamObserver<GenerateResponse> out, Set<EngineReplica> tried) {
    Optional<EngineReplica> picked = pick(a, tried, out);
    if (picked.isEmpty()) {
      return;
    }
    EngineReplica replica = picked.get();
    replica.requestStarted();
    StreamObserver<EngineGenerateResponse> engineAnswer = new StreamObserver<>() {
      final AtomicBoolean ended = new AtomicBoolean(); // a call that throws as it starts may also be closed
      EngineGenerateResponse response;

      @Override
      public void onNext(EngineGenerateResponse value) {
        response = value;
      }

      @Override
      public void onError(Throwable t) {
        if (ended.getAndSet(true)) {
          return;
        }
        replica.requestFinished();
        if (retryElsewhere(replica, t, tried)) {
          generateOn(a, out, tried);
        } else {
          out.onError(engineError(replica, t));
        }
      }

      @Override
      public void onCompleted() {
        if (ended.getAndSet(true)) {
          return;
        }
        replica.requestFinished();
        out.onNext(answer(a, replica, response));
        out.onCompleted();
      }
    };
    try {
      replica.async().withDeadlineAfter(engineTimeout.toMillis(), TimeUnit.MILLISECONDS)
          .generate(a.engineRequest(), engineAnswer);
    } catch (RuntimeException e) {
      engineAnswer.onError(callNotStarted(e));
    }
  }

  private GenerateResponse answer(Accepted a, EngineReplica replica, EngineGenerateResponse response) {
    String served = servedBy(a, replica, response.getAdapter());
    String replicaName = response.getReplica().isEmpty() ? replica.name() : response.getReplica();
    double latencyMs = (System.nanoTime() - a.startNanos()) / 1e6;
    Instant now = Instant.now();
    GenerateResponse.Builder answer = GenerateResponse.newBuilder()
        .setRequestId(a.requestId())
        .setAdapterVersion(served)
        .setBaseModel(rollout.baseModel());
    events.record(Topics.PROMPTS.name(), a.requestId(),
        Events.prompt(a.requestId(), a.request(), a.sampling(), rollout.baseModel(), served, a.acceptedAt()));
    for (Completion c : response.getCompletionsList()) {
      answer.addResponses(GeneratedResponse.newBuilder()
          .setResponseId(Ids.responseId(a.requestId(), c.getIndex()))
          .setIndex(c.getIndex())
          .setText(c.getText())
          .setFinishReason(c.getFinishReason())
          .setCompletionTokens(c.getCompletionTokens()));
      events.record(Topics.RESPONSES.name(), a.requestId(),
          Events.response(a.requestId(), c.getIndex(), c.getText(), c.getFinishReason(), response.getPromptTokens(),
              c.getCompletionTokens(), rollout.baseModel(), served, replicaName, latencyMs, now));
    }
    return answer.build();
  }

  private void streamOn(Accepted a, StreamObserver<GenerateChunk> out, Set<EngineReplica> tried) {
    Optional<EngineReplica> picked = pick(a, tried, out);
    if (picked.isEmpty()) {
      return;
    }
    EngineReplica replica = picked.get();
    int n = a.sampling().getN();
    replica.requestStarted();
    StreamObserver<EngineGenerateChunk> engineChunks = new StreamObserver<>() {
      final AtomicBoolean ended = new AtomicBoolean(); // a call that throws as it starts may also be closed
      final StringBuilder[] texts = new StringBuilder[n];
      final String[] finish = new String[n];
      final int[] tokens = new int[n];
      int promptTokens;
      boolean forwarded;

      @Override
      public void onNext(EngineGenerateChunk chunk) {
        int i = chunk.getIndex();
        if (i < 0 || i >= n) {
          log.warn("engine {} sent a chunk for index {} of a request with n={}; ignored", replica.name(), i, n);
          return;
        }
        forwarded = true;
        if (texts[i] == null) {
          texts[i] = new StringBuilder();
        }
        texts[i].append(chunk.getTextDelta());
        tokens[i] = chunk.getCompletionTokens();
        promptTokens = Math.max(promptTokens, chunk.getPromptTokens());
        GenerateChunk.Builder c = GenerateChunk.newBuilder()
            .setRequestId(a.requestId())
            .setIndex(i)
            .setTextDelta(chunk.getTextDelta())
            .setAdapterVersion(a.adapter());
        if (!chunk.getFinishReason().isEmpty()) {
          finish[i] = chunk.getFinishReason();
          c.setResponseId(Ids.responseId(a.requestId(), i)).setFinishReason(chunk.getFinishReason());
        }
        out.onNext(c.build());
      }

      @Override
      public void onError(Throwable t) {
        if (ended.getAndSet(true)) {
          return;
        }
        replica.requestFinished();
        if (!forwarded && retryElsewhere(replica, t, tried)) {
          streamOn(a, out, tried);
        } else {
          out.onError(engineError(replica, t));
        }
      }

      @Override
      public void onCompleted() {
        if (ended.getAndSet(true)) {
          return;
        }
        replica.requestFinished();
        double latencyMs = (System.nanoTime() - a.startNanos()) / 1e6;
        Instant now = Instant.now();
        events.record(Topics.PROMPTS.name(), a.requestId(), Events.prompt(a.requestId(), a.request(),
            a.sampling(), rollout.baseModel(), a.adapter(), a.acceptedAt()));
        for (int i = 0; i < n; i++) {
          if (texts[i] == null) {
            continue;
          }
          events.record(Topics.RESPONSES.name(), a.requestId(), Events.response(a.requestId(), i,
              texts[i].toString(), finish[i] == null ? "abort" : finish[i], promptTokens, tokens[i],
              rollout.baseModel(), a.adapter(), replica.name(), latencyMs, now));
        }
        out.onCompleted();
      }
    };
    try {
      replica.async().withDeadlineAfter(engineTimeout.toMillis(), TimeUnit.MILLISECONDS)
          .generateStream(a.engineRequest(), engineChunks);
    } catch (RuntimeException e) {
      engineChunks.onError(callNotStarted(e));
    }
  }

  /**
   * The transport threw as the engine call started (a channel shutting down at that moment): nothing reached the
   * engine, so it counts as unreachable, and the request may go to another replica.
   */
  private static StatusRuntimeException callNotStarted(RuntimeException e) {
    return Status.UNAVAILABLE.withDescription("the call to the engine could not start: " + e).withCause(e)
        .asRuntimeException();
  }

  /** The engine names the adapter it used; it must be the one asked for (a mismatch is an engine bug). */
  private static String servedBy(Accepted a, EngineReplica replica, String engineSays) {
    if (!engineSays.equals(a.adapter())) {
      log.warn("engine {} answered request {} with adapter '{}' instead of '{}'; labelled with the engine's",
          replica.name(), a.requestId(), engineSays, a.adapter());
    }
    return engineSays;
  }

  /** Unreachable replica, first failure of this request: take the replica out and try another. */
  private boolean retryElsewhere(EngineReplica replica, Throwable t, Set<EngineReplica> tried) {
    if (Status.fromThrowable(t).getCode() != Status.Code.UNAVAILABLE || !tried.isEmpty()) {
      return false;
    }
    tried.add(replica);
    if (replica.markDown("generate failed: " + Status.fromThrowable(t))) {
      log.warn("engine replica {} out of service: {}", replica.name(), Status.fromThrowable(t));
    }
    return true;
  }

  private static StatusRuntimeException engineError(EngineReplica replica, Throwable t) {
    Status s = Status.fromThrowable(t);
    return s.withDescription("engine " + replica.name() + ": " + (s.getDescription() == null ? s.getCode()
        : s.getDescription())).asRuntimeException();
  }
}
