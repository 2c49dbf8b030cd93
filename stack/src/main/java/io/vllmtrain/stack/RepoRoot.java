package io.vllmtrain.stack;

import java.nio.file.Files;
import java.nio.file.Path;

/** The checkout's root: the nearest folder above the working directory that holds {@code mvnw} and {@code schemas/}. */
public final class RepoRoot {
  private RepoRoot() {}

  public static Path find() {
    String explicit = System.getenv("VT_REPO_ROOT");
    if (explicit != null && !explicit.isBlank()) {
      return Path.of(explicit).toAbsolutePath();
    }
    for (Path p = Path.of("").toAbsolutePath(); p != null; p = p.getParent()) {
      if (Files.isRegularFile(p.resolve("mvnw")) && Files.isDirectory(p.resolve("schemas"))) {
        return p;
      }
    }
    throw new StackException("cannot find the vllm-train checkout above " + Path.of("").toAbsolutePath()
        + " (set VT_REPO_ROOT)");
  }
}
