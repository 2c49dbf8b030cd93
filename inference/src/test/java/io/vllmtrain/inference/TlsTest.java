package io.vllmtrain.inference;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import io.grpc.ChannelCredentials;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.TlsChannelCredentials;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import io.vllmtrain.proto.v1.AdapterServiceGrpc;
import io.vllmtrain.proto.v1.GetActiveRequest;
import java.io.FileInputStream;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyStore;
import java.security.cert.Certificate;
import java.util.Base64;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * TLS and mutual TLS on the public port, configured by certificate files as an operator would, with certificates
 * made here by the JDK's keytool (self-signed, so each is its own CA).
 */
class TlsTest {
  @TempDir
  static Path dir;
  static Pem server;
  static Pem client;
  static Pem stranger;

  InferenceServer service;
  ManagedChannel channel;

  /** A certificate and its PKCS#8 private key as PEM files. */
  record Pem(Path cert, Path key) {}

  @BeforeAll
  static void certificates() throws Exception {
    server = selfSigned("server", "CN=localhost", "SAN=dns:localhost,ip:127.0.0.1");
    client = selfSigned("client", "CN=app", null);
    stranger = selfSigned("stranger", "CN=stranger", null);
  }

  static Pem selfSigned(String name, String dn, String san) throws Exception {
    Path store = dir.resolve(name + ".p12");
    String keytool = Path.of(System.getProperty("java.home"), "bin", "keytool").toString();
    var command = new java.util.ArrayList<>(java.util.List.of(keytool, "-genkeypair", "-alias", name, "-keyalg", "RSA",
        "-keysize", "2048", "-validity", "2", "-dname", dn, "-storetype", "PKCS12", "-keystore", store.toString(),
        "-storepass", "changeit", "-keypass", "changeit"));
    if (san != null) {
      command.addAll(java.util.List.of("-ext", san));
    }
    Process p = new ProcessBuilder(command).redirectErrorStream(true).start();
    String out = new String(p.getInputStream().readAllBytes());
    if (p.waitFor() != 0) {
      throw new IllegalStateException("keytool failed: " + out);
    }
    KeyStore ks = KeyStore.getInstance("PKCS12");
    try (FileInputStream in = new FileInputStream(store.toFile())) {
      ks.load(in, "changeit".toCharArray());
    }
    Certificate cert = ks.getCertificate(name);
    Path certPem = Files.writeString(dir.resolve(name + ".crt.pem"), pem("CERTIFICATE", cert.getEncoded()));
    Path keyPem = Files.writeString(dir.resolve(name + ".key.pem"),
        pem("PRIVATE KEY", ks.getKey(name, "changeit".toCharArray()).getEncoded()));
    return new Pem(certPem, keyPem);
  }

  static String pem(String type, byte[] der) {
    return "-----BEGIN " + type + "-----\n" + Base64.getMimeEncoder(64, "\n".getBytes()).encodeToString(der)
        + "\n-----END " + type + "-----\n";
  }

  void start(Map<String, String> tls) throws IOException {
    Map<String, String> values = new HashMap<>(Map.of(
        "base.model", Versions.BASE_MODEL,
        "engine.addresses", "tls-test-engine:1",
        "metrics.enabled", "false",
        "kafka.bootstrap.servers", "unused:9092",
        "registry.url", "http://unused:8080"));
    values.putAll(tls);
    InferenceConfig config = InferenceConfig.fromMap(values);
    service = new InferenceServer(NettyServerBuilder.forAddress(new InetSocketAddress("127.0.0.1", 0),
        InferenceServer.serverCredentials(config)), config,
        address -> InProcessChannelBuilder.forName(address).build(),
        new EventRecorder(InProcessInference.autoAckKafka(), 10, 1 << 20), null).start();
  }

  String callWith(ChannelCredentials credentials) {
    channel = Grpc.newChannelBuilderForAddress("localhost", service.port(), credentials).build();
    return AdapterServiceGrpc.newBlockingStub(channel).withDeadlineAfter(10, TimeUnit.SECONDS)
        .getActive(GetActiveRequest.getDefaultInstance()).getBaseModel();
  }

  @AfterEach
  void stop() {
    if (channel != null) {
      channel.shutdownNow();
    }
    if (service != null) {
      service.stop();
    }
  }

  @Test
  void withACertificateThePortSpeaksTlsOnly() throws Exception {
    start(Map.of("server.tls.cert", server.cert().toString(), "server.tls.key", server.key().toString()));
    assertEquals(Versions.BASE_MODEL,
        callWith(TlsChannelCredentials.newBuilder().trustManager(server.cert().toFile()).build()));
    channel.shutdownNow();
    StatusRuntimeException plaintext = assertThrows(StatusRuntimeException.class,
        () -> callWith(InsecureChannelCredentials.create()));
    assertEquals(Status.Code.UNAVAILABLE, plaintext.getStatus().getCode());
  }

  @Test
  void withAClientCaOnlyClientsWithACertificateItSignedGetIn() throws Exception {
    start(Map.of("server.tls.cert", server.cert().toString(), "server.tls.key", server.key().toString(),
        "server.tls.client.ca", client.cert().toString()));
    assertEquals(Versions.BASE_MODEL, callWith(TlsChannelCredentials.newBuilder()
        .trustManager(server.cert().toFile()).keyManager(client.cert().toFile(), client.key().toFile()).build()));
    channel.shutdownNow();
    StatusRuntimeException anonymous = assertThrows(StatusRuntimeException.class,
        () -> callWith(TlsChannelCredentials.newBuilder().trustManager(server.cert().toFile()).build()));
    assertEquals(Status.Code.UNAVAILABLE, anonymous.getStatus().getCode());
    channel.shutdownNow();
    StatusRuntimeException unknown = assertThrows(StatusRuntimeException.class,
        () -> callWith(TlsChannelCredentials.newBuilder().trustManager(server.cert().toFile())
            .keyManager(stranger.cert().toFile(), stranger.key().toFile()).build()));
    assertEquals(Status.Code.UNAVAILABLE, unknown.getStatus().getCode());
  }

  @Test
  void unreadableKeyMaterialStopsTheStartWithAClearMessage() throws Exception {
    Path notAKey = Files.writeString(dir.resolve("garbage.pem"), "not a key");
    InferenceConfig config = InferenceConfig.fromMap(Map.of("base.model", "m", "engine.addresses", "e:1",
        "kafka.bootstrap.servers", "k:1", "registry.url", "http://r", "server.tls.cert", server.cert().toString(),
        "server.tls.key", notAKey.toString()));
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
        () -> InferenceServer.serverCredentials(config));
    org.junit.jupiter.api.Assertions.assertTrue(e.getMessage().startsWith("cannot use the TLS files"), e.getMessage());
    service = null;
  }
}
