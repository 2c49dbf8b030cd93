package io.vllmtrain.streams;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.Test;

class BackoffTest {
  private static final long S = 1_000_000_000L;

  @Test
  void pausesDoubleUpToTheMaximumWhileFailuresGoOnAndStartAgainAfterAQuietSpell() {
    Backoff b = new Backoff(Duration.ofSeconds(1), Duration.ofSeconds(30));
    long t = 0;
    List<Long> pauses = new java.util.ArrayList<>();
    for (int i = 0; i < 7; i++) {
      pauses.add(b.next(t).toSeconds());
      t += 5 * S;
    }
    assertEquals(List.of(1L, 2L, 4L, 8L, 16L, 30L, 30L), pauses);
    assertEquals(Duration.ofSeconds(1), b.next(t + 61 * S), "no failure for over a minute");
  }
}
