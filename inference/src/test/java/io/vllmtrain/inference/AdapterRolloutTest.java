package io.vllmtrain.inference;

import static io.vllmtrain.inference.AdapterRollout.Status.ACTIVE;
import static io.vllmtrain.inference.AdapterRollout.Status.FAILED;
import static io.vllmtrain.inference.AdapterRollout.Status.PUBLISHED;
import static io.vllmtrain.inference.AdapterRollout.Status.READY;
import static io.vllmtrain.inference.AdapterRollout.Status.RETIRED;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.vllmtrain.events.AdapterVersion;
import io.vllmtrain.inference.AdapterRollout.Status;
import io.vllmtrain.inference.AdapterRollout.Switch;
import java.util.List;
import java.util.Optional;
import org.junit.jupiter.api.Test;

/** The rollout state machine, driven with values: what it checks, loads, activates, keeps, and rolls back to. */
class AdapterRolloutTest {
  static final long NOW = 1_000;

  final AdapterRollout rollout = new AdapterRollout(Versions.BASE_MODEL, 3);

  /** Publishes and runs one automatic rollout to completion, as the controller does when every replica loads it. */
  Switch rollOut(AdapterVersion v) {
    return rollOut(v, true);
  }

  Switch rollOut(AdapterVersion v, boolean publish) {
    if (publish) {
      rollout.publish(v);
    }
    assertEquals(Optional.of(v), rollout.nextAutomaticLoad(NOW));
    rollout.loadStarted(v.getVersionId());
    rollout.loadSucceeded(v.getVersionId());
    return rollout.activateAutomatically(v.getVersionId(), NOW).orElseThrow();
  }

  Status status(String id) {
    return rollout.view(id).orElseThrow().status();
  }

  String id(int n) {
    return Versions.id("run-1", n);
  }

  @Test
  void theBaseModelServesUntilAVersionIsRolledOut() {
    assertEquals(AdapterRollout.BASE, rollout.active());
    assertEquals(Optional.empty(), rollout.nextAutomaticLoad(NOW));
    assertEquals(AdapterRollout.BASE, rollout.resolve(""));
  }

  @Test
  void aPublishedVersionIsLoadedThenActivated() {
    AdapterVersion v1 = Versions.of("run-1", 1);
    assertEquals(PUBLISHED, rollout.publish(v1).status());
    rollout.loadStarted(id(1));
    assertEquals(Status.LOADING, status(id(1)));
    assertEquals(AdapterRollout.BASE, rollout.active(), "traffic moves only once every replica has it");
    rollout.loadSucceeded(id(1));
    Switch s = rollout.activateAutomatically(id(1), NOW).orElseThrow();
    assertEquals(new Switch(AdapterRollout.BASE, id(1), List.of()), s);
    assertEquals(ACTIVE, status(id(1)));
    assertEquals(id(1), rollout.resolve(""));
  }

  @Test
  void theNextVersionReplacesTheActiveOneWhichStaysReadyForRollback() {
    rollOut(Versions.of("run-1", 1));
    rollOut(Versions.of("run-1", 2));
    assertEquals(id(2), rollout.active());
    assertEquals(READY, status(id(1)));
    assertEquals(id(1), rollout.resolve(id(1)), "a READY version still serves callers that pin it");
  }

  @Test
  void versionsBeyondTheLastKeepAreRetired() {
    rollOut(Versions.of("run-1", 1));
    rollOut(Versions.of("run-1", 2));
    rollOut(Versions.of("run-1", 3));
    Switch s = rollOut(Versions.of("run-1", 4));
    assertEquals(List.of(id(1)), s.unload());
    assertEquals(RETIRED, status(id(1)));
    assertEquals(List.of(READY, READY, ACTIVE), List.of(status(id(2)), status(id(3)), status(id(4))));
    assertEquals(List.of(id(4), id(2), id(3)),
        rollout.loadedVersions().stream().map(AdapterVersion::getVersionId).toList(),
        "what a joining replica must hold: the active version first, then the ones kept for rollback");
  }

