package io.vllmtrain.schemas;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Base64;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import org.apache.avro.Schema;
import org.apache.kafka.common.errors.SerializationException;

/**
 * A small client of the Confluent Schema Registry API (register a subject's schema, fetch a schema by id), used by
 * the serdes when {@code registry.flavor=confluent}: Confluent's own registry, or any registry's Confluent-compatible
 * API (Apicurio's {@code /apis/ccompat/v7}). Results are cached; ids are immutable.
 */
final class CcompatRegistryClient {
  private static final ObjectMapper JSON = new ObjectMapper();
  private final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
  private final String baseUrl;
  private final String authorization;
  private final Map<String, Integer> idsBySubjectAndSchema = new ConcurrentHashMap<>();
  private final Map<Integer, Schema> schemasById = new ConcurrentHashMap<>();

  CcompatRegistryClient(String baseUrl, String username, String password) {
    this.baseUrl = baseUrl;
    this.authorization = username == null ? null : "Basic " + Base64.getEncoder()
        .encodeToString((username + ":" + (password == null ? "" : password)).getBytes(StandardCharsets.UTF_8));
  }

  int register(String subject, Schema schema) {
    String key = subject + '\u0000' + schema;
    return idsBySubjectAndSchema.computeIfAbsent(key, k -> {
      String body;
      try {
        body = JSON.writeValueAsString(Map.of("schema", schema.toString()));
      } catch (IOException e) {
        throw new SerializationException("cannot encode schema of " + schema.getFullName(), e);
      }
      JsonNode reply = send(HttpRequest.newBuilder(uri("/subjects/" + URLEncoder.encode(subject, StandardCharsets.UTF_8)
          + "/versions")).header("Content-Type", "application/vnd.schemaregistry.v1+json")
          .POST(HttpRequest.BodyPublishers.ofString(body)), "register " + schema.getName() + " under " + subject);
      return reply.get("id").asInt();
    });
  }

  Schema byId(int id) {
    return schemasById.computeIfAbsent(id, i -> {
      JsonNode reply = send(HttpRequest.newBuilder(uri("/schemas/ids/" + i)).GET(), "schema id " + i);
      Schema.Parser parser = new Schema.Parser();
      parseReferences(reply, parser, new java.util.HashSet<>());
      return parser.parse(reply.get("schema").asText());
    });
  }

  /** Named types registered as separate subjects (Apicurio's serdes do this) are parsed first, depth first. */
  private void parseReferences(JsonNode schemaReply, Schema.Parser parser, java.util.Set<String> seen) {
    JsonNode refs = schemaReply.get("references");
    if (refs == null) {
      return;
    }
    for (JsonNode ref : refs) {
      String name = ref.get("name").asText();
      if (!seen.add(name) || parser.getTypes().containsKey(name)) {
        continue;
      }
      String subject = ref.get("subject").asText();
      JsonNode referenced = send(HttpRequest.newBuilder(uri("/subjects/"
          + URLEncoder.encode(subject, StandardCharsets.UTF_8) + "/versions/" + ref.get("version").asText())).GET(),
          "reference " + name);
      parseReferences(referenced, parser, seen);
      if (!parser.getTypes().containsKey(name)) {
        parser.parse(referenced.get("schema").asText());
      }
    }
  }

  private URI uri(String path) {
    return URI.create(baseUrl + path);
  }

  private JsonNode send(HttpRequest.Builder request, String what) {
    if (authorization != null) {
      request.header("Authorization", authorization);
    }
    try {
      HttpRequest built = request.timeout(Duration.ofSeconds(10)).build();
      HttpResponse<String> r = http.send(built, HttpResponse.BodyHandlers.ofString());
      int status = r.statusCode();
      if (status == 404 && what.startsWith("schema id")) {
        throw new SerializationException(what + " is unknown to the registry at " + baseUrl);
      }
      if (status / 100 != 2) {
        String message = "registry at " + baseUrl + " refused to " + what + ": HTTP " + status + " "
            + r.body().lines().findFirst().orElse("");
        // A read is only the record's fault when the id is unknown; a refused write (409 incompatible, 422 invalid)
        // is the schema's. Anything else says nothing about either: try again later.
        boolean definite = !built.method().equals("GET") && status / 100 == 4 && status != 401
            && status != 403 && status != 408 && status != 429;
        throw definite ? new SerializationException(message) : new RegistryUnavailableException(message, null);
      }
      return JSON.readTree(r.body());
    } catch (IOException e) {
      throw new RegistryUnavailableException("cannot reach the registry at " + baseUrl + " (" + what + "): "
          + e.getMessage(), e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new RegistryUnavailableException("interrupted while asking the registry for " + what, e);
    }
  }
}
