package io.vllmtrain.stack;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;

/**
 * A server process of the stack: started detached (its own session, so it outlives {@code ./pipeline up}),
 * output to a log file, pid in a file, stopped with SIGTERM then SIGKILL, children included.
 */
public final class ManagedProcess {
  private final String name;
  private final Path pidFile;
  private final Path logFile;

  public ManagedProcess(String name, Path runDir) {
    this.name = name;
    this.pidFile = runDir.resolve(name + ".pid");
    this.logFile = runDir.resolve("logs").resolve(name + ".log");
  }

  public String name() {
    return name;
  }

  public Path logFile() {
    return logFile;
  }

  public long start(List<String> command, Path workDir) {
    try {
      Files.createDirectories(logFile.getParent());
      List<String> cmd = new ArrayList<>();
      if (Files.isExecutable(Path.of("/usr/bin/setsid"))) {
        cmd.add("/usr/bin/setsid");
      }
      cmd.addAll(command);
      ProcessBuilder pb = new ProcessBuilder(cmd).directory(workDir.toFile())
          .redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.appendTo(logFile.toFile()))
          .redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null")));
      Process p = pb.start();
      Files.writeString(pidFile, Long.toString(p.pid()));
      return p.pid();
    } catch (IOException e) {
      throw new StackException("cannot start " + name + ": " + e.getMessage(), e);
    }
  }

  public Optional<ProcessHandle> handle() {
    try {
      if (!Files.isRegularFile(pidFile)) {
        return Optional.empty();
      }
      long pid = Long.parseLong(Files.readString(pidFile).trim());
      return ProcessHandle.of(pid).filter(ProcessHandle::isAlive);
    } catch (IOException | NumberFormatException e) {
      return Optional.empty();
    }
  }

  public boolean alive() {
    return handle().isPresent();
  }

  /** Waits until {@code ready} holds; fails early with the log's tail if the process dies. */
  public void awaitReady(BooleanSupplier ready, Duration timeout, String what) {
    long deadline = System.nanoTime() + timeout.toNanos();
    while (System.nanoTime() < deadline) {
      if (ready.getAsBoolean()) {
        return;
      }
      if (!alive()) {
        throw new StackException(name + " exited before it was ready (" + what + "). Last lines of " + logFile
            + ":\n" + tail(30));
      }
      sleep(200);
    }
    throw new StackException(name + " was not ready (" + what + ") within " + timeout.toSeconds() + " s; see "
        + logFile + ":\n" + tail(30));
  }

  /** SIGTERM to the process and its descendants, then SIGKILL after {@code grace}. Returns true if it ran. */
  public boolean stop(Duration grace) {
    Optional<ProcessHandle> h = handle();
    if (h.isEmpty()) {
      deletePidFile();
      return false;
    }
    List<ProcessHandle> all = new ArrayList<>(h.get().descendants().toList());
    all.add(0, h.get());
    all.forEach(ProcessHandle::destroy);
    long deadline = System.nanoTime() + grace.toNanos();
    for (ProcessHandle p : all) {
      try {
        p.onExit().get(Math.max(1, deadline - System.nanoTime()), TimeUnit.NANOSECONDS);
      } catch (Exception e) {
        p.destroyForcibly();
      }
    }
    all.forEach(p -> {
      if (p.isAlive()) {
        p.destroyForcibly();
      }
    });
    deletePidFile();
    return true;
  }

  public String tail(int lines) {
    try {
      List<String> all = Files.readAllLines(logFile);
      return String.join("\n", all.subList(Math.max(0, all.size() - lines), all.size()));
    } catch (IOException e) {
      return "(no log)";
    }
  }

  private void deletePidFile() {
    try {
      Files.deleteIfExists(pidFile);
    } catch (IOException e) {
      // a stale pid file is ignored at the next start
    }
  }

  static void sleep(long ms) {
    try {
      Thread.sleep(ms);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new StackException("interrupted");
    }
  }
}
