package io.vllmtrain.inference;

import io.grpc.InsecureChannelCredentials;
import io.grpc.InsecureServerCredentials;
import io.grpc.ManagedChannel;
import io.grpc.Server;
import io.grpc.ServerBuilder;
import io.grpc.ServerCredentials;
import io.grpc.ServerInterceptors;
import io.grpc.TlsServerCredentials;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.grpc.netty.shaded.io.grpc.netty.GrpcSslContexts;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import io.grpc.netty.shaded.io.netty.channel.EventLoopGroup;
import io.grpc.netty.shaded.io.netty.channel.epoll.Epoll;
import io.grpc.netty.shaded.io.netty.channel.epoll.EpollEventLoopGroup;
import io.grpc.netty.shaded.io.netty.channel.epoll.EpollServerSocketChannel;
import io.grpc.netty.shaded.io.netty.channel.epoll.EpollSocketChannel;
import io.grpc.netty.shaded.io.netty.channel.nio.NioEventLoopGroup;
import io.grpc.netty.shaded.io.netty.channel.socket.nio.NioServerSocketChannel;
import io.grpc.netty.shaded.io.netty.channel.socket.nio.NioSocketChannel;
import io.grpc.protobuf.services.HealthStatusManager;
import io.grpc.protobuf.services.ProtoReflectionServiceV1;
import io.prometheus.metrics.exporter.httpserver.HTTPServer;
import io.vllmtrain.events.AdapterVersion;
import io.vllmtrain.proto.v1.AdapterServiceGrpc;
import io.vllmtrain.proto.v1.FeedbackServiceGrpc;
import io.vllmtrain.proto.v1.InferenceServiceGrpc;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.TimeUnit;
import java.util.function.Function;
import org.apache.kafka.clients.consumer.Consumer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The inference service as a process: wires the parts, serves {@code InferenceService}, {@code FeedbackService},
 * {@code AdapterService}, gRPC health and reflection on one port, Prometheus metrics on another, and shuts down
 * gracefully (stop taking calls, let the ones in flight finish, flush the event buffer, close the engines).
 * The services themselves know nothing of this bootstrap.
 */
public final class InferenceServer {
  private static final Logger log = LoggerFactory.getLogger(InferenceServer.class);
  private static final List<String> SERVICES = List.of(InferenceServiceGrpc.SERVICE_NAME,
      FeedbackServiceGrpc.SERVICE_NAME, AdapterServiceGrpc.SERVICE_NAME);

  private final InferenceConfig config;
  private final Server server;
  private final List<ManagedChannel> engineChannels = new ArrayList<>();
  private final EngineRouter router;
  private final RolloutController controller;
  private final EngineHealthMonitor monitor;
  private final EventRecorder events;
  private final Optional<AdapterVersionFollower> follower;
  private final InferenceMetrics metrics = new InferenceMetrics();
  private final HealthStatusManager health = new HealthStatusManager();
  private HTTPServer metricsServer;
  private Runnable afterStop = () -> {};

  /** The production wiring: Netty on {@code server.host:server.port} (TLS when configured), Kafka for events. */
  public static InferenceServer create(InferenceConfig config) {
    return create(config, EventRecorder.forKafka(config.kafka(), config.eventBufferCapacity(),
        config.eventBufferBytes()));
  }

  /** The production wiring with another event recorder (the benchmark isolates Kafka's share with it). */
  static InferenceServer create(InferenceConfig config, EventRecorder events) {
    // One group of network threads for the public port and the engine connections, and every handler and engine
    // callback run on them (all are non-blocking: validation, routing, queueing an event; rollout work has its own
    // threads). A request and its engine call then mostly stay on one thread instead of crossing four, which is
    // most of the latency the service adds on a busy machine.
    // Native epoll where Netty has it (Linux): the service's own cost per request is a fifth lower than over the JDK
    // selector (inference/bench/RESULTS.md); NIO elsewhere.
    boolean epoll = Epoll.isAvailable();
    ThreadFactory threads = r -> {
      Thread t = new Thread(r, "network");
      t.setDaemon(true);
      return t;
    };
    EventLoopGroup network = epoll
        ? new EpollEventLoopGroup(config.eventLoopThreads(), threads)
        : new NioEventLoopGroup(config.eventLoopThreads(), threads);
    ServerBuilder<?> builder = NettyServerBuilder.forAddress(new InetSocketAddress(config.host(), config.port()),
            serverCredentials(config))
        .bossEventLoopGroup(network).workerEventLoopGroup(network)
        .channelType(epoll ? EpollServerSocketChannel.class : NioServerSocketChannel.class)
        .directExecutor();
    InferenceServer server = new InferenceServer(builder, config,
        address -> NettyChannelBuilder.forTarget(address, InsecureChannelCredentials.create())
            .eventLoopGroup(network).channelType(epoll ? EpollSocketChannel.class : NioSocketChannel.class)
            .directExecutor().build(),
        events,
        AdapterVersionFollower.kafkaConsumer(config.kafka()));
    server.afterStop = () -> network.shutdownGracefully(0, 5, TimeUnit.SECONDS);
    return server;
  }