  @Test
  void automaticRolloutSkipsToTheNewestWhenSeveralArriveAtOnce() {
    rollout.publish(Versions.of("run-1", 1));
    rollout.publish(Versions.of("run-1", 2));
    rollout.publish(Versions.of("run-1", 3));
    assertEquals(id(3), rollout.nextAutomaticLoad(NOW).orElseThrow().getVersionId());
  }

  @Test
  void onlyOneLoadRunsAtATime() {
    rollout.publish(Versions.of("run-1", 1));
    rollout.loadStarted(id(1));
    rollout.publish(Versions.of("run-1", 2));
    assertEquals(Optional.empty(), rollout.nextAutomaticLoad(NOW));
    rollout.loadSucceeded(id(1));
    assertEquals(id(2), rollout.nextAutomaticLoad(NOW).orElseThrow().getVersionId());
  }

  @Test
  void aLoadFailureMarksTheVersionFailedAndTrafficStays() {
    rollOut(Versions.of("run-1", 1));
    rollout.publish(Versions.of("run-1", 2));
    rollout.loadStarted(id(2));
    rollout.loadFailed(id(2), "replica b: NOT_FOUND adapter directory missing");
    assertEquals(id(1), rollout.active());
    assertEquals(FAILED, status(id(2)));
    assertEquals("replica b: NOT_FOUND adapter directory missing", rollout.view(id(2)).orElseThrow().failureReason());
    assertEquals(Optional.empty(), rollout.nextAutomaticLoad(NOW), "a failed version is not retried automatically");
    assertThrows(IllegalStateException.class, () -> rollout.resolve(id(2)));
  }

  @Test
  void aLoadThatNoReplicaCouldTakeForNowIsRetriedWithGrowingBackoffNotFailed() {
    rollOut(Versions.of("run-1", 1));
    rollout.publish(Versions.of("run-1", 2));
    rollout.loadStarted(id(2));
    assertEquals(1_000, rollout.loadDeferred(id(2), "no replica could be reached", NOW));
    assertEquals(PUBLISHED, status(id(2)), "an outage is not a fault of the version");
    assertEquals(Optional.of(NOW + 1_000), rollout.retryAt());
    assertEquals(Optional.empty(), rollout.nextAutomaticLoad(NOW + 999), "waits out its backoff");
    assertEquals(id(2), rollout.nextAutomaticLoad(NOW + 1_000).orElseThrow().getVersionId());
    rollout.loadStarted(id(2));
    assertEquals(2_000, rollout.loadDeferred(id(2), "engine-b: DEADLINE_EXCEEDED", NOW + 1_000));
    rollout.loadStarted(id(2));
    assertEquals(4_000, rollout.loadDeferred(id(2), "engine-b: DEADLINE_EXCEEDED", NOW + 3_000));
    assertEquals(Optional.empty(), rollout.nextAutomaticLoad(NOW + 3_001));
    rollout.replicaJoined();
    assertEquals(id(2), rollout.nextAutomaticLoad(NOW + 3_001).orElseThrow().getVersionId(),
        "a replica that (re)joins is news: retry at once");
    rollout.loadStarted(id(2));
    rollout.loadSucceeded(id(2));
    assertEquals(Optional.empty(), rollout.retryAt());
    assertEquals(id(2), rollout.activateAutomatically(id(2), NOW).orElseThrow().active());
  }

  @Test
  void theBackoffIsCappedAtAMinute() {
    rollout.publish(Versions.of("run-1", 1));
    long delay = 0;
    for (int i = 0; i < 12; i++) {
      rollout.loadStarted(id(1));
      delay = rollout.loadDeferred(id(1), "no replica could be reached", NOW);
    }
    assertEquals(60_000, delay);
  }

