package io.vllmtrain.inference;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.grpc.ManagedChannel;
import io.grpc.StatusRuntimeException;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.grpc.health.v1.HealthGrpc;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

/**
 * Real engine workers for tests and the benchmark: {@code vllm-train serve --backend hf} processes of the tiny
 * model, started on free ports, awaited until gRPC health says SERVING, and killed on {@link #close()} (or when the
 * JVM exits). Also writes adapter versions with the trainer library ({@code src/test/python/make_adapters.py}).
 *
 * <p>The Python interpreter is {@code $VT_PYTHON}, else {@code <repo>/.venv/bin/python}; {@link #python()} is
 * empty when neither exists, and callers skip with {@link #MISSING_PYTHON}.
 */
final class EngineWorkers implements AutoCloseable {
  static final String MISSING_PYTHON = "no Python environment for the engine workers: set VT_PYTHON or create "
      + "<repo>/.venv (see README); the real-engine tests need it";

  /** One adapter version written to an adapter root. */
  record Adapter(String versionId, long version, String uri, String sha256, int rank, double alpha,
      List<String> targetModules) {}

  /** A running engine process. */
  record Worker(String name, int port, Process process, Path log) {
    String address() {
      return "127.0.0.1:" + port;
    }
  }

  private final List<Worker> workers = new ArrayList<>();
  private final Path logs;

  EngineWorkers(Path logs) {
    this.logs = logs;
    Runtime.getRuntime().addShutdownHook(new Thread(this::close, "engine-workers-kill"));
  }

  static Path repoRoot() {
    Path p = Path.of("").toAbsolutePath();
    for (Path d = p; d != null; d = d.getParent()) {
      if (Files.isDirectory(d.resolve("trainer-py")) && Files.isRegularFile(d.resolve("mvnw"))) {
        return d;
      }
    }
    throw new IllegalStateException("cannot find the repository root above " + p);
  }

  static Optional<Path> python() {
    String env = System.getenv("VT_PYTHON");
    Path p = env != null && !env.isBlank() ? Path.of(env) : repoRoot().resolve(".venv/bin/python");
    return Files.isExecutable(p) ? Optional.of(p) : Optional.empty();
  }

  /** The tiny model and adapter versions of it. */
  record Fixture(Path model, List<Adapter> adapters) {}

  /**
   * Writes adapter versions {@code versions} of run {@code run} under {@code root} and returns them with the tiny
   * model's directory (built and cached by the trainer library on first use).
   */
  static Fixture makeAdapters(Path root, String run, int seed, long... versions) {
    List<String> args = new ArrayList<>(List.of("--root", root.toString(), "--run", run, "--seed",
        String.valueOf(seed), "--versions"));
    for (long v : versions) {
      args.add(String.valueOf(v));
    }
    List<Adapter> out = new ArrayList<>();
    JsonNode result = run(args);
    for (JsonNode a : result.get("adapters")) {
      List<String> targets = new ArrayList<>();
      a.get("target_modules").forEach(t -> targets.add(t.asText()));
      out.add(new Adapter(a.get("version_id").asText(), a.get("version").asLong(), a.get("uri").asText(),
          a.get("sha256").asText(), a.get("rank").asInt(), a.get("alpha").asDouble(), targets));
    }
    return new Fixture(Path.of(result.get("model").asText()), out);
  }

  private static JsonNode run(List<String> args) {
    Path script = repoRoot().resolve("inference/src/test/python/make_adapters.py");
    List<String> command = new ArrayList<>(List.of(python().orElseThrow(() -> new IllegalStateException(
        MISSING_PYTHON)).toString(), script.toString()));
    command.addAll(args);
    try {
      Process p = new ProcessBuilder(command).redirectError(ProcessBuilder.Redirect.DISCARD).start();
      String out = new String(p.getInputStream().readAllBytes());
      if (p.waitFor() != 0) {
        throw new IllegalStateException("make_adapters.py failed (exit " + p.exitValue() + "): " + command);
      }
      return new ObjectMapper().readTree(out.strip().lines().reduce((a, b) -> b).orElse("{}"));
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException(e);
    }
  }

