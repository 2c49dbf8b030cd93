package io.vllmtrain.stack;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * An HTTP proxy in front of a schema registry, for tests of what clients do when the registry misbehaves: it
 * forwards every request ({@link #heal}), or answers each with an HTTP status of its choosing ({@link #failWith}),
 * or accepts requests and never answers them ({@link #hang}), until told otherwise.
 */
public final class RegistryFaultProxy implements AutoCloseable {
  // Headers the JDK client sets itself, and hop-by-hop headers that must not be copied.
  private static final Set<String> SKIPPED = Set.of("host", "connection", "content-length", "expect", "upgrade",
      "transfer-encoding", "keep-alive");

  private final String target;
  private final HttpServer server;
  private final ExecutorService executor = Executors.newCachedThreadPool(r -> {
    Thread t = new Thread(r, "registry-fault-proxy");
    t.setDaemon(true);
    return t;
  });
  private final HttpClient client = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
  private final AtomicInteger faults = new AtomicInteger();
  private final Object lock = new Object();
  private int status; // 0: forward
  private boolean hanging;
  private boolean closed;

  private RegistryFaultProxy(String target) throws IOException {
    this.target = target.replaceAll("/+$", "");
    server = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 64);
    server.createContext("/", this::handle);
    server.setExecutor(executor);
    server.start();
  }

  /** Starts a proxy on a free loopback port that forwards to {@code registryUrl}. */
  public static RegistryFaultProxy start(String registryUrl) {
    try {
      return new RegistryFaultProxy(registryUrl);
    } catch (IOException e) {
      throw new StackException("cannot start the registry fault proxy: " + e.getMessage(), e);
    }
  }

  /** The proxy's base URL: use it as {@code registry.url}. */
  public String url() {
    return "http://127.0.0.1:" + server.getAddress().getPort();
  }

  /** From now on every request is answered with {@code httpStatus} and a short JSON error body. */
  public void failWith(int httpStatus) {
    synchronized (lock) {
      status = httpStatus;
      hanging = false;
      lock.notifyAll();
    }
  }

  /** From now on requests are accepted and never answered (until {@link #heal} or {@link #close}). */
  public void hang() {
    synchronized (lock) {
      status = 0;
      hanging = true;
    }
  }

  /** From now on requests are forwarded to the registry again (hanging ones too). */
  public void heal() {
    synchronized (lock) {
      status = 0;
      hanging = false;
      lock.notifyAll();
    }
  }

  /** How many requests were answered with a fault or hung. */
  public int faults() {
    return faults.get();
  }

  /** Stops listening: from now on connections are refused. */
  @Override
  public void close() {
    synchronized (lock) {
      if (closed) {
        return;
      }
      closed = true;
    }
    heal();
    server.stop(0);
    executor.shutdownNow();
  }

  private void handle(HttpExchange exchange) throws IOException {
    try (exchange) {
      int answer;
      synchronized (lock) {
        if (hanging) {
          faults.incrementAndGet();
        }
        while (hanging) {
          try {
            lock.wait();
          } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return;
          }
        }
        answer = status;
      }
      if (answer != 0) {
        faults.incrementAndGet();
        byte[] body = ("{\"error_code\":" + answer + ",\"message\":\"injected by RegistryFaultProxy\"}")
            .getBytes(StandardCharsets.UTF_8);
        exchange.getResponseHeaders().add("Content-Type", "application/json");
        exchange.sendResponseHeaders(answer, body.length);
        exchange.getResponseBody().write(body);
        return;
      }
      forward(exchange);
    }
  }

  private void forward(HttpExchange exchange) throws IOException {
    byte[] body;
    try (InputStream in = exchange.getRequestBody()) {
      body = in.readAllBytes();
    }
    HttpRequest.Builder request = HttpRequest.newBuilder(URI.create(target + exchange.getRequestURI()))
        .timeout(Duration.ofSeconds(30))
        .method(exchange.getRequestMethod(), body.length == 0 ? HttpRequest.BodyPublishers.noBody()
            : HttpRequest.BodyPublishers.ofByteArray(body));
    exchange.getRequestHeaders().forEach((name, values) -> {
      if (!SKIPPED.contains(name.toLowerCase(Locale.ROOT))) {
        values.forEach(v -> request.header(name, v));
      }
    });
    HttpResponse<byte[]> response;
    try {
      response = client.send(request.build(), HttpResponse.BodyHandlers.ofByteArray());
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IOException("interrupted", e);
    }
    response.headers().map().forEach((name, values) -> {
      if (!SKIPPED.contains(name.toLowerCase(Locale.ROOT)) && !name.startsWith(":")) {
        exchange.getResponseHeaders().put(name, List.copyOf(values));
      }
    });
    byte[] out = response.body();
    exchange.sendResponseHeaders(response.statusCode(), out.length == 0 ? -1 : out.length);
    try (OutputStream os = exchange.getResponseBody()) {
      os.write(out);
    }
  }
}