  @Test
  void aNewerVersionDoesNotWaitForTheBackoffOfAnOlderOne() {
    rollout.publish(Versions.of("run-1", 1));
    rollout.loadStarted(id(1));
    rollout.loadDeferred(id(1), "no replica could be reached", NOW);
    rollout.publish(Versions.of("run-1", 2));
    assertEquals(id(2), rollout.nextAutomaticLoad(NOW).orElseThrow().getVersionId());
  }

  @Test
  void afterARestartTheNewestGoodVersionOfTheHistoryIsLoadedAndAFailureFallsBackToTheOneBefore() {
    for (int n = 1; n <= 5; n++) {
      rollout.publish(Versions.of("run-1", n));
    }
    assertEquals(id(5), rollout.nextAutomaticLoad(NOW).orElseThrow().getVersionId());
    rollout.loadStarted(id(5));
    rollout.loadFailed(id(5), "directory deleted");
    assertEquals(id(4), rollout.nextAutomaticLoad(NOW).orElseThrow().getVersionId());
  }

  @Test
  void checksRefuseMalformedVersions() {
    assertEquals("sha256 is missing",
        rollout.publish(Versions.builder("run-1", 1).setSha256("").build()).failureReason());
    assertTrue(rollout.publish(Versions.builder("run-1", 2).setSha256("ABC").build()).failureReason()
        .startsWith("sha256 'ABC' is not 64 lower-case hex digits"));
    assertEquals("base model 'other-model' is not the served base model 'tiny-base'",
        rollout.publish(Versions.builder("run-1", 3).setBaseModel("other-model").build()).failureReason());
    assertTrue(rollout.publish(Versions.builder("run-1", 4).setVersionId("run-1/v4").build()).failureReason()
        .contains("expected 'run-1/v000004'"));
    assertEquals("version 0 is below 1", rollout.publish(Versions.builder("run-1", 0).build()).failureReason());
    for (var v : rollout.versions()) {
      assertEquals(FAILED, v.status());
    }
    assertEquals(Optional.empty(), rollout.nextAutomaticLoad(NOW));
  }

  @Test
  void versionNumbersMustGrowWithinARun() {
    rollOut(Versions.of("run-1", 5));
    var stale = rollout.publish(Versions.of("run-1", 3));
    assertEquals(FAILED, stale.status());
    assertEquals("version 3 of run 'run-1' is not above version 5, which was loaded", stale.failureReason());
    assertEquals(PUBLISHED, rollout.publish(Versions.of("run-2", 1)).status(), "another run counts from 1");
  }

  @Test
  void aForgedHighVersionThatFailsToLoadDoesNotRaiseTheBarForTheRealOnes() {
    rollOut(Versions.of("run-z", 1));
    rollout.publish(Versions.builder("run-z", 999_999).setUri("nowhere").build());
    String forged = Versions.id("run-z", 999_999);
    assertEquals(forged, rollout.nextAutomaticLoad(NOW).orElseThrow().getVersionId());
    rollout.loadStarted(forged);
    rollout.loadFailed(forged, "engine-a: NOT_FOUND adapter directory nowhere does not exist");
    for (int n = 2; n <= 3; n++) {
      assertEquals(PUBLISHED, rollout.publish(Versions.of("run-z", n)).status(), "the real v" + n);
      rollOut(Versions.of("run-z", n), false);
      assertEquals(Versions.id("run-z", n), rollout.active());
    }
  }

  @Test
  void aLowerVersionPublishedWhileAHigherOneIsPendingWaitsBehindIt() {
    rollout.publish(Versions.of("run-1", 5));
    assertEquals(PUBLISHED, rollout.publish(Versions.of("run-1", 3)).status());
    assertEquals(id(5), rollout.nextAutomaticLoad(NOW).orElseThrow().getVersionId(), "the higher number goes first");
    rollout.loadStarted(id(5));
    rollout.loadFailed(id(5), "directory deleted");
    assertEquals(id(3), rollout.nextAutomaticLoad(NOW).orElseThrow().getVersionId(), "v5 failed: v3 is the newest");
  }

