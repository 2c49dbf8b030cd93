package io.vllmtrain.inference;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.ManagedChannel;
import io.grpc.inprocess.InProcessChannelBuilder;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/** Which replica a request goes to. The channels are never called: routing is decided from replica state alone. */
class EngineRouterTest {
  final List<ManagedChannel> channels = new ArrayList<>();
  final EngineReplica a = replica("a:1");
  final EngineReplica b = replica("b:1");
  final EngineReplica c = replica("c:1");
  final EngineRouter router = new EngineRouter(List.of(a, b, c));

  EngineReplica replica(String name) {
    ManagedChannel ch = InProcessChannelBuilder.forName("unused-" + name).build();
    channels.add(ch);
    return new EngineReplica(name, ch);
  }

  static void serving(EngineReplica r, String... adapters) {
    r.startJoin();
    r.finishJoin(Set.of(adapters));
  }

  @AfterEach
  void close() {
    channels.forEach(ManagedChannel::shutdownNow);
  }

  @Test
  void theReplicaWithFewestOutstandingRequestsGetsTheNext() {
    serving(a);
    serving(b);
    serving(c);
    a.requestStarted();
    a.requestStarted();
    c.requestStarted();
    assertEquals(Optional.of(b), router.pick(AdapterRollout.BASE, Set.of()));
  }

  @Test
  void equallyLoadedReplicasShareTheTraffic() {
    serving(a);
    serving(b);
    serving(c);
    Map<EngineReplica, Integer> picks = new HashMap<>();
    for (int i = 0; i < 30; i++) {
      picks.merge(router.pick(AdapterRollout.BASE, Set.of()).orElseThrow(), 1, Integer::sum);
    }
    assertEquals(Map.of(a, 10, b, 10, c, 10), picks);
  }

  @Test
  void replicasDownOrJoiningGetNothing() {
    serving(a);
    b.startJoin();
    a.requestStarted();
    assertEquals(Optional.of(a), router.pick(AdapterRollout.BASE, Set.of()),
        "a busy replica in service beats an idle one that is still joining");
    a.markDown("health check failed");
    assertEquals(Optional.empty(), router.pick(AdapterRollout.BASE, Set.of()));
    assertTrue(router.inService().isEmpty());
  }

  @Test
  void aRequestForAnAdapterGoesOnlyWhereItIsLoaded() {
    serving(a, "run/v000001");
    serving(b, "run/v000001", "run/v000002");
    serving(c);
    for (int i = 0; i < 5; i++) {
      assertEquals(Optional.of(b), router.pick("run/v000002", Set.of()));
    }
    assertEquals(Optional.empty(), router.pick("run/v000003", Set.of()));
  }

  @Test
  void aReplicaThatFailedTheRequestIsSkippedOnRetry() {
    serving(a);
    serving(b);
    for (int i = 0; i < 5; i++) {
      assertEquals(Optional.of(b), router.pick(AdapterRollout.BASE, Set.of(a)));
    }
  }
}