  /**
   * Wires the service on any server builder (tests pass an in-process one) with channels to the engines
   * ({@code engineChannels} maps each configured address to a channel) and the given event recorder. Adapter
   * versions come from {@code versions}; with null, the caller feeds them to {@link #controller()}.
   */
  public InferenceServer(ServerBuilder<?> serverBuilder, InferenceConfig config,
      Function<String, ManagedChannel> engineChannels, EventRecorder events,
      Consumer<String, AdapterVersion> versions) {
    this.config = config;
    this.events = events;
    List<EngineReplica> replicas = new ArrayList<>();
    for (String address : config.engines()) {
      ManagedChannel channel = engineChannels.apply(address);
      this.engineChannels.add(channel);
      replicas.add(new EngineReplica(address, channel));
    }
    this.router = new EngineRouter(replicas);
    AdapterRollout rollout = new AdapterRollout(config.baseModel(), config.keepVersions(), config.trustedRuns());
    if (config.startPaused()) {
      rollout.pause();
    }
    this.controller = new RolloutController(rollout, router, metrics, config.loadTimeout(), config.loadAttempts(),
        config.startPinned());
    controller.onServingChange(this::updateHealth);
    this.monitor = new EngineHealthMonitor(router, controller, config.baseModel(), config.engineHealthInterval(),
        this::updateHealth);
    this.follower = Optional.ofNullable(versions).map(c -> new AdapterVersionFollower(c, controller, metrics,
        config.rolloutSigningKey()));
    if (config.rolloutSigningKey().isEmpty() && config.trustedRuns().isEmpty()) {
      log.info("rollout.signing.key and rollout.trusted.runs are not set: every record on {} is trusted; restrict "
          + "who may write to it (Kafka ACLs)", io.vllmtrain.schemas.Topics.ADAPTER_VERSIONS.name());
    }
    metrics.registerRollout(rollout);
    metrics.registerEngines(router);
    metrics.registerEvents(events);

    Ids ids = new Ids(config.idsSigningKey().map(Secret::bytes).orElseGet(() -> {
      log.info("ids.signing.key is not set: request ids are signed with a random key of this process, so feedback "
          + "on requests served before a restart or by another instance is refused (PERMISSION_DENIED)");
      return Ids.randomKey();
    }));
    RequestValidator validator = new RequestValidator(config.maxN(), config.defaultMaxTokens(),
        config.maxTokensLimit(), config.limits(), ids);
    MetricsInterceptor counted = new MetricsInterceptor(metrics);
    this.server = serverBuilder
        .addService(ServerInterceptors.intercept(
            new InferenceServiceImpl(validator, ids, controller, router, events, config.engineRequestTimeout()),
            counted))
        .addService(ServerInterceptors.intercept(new FeedbackServiceImpl(validator, events, config.feedbackAckTimeout()), counted))
        .addService(ServerInterceptors.intercept(new AdapterServiceImpl(controller), counted))
        .addService(health.getHealthService())
        .addService(ProtoReflectionServiceV1.newInstance())
        .build();
    updateHealth();
  }

