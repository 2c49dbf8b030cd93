package io.vllmtrain.stack;

import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

/**
 * A real Apicurio Registry 3.3.3 (Confluent-compatible API at {@code /apis/ccompat/v7}) as its own process, bound to
 * loopback (HTTP and management ports both moved off their defaults). Storage: {@code mem} (in-memory H2, for
 * tests) or {@code kafkasql} (schemas kept in the stack's own broker, so they survive a restart).
 */
public final class RegistryServer {
  public static final String VERSION = "3.3.3";
  private static final HttpClient HTTP = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(2)).build();

  private final StackConfig config;
  private final ManagedProcess process;

  public RegistryServer(StackConfig config) {
    this.config = config;
    this.process = new ManagedProcess("registry", config.dir());
  }

  public ManagedProcess process() {
    return process;
  }

  /** The unpacked registry distribution: -Dvt.apicurio.home, VT_APICURIO_HOME, or .cache/ in the repo. */
  public static Path home(Path repoRoot) {
    String explicit = System.getProperty("vt.apicurio.home", System.getenv("VT_APICURIO_HOME"));
    Path home = explicit != null ? Path.of(explicit) : repoRoot.resolve(".cache/apicurio-registry-" + VERSION);
    if (!Files.isRegularFile(home.resolve("quarkus-run.jar"))) {
      throw new StackException("Apicurio Registry " + VERSION + " is not unpacked at " + home + ": run "
          + "`./mvnw -q -pl stack package` (it unpacks io.apicurio:apicurio-registry-app:" + VERSION
          + ":tar.gz:all from Maven Central) or set VT_APICURIO_HOME");
    }
    return home;
  }

  public void start(Path repoRoot, String storage, String kafkaBootstrap) {
    Path home = home(repoRoot);
    Path java = JavaRuntimes.find(21, config.registryJava(), repoRoot);
    List<String> cmd = new ArrayList<>(List.of(java.toString(), "-Xms64m", "-Xmx512m", "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        "-Dquarkus.http.host=" + config.host(),
        "-Dquarkus.http.port=" + config.registryPort(),
        "-Dquarkus.management.host=" + config.host(),
        "-Dquarkus.management.port=" + config.registryManagementPort(),
        "-Dquarkus.log.console.format=%d{HH:mm:ss} %-5p [%c{2.}] %s%e%n",
        "-Dapicurio.rest.deletion.artifact.enabled=true",
        "-Dapicurio.ccompat.legacy-id-mode.enabled=false"));
    if ("kafkasql".equals(storage)) {
      cmd.add("-Dapicurio.storage.kind=kafkasql");
      cmd.add("-Dapicurio.kafkasql.bootstrap.servers=" + kafkaBootstrap);
      cmd.add("-Dapicurio.kafkasql.topic=_vllm_train_registry_journal");
    } else if (!"mem".equals(storage)) {
      throw new StackException("registry storage must be mem or kafkasql, not '" + storage + "'");
    }
    cmd.addAll(List.of("-jar", home.resolve("quarkus-run.jar").toString()));
    try {
      Files.createDirectories(config.dir().resolve("registry-work"));
    } catch (IOException e) {
      throw new StackException("cannot create " + config.dir() + ": " + e.getMessage(), e);
    }
    process.start(cmd, config.dir().resolve("registry-work"));
    process.awaitReady(() -> healthy(config.registryUrl()), Duration.ofSeconds(120),
        "answering at " + config.registryUrl() + "/apis/ccompat/v7");
  }

  public static boolean healthy(String registryUrl) {
    try {
      HttpResponse<Void> r = HTTP.send(HttpRequest.newBuilder(URI.create(registryUrl + "/apis/ccompat/v7/subjects"))
          .timeout(Duration.ofSeconds(2)).GET().build(), HttpResponse.BodyHandlers.discarding());
      return r.statusCode() == 200;
    } catch (IOException e) {
      return false;
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      return false;
    }
  }
}
