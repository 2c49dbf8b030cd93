package io.vllmtrain.schemas;

import java.util.Map;

/** One row of the topic table ({@code vllm_train/topics.json}): name, partitions and topic configs. */
public record TopicSpec(String id, String name, int partitions, String key, String value, Map<String, String> config) {
  public boolean compacted() {
    return "compact".equals(config.get("cleanup.policy"));
  }
}