  static ServerCredentials serverCredentials(InferenceConfig config) {
    if (config.tls().isEmpty()) {
      return InsecureServerCredentials.create();
    }
    InferenceConfig.Tls tls = config.tls().get();
    try {
      // Parse everything now (the credentials alone only hold bytes), so a bad file stops the start.
      var check = GrpcSslContexts.forServer(tls.certChain().toFile(), tls.privateKey().toFile());
      tls.clientCa().ifPresent(ca -> check.trustManager(ca.toFile()));
      check.build();
      TlsServerCredentials.Builder b = TlsServerCredentials.newBuilder()
          .keyManager(tls.certChain().toFile(), tls.privateKey().toFile());
      if (tls.clientCa().isPresent()) {
        b.trustManager(tls.clientCa().get().toFile()).clientAuth(TlsServerCredentials.ClientAuth.REQUIRE);
      }
      return b.build();
    } catch (IOException | RuntimeException e) {
      throw new IllegalArgumentException("cannot use the TLS files (server.tls.cert " + tls.certChain()
          + ", server.tls.key " + tls.privateKey() + tls.clientCa().map(p -> ", server.tls.client.ca " + p).orElse("")
          + "): " + e.getMessage() + " (the key must be PEM PKCS#8, the certificates PEM)", e);
    }
  }

  public InferenceServer start() throws IOException {
    if (config.metricsEnabled()) {
      metricsServer = HTTPServer.builder().hostname(config.metricsHost()).port(config.metricsPort())
          .registry(metrics.registry()).buildAndStart();
    }
    follower.ifPresent(AdapterVersionFollower::start);
    monitor.start();
    server.start();
    log.info("inference service listening on {} ({}), metrics {}, engines {}", server.getListenSockets(),
        config.tls().map(t -> t.mutual() ? "mutual TLS" : "TLS").orElse("plaintext"),
        metricsServer == null ? "off" : "on port " + metricsServer.getPort(), config.engines());
    return this;
  }

  /** The public port (useful when {@code server.port} is 0); -1 for an in-process server. */
  public int port() {
    return server.getPort();
  }

  /** The metrics HTTP port, or -1 when metrics are off. */
  public int metricsPort() {
    return metricsServer == null ? -1 : metricsServer.getPort();
  }

  public RolloutController controller() {
    return controller;
  }

  public EngineRouter router() {
    return router;
  }

  public EngineHealthMonitor monitor() {
    return monitor;
  }

  public EventRecorder events() {
    return events;
  }

  public InferenceMetrics metrics() {
    return metrics;
  }

  private void updateHealth() {
    ServingStatus status = controller.started() && router.anyInService()
        ? ServingStatus.SERVING : ServingStatus.NOT_SERVING;
    health.setStatus(HealthStatusManager.SERVICE_NAME_ALL_SERVICES, status);
    SERVICES.forEach(s -> health.setStatus(s, status));
  }

  /**
   * Graceful shutdown: report NOT_SERVING, stop taking calls, wait up to {@code server.shutdown.grace.ms} for the
   * calls in flight, then flush the event buffer (up to {@code events.flush.timeout.ms}) and close everything.
   */
  public void stop() {
    log.info("shutting down: draining requests in flight (up to {} ms)", config.shutdownGrace().toMillis());
    health.enterTerminalState();
    server.shutdown();
    try {
      if (!server.awaitTermination(config.shutdownGrace().toMillis(), TimeUnit.MILLISECONDS)) {
        log.warn("requests still running after {} ms; cancelling them", config.shutdownGrace().toMillis());
        server.shutdownNow();
        server.awaitTermination(5, TimeUnit.SECONDS);
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      server.shutdownNow();
    }
    monitor.close();
    follower.ifPresent(AdapterVersionFollower::close);
    controller.close();
    long lost = events.close(config.eventFlushTimeout());
    EventRecorder.Stats s = events.stats();
    log.info("events: {} sent, {} dropped, {} failed; {} not delivered at shutdown", s.sent(), s.dropped(),
        s.failed(), lost);
    for (ManagedChannel c : engineChannels) {
      c.shutdown();
    }
    for (ManagedChannel c : engineChannels) {
      try {
        if (!c.awaitTermination(5, TimeUnit.SECONDS)) {
          c.shutdownNow();
        }
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        c.shutdownNow();
      }
    }
    if (metricsServer != null) {
      metricsServer.close();
    }
    afterStop.run();
    log.info("inference service stopped");
  }

  public void awaitTermination() throws InterruptedException {
    server.awaitTermination();
  }
}