  /**
   * Starts {@code vllm-train serve} (hf backend, CPU, one torch thread) for {@code model} under the name
   * {@code servedModel}, loading adapters from {@code adapterRoot}; returns once its health is SERVING.
   */
  Worker start(String name, Path model, String servedModel, Path adapterRoot) {
    return start(name, model, servedModel, adapterRoot, TcpForwarder.freePort());
  }

  /** As {@link #start(String, Path, String, Path)} on a given port (a replica coming back where it was). */
  Worker start(String name, Path model, String servedModel, Path adapterRoot, int port) {
    Path log = logs.resolve(name + ".log");
    List<String> command = List.of(python().orElseThrow().toString(), "-m", "vllm_train.cli", "serve",
        "--backend", "hf", "--device", "cpu", "--model", model.toString(), "--served-model-name", servedModel,
        "--host", "127.0.0.1", "--port", String.valueOf(port), "--adapter-root", adapterRoot.toString(),
        "--replica", name, "--max-lora-rank", "16", "--max-loras", "8", "--shutdown-grace-s", "2");
    try {
      Files.createDirectories(logs);
      ProcessBuilder pb = new ProcessBuilder(command).redirectErrorStream(true)
          .redirectOutput(ProcessBuilder.Redirect.to(log.toFile()));
      // The machine is shared: one thread per engine (the tiny model gains nothing from more).
      pb.environment().putAll(Map.of("OMP_NUM_THREADS", "1", "MKL_NUM_THREADS", "1", "TOKENIZERS_PARALLELISM",
          "false"));
      Worker w = new Worker(name, port, pb.start(), log);
      workers.add(w);
      awaitServing(w, Duration.ofSeconds(180));
      return w;
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  private static void awaitServing(Worker w, Duration timeout) {
    ManagedChannel ch = NettyChannelBuilder.forTarget(w.address()).usePlaintext().build();
    try {
      var health = HealthGrpc.newBlockingStub(ch);
      long deadline = System.nanoTime() + timeout.toNanos();
      while (System.nanoTime() < deadline) {
        if (!w.process().isAlive()) {
          throw new IllegalStateException("engine " + w.name() + " exited with " + w.process().exitValue()
              + ":\n" + tail(w.log()));
        }
        try {
          if (health.withDeadlineAfter(2, TimeUnit.SECONDS).check(HealthCheckRequest.getDefaultInstance())
              .getStatus() == ServingStatus.SERVING) {
            return;
          }
        } catch (StatusRuntimeException e) {
          // not listening yet
        }
        Thread.sleep(200);
      }
      throw new IllegalStateException("engine " + w.name() + " not SERVING after " + timeout.toSeconds() + " s:\n"
          + tail(w.log()));
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException(e);
    } finally {
      ch.shutdownNow();
    }
  }

  static String tail(Path log) {
    try (Stream<String> lines = Files.lines(log)) {
      List<String> all = lines.toList();
      return String.join("\n", all.subList(Math.max(0, all.size() - 30), all.size()));
    } catch (IOException e) {
      return "(no log: " + e.getMessage() + ")";
    }
  }

  /** Kills one worker (SIGKILL: a crash, not a shutdown). */
  void kill(Worker w) {
    w.process().destroyForcibly();
    try {
      w.process().waitFor(10, TimeUnit.SECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  /** Stops every worker: SIGTERM, then SIGKILL for any still alive after 10 s. */
  @Override
  public synchronized void close() {
    for (Worker w : workers) {
      w.process().destroy();
    }
    for (Worker w : workers) {
      try {
        if (!w.process().waitFor(10, TimeUnit.SECONDS)) {
          w.process().destroyForcibly().waitFor(5, TimeUnit.SECONDS);
        }
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        w.process().destroyForcibly();
      }
    }
    workers.clear();
  }
}
