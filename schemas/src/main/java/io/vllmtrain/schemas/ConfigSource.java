package io.vllmtrain.schemas;

import java.io.IOException;
import java.io.Reader;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;

/**
 * Flat configuration for a service: a {@code .properties} file, then environment variables on top.
 * A variable {@code VT_KAFKA_BOOTSTRAP_SERVERS} sets the key {@code kafka.bootstrap.servers}: strip {@code VT_},
 * lower-case, and read {@code _} as {@code .}. Each service turns this map into its own typed config record.
 */
public final class ConfigSource {
  public static final String ENV_PREFIX = "VT_";

  private ConfigSource() {}

  /** Reads {@code file} (may be null) and overlays the {@code VT_*} variables of {@code env}. */
  public static Map<String, String> load(Path file, Map<String, String> env) {
    Map<String, String> values = new TreeMap<>();
    if (file != null) {
      if (!Files.isRegularFile(file)) {
        throw new IllegalArgumentException("config file not found: " + file);
      }
      Properties props = new Properties();
      try (Reader r = Files.newBufferedReader(file)) {
        props.load(r);
      } catch (IOException e) {
        throw new IllegalArgumentException("cannot read config file " + file + ": " + e.getMessage(), e);
      }
      props.stringPropertyNames().forEach(k -> values.put(k.trim(), props.getProperty(k).trim()));
    }
    env.forEach((name, value) -> {
      if (name.startsWith(ENV_PREFIX) && name.length() > ENV_PREFIX.length()) {
        values.put(name.substring(ENV_PREFIX.length()).toLowerCase(Locale.ROOT).replace('_', '.'), value);
      }
    });
    return values;
  }

  public static String envName(String key) {
    return ENV_PREFIX + key.toUpperCase(Locale.ROOT).replace('.', '_').replace('-', '_');
  }
}
