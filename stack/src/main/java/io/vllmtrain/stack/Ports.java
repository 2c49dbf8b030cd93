package io.vllmtrain.stack;

import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;

/** Loopback port checks: free-port picking and a clear error when a port is taken. */
public final class Ports {
  private Ports() {}

  public static int free() {
    try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
      s.setReuseAddress(true);
      return s.getLocalPort();
    } catch (IOException e) {
      throw new IllegalStateException("no free loopback port: " + e.getMessage(), e);
    }
  }

  /** Resolves 0 to a free port; otherwise fails with a message that names the setting to change. */
  public static int claim(int port, String what, String envName) {
    if (port == 0) {
      return free();
    }
    if (isOpen("127.0.0.1", port)) {
      throw new StackException("port " + port + " (" + what + ") is already in use on 127.0.0.1: stop what uses it "
          + "(./pipeline status shows whether it is this stack) or choose another port with " + envName + "=<port>");
    }
    try (ServerSocket s = new ServerSocket(port, 1, InetAddress.getLoopbackAddress())) {
      return port;
    } catch (IOException e) {
      throw new StackException("port " + port + " (" + what + ") cannot be bound on 127.0.0.1 (" + e.getMessage()
          + "): choose another with " + envName + "=<port>");
    }
  }

  public static boolean isOpen(String host, int port) {
    try (Socket s = new Socket()) {
      s.connect(new InetSocketAddress(host, port), 200);
      return true;
    } catch (IOException e) {
      return false;
    }
  }
}
