package io.vllmtrain.inference;

import java.nio.file.Path;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Starts the inference service: {@code InferenceMain [--config FILE]}. Settings come from the file and from
 * {@code VT_*} environment variables (see docs/inference.md); an invalid setting stops the start with a message
 * naming it. SIGTERM/Ctrl-C shut it down gracefully.
 */
public final class InferenceMain {
  private static final Logger log = LoggerFactory.getLogger(InferenceMain.class);

  private InferenceMain() {}

  public static void main(String[] args) throws Exception {
    Path configFile = null;
    for (int i = 0; i < args.length; i++) {
      switch (args[i]) {
        case "--config" -> {
          if (i + 1 >= args.length) {
            usage("--config needs a file");
          }
          configFile = Path.of(args[++i]);
        }
        case "-h", "--help" -> {
          System.out.println(USAGE);
          return;
        }
        default -> usage("unknown argument " + args[i]);
      }
    }
    InferenceConfig config;
    try {
      config = InferenceConfig.load(configFile, System.getenv());
    } catch (IllegalArgumentException e) {
      System.err.println(e.getMessage());
      System.exit(2);
      return;
    }
    InferenceServer server = InferenceServer.create(config).start();
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      try {
        server.stop();
      } catch (RuntimeException e) {
        log.error("error during shutdown", e);
      }
    }, "shutdown"));
    server.awaitTermination();
  }

  private static final String USAGE = """
      usage: java -cp 'inference/target/inference-0.1.0-SNAPSHOT.jar:inference/target/lib/*' \\
                  io.vllmtrain.inference.InferenceMain [--config FILE]
      Settings: the properties FILE, overridden by VT_* environment variables (VT_ENGINE_ADDRESSES sets
      engine.addresses). Required: base.model, engine.addresses, kafka.bootstrap.servers, registry.url.
      See docs/inference.md for every key and its default.""";

  private static void usage(String problem) {
    System.err.println(problem);
    System.err.println(USAGE);
    System.exit(2);
  }
}
