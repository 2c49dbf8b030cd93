package io.vllmtrain.streams;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;

class DeadlineIndexTest {
  @Test
  void keysSortByDeadlineAsBytes() {
    List<String> keys = Stream.of(
        DeadlineIndex.key(1_767_600_000_000L, "q2"), DeadlineIndex.key(9, "q1"), DeadlineIndex.key(0, "z"),
        DeadlineIndex.key(1_767_600_000_000L, "q1"), DeadlineIndex.key(10, "a")).sorted().toList();
    assertEquals(List.of("000000000000000|z", "000000000000009|q1", "000000000000010|a", "001767600000000|q1",
        "001767600000000|q2"), keys);
  }
}