  @Test
  void aRecordThatNeverLoadedDoesNotClaimItsVersionId() {
    rollOut(Versions.of("run-1", 1));
    rollout.publish(Versions.builder("run-1", 2).setUri("nowhere").setSha256(Versions.sha(77)).build());
    rollout.loadStarted(id(2));
    rollout.loadFailed(id(2), "engine-a: NOT_FOUND nowhere");
    var real = rollout.publish(Versions.of("run-1", 2));
    assertEquals(PUBLISHED, real.status(), "the later record of a version that never loaded replaces it");
    assertEquals(Versions.sha(2), real.spec().getSha256());
    rollOut(Versions.of("run-1", 2), false);
    assertEquals(id(2), rollout.active());

    rollout.publish(Versions.builder("run-1", 3).setSha256("garbage").build());
    assertEquals(PUBLISHED, rollout.publish(Versions.of("run-1", 3)).status(), "a record refused by a check either");

    var impostor = rollout.publish(Versions.builder("run-1", 2).setUri("elsewhere").setSha256(Versions.sha(78))
        .build());
    assertEquals(ACTIVE, impostor.status(), "a version that loaded keeps its content");
    assertEquals(Versions.sha(2), impostor.spec().getSha256());
  }

  @Test
  void aRecordForTheVersionBeingLoadedReplacesItIfTheLoadFails() {
    rollout.publish(Versions.builder("run-1", 1).setUri("nowhere").build());
    rollout.loadStarted(id(1));
    rollout.publish(Versions.builder("run-1", 1).setUri("run-1/v000001-fixed").build());
    rollout.loadFailed(id(1), "NOT_FOUND nowhere");
    assertEquals(PUBLISHED, status(id(1)));
    assertEquals("run-1/v000001-fixed", rollout.nextAutomaticLoad(NOW).orElseThrow().getUri());
  }

  @Test
  void onlyTrustedRunsAreLoadedWhenTheyAreListed() {
    AdapterRollout trusting = new AdapterRollout(Versions.BASE_MODEL, 3, List.of("run-1", "prod-*"));
    assertEquals(PUBLISHED, trusting.publish(Versions.of("run-1", 1)).status());
    assertEquals(PUBLISHED, trusting.publish(Versions.of("prod-7", 1)).status());
    var forged = trusting.publish(Versions.of("run-z", 999_999));
    assertEquals(FAILED, forged.status());
    assertEquals("run 'run-z' is not in rollout.trusted.runs", forged.failureReason());
  }

  @Test
  void anUntrustedRecordIsRefusedAndNeverReplacesAVersion() {
    var unsigned = rollout.publish(Versions.of("run-1", 1), "not signed");
    assertEquals(FAILED, unsigned.status());
    assertEquals("not signed", unsigned.failureReason());
    assertEquals(PUBLISHED, rollout.publish(Versions.of("run-1", 1)).status(), "the trusted record replaces it");
    var forged = rollout.publish(Versions.builder("run-1", 1).setSha256(Versions.sha(66)).build(), "bad signature");
    assertEquals(PUBLISHED, forged.status());
    assertEquals(Versions.sha(1), forged.spec().getSha256(), "an untrusted record replaces nothing");
  }

  @Test
  void aVersionDeliveredAgainIsTheSameVersion() {
    rollOut(Versions.of("run-1", 1));
    assertEquals(ACTIVE, rollout.publish(Versions.of("run-1", 1)).status());
    assertEquals(1, rollout.versions().size());
  }

  @Test
  void rollbackReturnsToThePreviousVersionPinsItAndMarksTheBadOneFailed() {
    rollOut(Versions.of("run-1", 1));
    rollOut(Versions.of("run-1", 2));
    assertEquals(id(1), rollout.rollbackTarget());
    Switch s = rollout.rollBackTo(id(1), NOW);
    assertEquals(id(1), rollout.active());
    assertEquals(List.of(id(2)), s.unload(), "the version rolled back from is unloaded");
    assertEquals(FAILED, status(id(2)));
    assertEquals(Optional.of(id(1)), rollout.state().pinned());
    rollout.publish(Versions.of("run-1", 3));
    assertEquals(Optional.empty(), rollout.nextAutomaticLoad(NOW), "pinned: no automatic rollout");
    rollout.resume();
    assertEquals(id(3), rollout.nextAutomaticLoad(NOW).orElseThrow().getVersionId(),
        "resuming goes forward to new versions, never back to the one rolled back from");
  }

  @Test
  void rollbackFromTheFirstVersionReturnsToTheBaseModel() {
    rollOut(Versions.of("run-1", 1));
    assertEquals(AdapterRollout.BASE, rollout.rollbackTarget());
    rollout.rollBackTo(AdapterRollout.BASE, NOW);
    assertEquals(AdapterRollout.BASE, rollout.active());
    assertThrows(IllegalStateException.class, rollout::rollbackTarget, "nothing before the base model");
  }

  @Test
  void rollbackAfterARestartGoesToTheNewestGoodVersionPublishedBefore() {
    for (int n = 1; n <= 3; n++) {
      rollout.publish(Versions.of("run-1", n));
    }
    rollout.loadStarted(id(3));
    rollout.loadSucceeded(id(3));
    rollout.activateAutomatically(id(3), NOW);
    assertEquals(id(2), rollout.rollbackTarget(), "no history after a restart: the one published before");
  }

  @Test
  void pausedRolloutLoadsNothingAndALoadFinishedDuringThePauseDoesNotSwitch() {
    rollOut(Versions.of("run-1", 1));
    rollout.publish(Versions.of("run-1", 2));
    rollout.loadStarted(id(2));
    rollout.pause();
    rollout.loadSucceeded(id(2));
    assertEquals(Optional.empty(), rollout.activateAutomatically(id(2), NOW));
    assertEquals(READY, status(id(2)));
    rollout.publish(Versions.of("run-1", 3));
    assertEquals(Optional.empty(), rollout.nextAutomaticLoad(NOW));
    rollout.resume();
    assertEquals(id(3), rollout.nextAutomaticLoad(NOW).orElseThrow().getVersionId());
  }

  @Test
  void activatePinsAnOlderVersion() {
    rollOut(Versions.of("run-1", 1));
    rollOut(Versions.of("run-1", 2));
    assertEquals(Versions.of("run-1", 1), rollout.activationTarget(id(1)));
    rollout.activatePinned(id(1), NOW);
    assertEquals(id(1), rollout.active());
    assertEquals(READY, status(id(2)));
    assertEquals(Optional.of(id(1)), rollout.state().pinned());
  }

  @Test
  void activateRefusesUnknownAndRefusedVersions() {
    rollout.publish(Versions.builder("run-1", 1).setSha256("").build());
    assertThrows(AdapterRollout.UnknownVersionException.class, () -> rollout.activationTarget("run-1/v000009"));
    IllegalStateException e = assertThrows(IllegalStateException.class, () -> rollout.activationTarget(id(1)));
    assertTrue(e.getMessage().contains("sha256 is missing"), e.getMessage());
  }

  @Test
  void requestsMayPinOnlyLoadedVersions() {
    rollOut(Versions.of("run-1", 1));
    rollout.publish(Versions.of("run-1", 2));
    assertEquals(AdapterRollout.BASE, rollout.resolve("base"));
    assertThrows(AdapterRollout.UnknownVersionException.class, () -> rollout.resolve("run-1/v000042"));
    IllegalStateException e = assertThrows(IllegalStateException.class, () -> rollout.resolve(id(2)));
    assertEquals("adapter_version 'run-1/v000002' is PUBLISHED and not loaded; only ACTIVE and READY versions "
        + "serve requests", e.getMessage());
  }

  @Test
  void keepBelowTwoIsRefused() {
    assertThrows(IllegalArgumentException.class, () -> new AdapterRollout(Versions.BASE_MODEL, 1));
  }
}
