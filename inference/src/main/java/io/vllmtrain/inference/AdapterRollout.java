package io.vllmtrain.inference;

import io.vllmtrain.events.AdapterVersion;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Deque;
import java.util.HashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.regex.Pattern;

/**
 * The adapter rollout state machine, free of I/O: which versions exist, which one serves traffic, which to load or
 * unload next. {@link RolloutController} carries its decisions out on the engines and reports back.
 *
 * <p>States of a version and what moves it:
 * <ul>
 *   <li><b>PUBLISHED</b>: a record read from {@code llm.adapter-versions} that passed the checks: trusted (its
 *       signature, checked outside, and its run in the trusted runs if those are listed), version id of the form
 *       {@code <run>/vNNNNNN} matching run and number, number above the highest of its run that has <em>loaded</em>
 *       (a version that never loaded raises no bar), sha256 of 64 hex digits, our base model, a uri. Otherwise the
 *       record is <b>FAILED</b> with the reason (refused by a check).
 *   <li>PUBLISHED, READY or RETIRED → <b>LOADING</b> ({@link #loadStarted}): automatic rollout picks the newest good
 *       version published after the active one, skipping a version while a higher number of its run is still good
 *       (so a lower number published after a higher one waits behind it); or an operator's Activate.
 *   <li>LOADING → <b>READY</b> ({@link #loadSucceeded}: every replica in service has it); the number now is the
 *       bar of its run. READY → <b>ACTIVE</b> when traffic switches to it ({@link #activateAutomatically},
 *       {@link #activatePinned}); the version it replaces becomes READY.
 *   <li>LOADING → <b>FAILED</b> ({@link #loadFailed}: a replica refused it for good, e.g. NOT_FOUND, INVALID_ARGUMENT,
 *       FAILED_PRECONDITION or another sha256); traffic stays where it was.
 *   <li>LOADING → back to where it was ({@link #loadDeferred}: no replica could take it for now, all unreachable or
 *       a transient refusal): never FAILED for that; automatic rollout tries it again after a backoff of 1 s,
 *       doubling to at most a minute, or at once when a replica joins ({@link #replicaJoined}).
 *   <li>READY → <b>RETIRED</b> (unloaded) when it falls out of the last {@code keep} loaded versions.
 *   <li>ACTIVE → <b>FAILED</b> when an operator rolls back from it ({@link #rollBackTo}).
 * </ul>
 *
 * <p>Records of a version id seen before: once a version has loaded, its id names that content for good and later
 * records are ignored. A version that never loaded does not claim its id: a later trusted record replaces it (the
 * compacted topic keeps the last record per id, as a restart would see it); one that arrives during its load
 * replaces it if the load fails. An untrusted record replaces nothing.
 *
 * <p>Activate and Rollback pin the version they switch to: automatic rollout waits until {@link #resume()}.
 * Rollback also marks the version it leaves FAILED, so that resuming does not bring it back.
 *
 * <p>Thread-safe; {@link #resolve} reads the active version without a lock because every request calls it.
 */
public final class AdapterRollout {
  /** The version id that stands for the base model without an adapter (as in the proto). */
  public static final String BASE = "";
  /** What a caller puts in {@code adapter_version} to ask for the base model. */
  public static final String BASE_REQUEST = "base";

  public enum Status { PUBLISHED, LOADING, ACTIVE, READY, FAILED, RETIRED }

  /** One version as the API shows it. */
  public record VersionView(AdapterVersion spec, Status status, String failureReason, long activatedAtMs,
      boolean loaded) {
    public String id() {
      return spec.getVersionId();
    }
  }

  /** Whether automatic rollout runs, and what serves. */
  public record State(boolean paused, String active, Optional<String> pinned) {}

  /** A switch of the active version, and the versions to unload now that it happened. */
  public record Switch(String previous, String active, List<String> unload) {}

  /** The version named does not exist (never published, or refused before it was recorded). */
  public static final class UnknownVersionException extends RuntimeException {
    UnknownVersionException(String message) {
      super(message);
    }
  }

  private static final int HISTORY_LIMIT = 100;
  /** Backoff of a deferred load: 1 s, doubling, at most a minute. */
  static final long FIRST_RETRY_MS = 1_000;
  static final long MAX_RETRY_MS = 60_000;
  private static final Pattern SHA256 = Pattern.compile("[0-9a-f]{64}");

  private static final class Entry {
    final AdapterVersion spec;
    final long seq;
    Status status;
    String failureReason = "";
    boolean refusedByCheck;
    boolean loaded;
    // Was on every replica in service once: its content is what its id names from then on.
    boolean everLoaded;
    // A later record of this version that arrived while it was loading: it replaces this one if the load fails.
    AdapterVersion replacement;
    long activatedAtMs;
    // The status before loadStarted, to return to when a load is deferred.
    Status beforeLoad;
    // Loads deferred in a row (no replica could take it for now), and when automatic rollout may try again.
    int deferrals;
    long retryAtMs;

    Entry(AdapterVersion spec, long seq) {
      this.spec = spec;
      this.seq = seq;
    }

    VersionView view() {
      return new VersionView(spec, status, failureReason, activatedAtMs, loaded);
    }
  }

  private final String baseModel;
  private final int keep;
  private final List<String> trustedRuns;
  private final Map<String, Entry> versions = new LinkedHashMap<>(); // publish order
  // Highest version number of each run that was loaded on every replica: the bar a new version must pass.
  private final Map<String, Long> loadedNumberByRun = new HashMap<>();
  private final Deque<String> previouslyActive = new ArrayDeque<>(); // most recent last
  private long nextSeq;
  private volatile String active = BASE;
  private String pinned;
  private boolean paused;
  private String loading;

  public AdapterRollout(String baseModel, int keep) {
    this(baseModel, keep, List.of());
  }

  /**
   * With {@code trustedRuns} not empty, only versions of those runs pass the checks; an entry ending in {@code *}
   * stands for every run id that starts with what comes before it.
   */
  public AdapterRollout(String baseModel, int keep, List<String> trustedRuns) {
    if (keep < 2) {
      // With one, the previous version would be unloaded while requests that started on it are still running.
      throw new IllegalArgumentException("keep must be at least 2, got " + keep);
    }
    this.baseModel = baseModel;
    this.keep = keep;
    this.trustedRuns = List.copyOf(trustedRuns);
  }

  public String baseModel() {
    return baseModel;
  }

  /** The active version id, {@link #BASE} for the base model. */
  public String active() {
    return active;
  }

  /** Records a trusted version read from the topic; see {@link #publish(AdapterVersion, String)}. */
  public synchronized VersionView publish(AdapterVersion v) {
    return publish(v, null);
  }

  /**
   * Records a version read from the topic and returns how it stands. {@code untrusted} is null for a record that
   * passed the trust checks done outside (its signature), else why it did not: it is then FAILED.
   *
   * <p>A version id that has been loaded once names that content for good: a later record of it is ignored (its
   * current view is returned). A version id that never loaded does not claim its id: a later trusted record replaces
   * it (the compacted topic keeps only the last record of each id, so that is also what a restart sees); while the
   * first is loading, the later one replaces it if that load fails. An untrusted record never replaces anything.
   */
  public synchronized VersionView publish(AdapterVersion v, String untrusted) {
    Entry seen = versions.get(v.getVersionId());
    if (seen != null) {
      if (untrusted != null || seen.everLoaded) {
        return seen.view();
      }
      if (seen.status == Status.LOADING) {
        seen.replacement = v;
        return seen.view();
      }
      versions.remove(v.getVersionId());
    }
    Entry e = new Entry(v, nextSeq++);
    String refusal = untrusted != null ? untrusted : check(v);
    if (refusal == null) {
      e.status = Status.PUBLISHED;
    } else {
      e.status = Status.FAILED;
      e.failureReason = refusal;
      e.refusedByCheck = true;
    }
    versions.put(v.getVersionId(), e);
    return e.view();
  }

  /** Why a version must not be loaded, or null when it may. */
  String check(AdapterVersion v) {
    String expectedId = v.getRunId() + "/v" + String.format("%06d", v.getVersion());
    if (v.getVersionId().isBlank()) {
      return "version_id is empty";
    }
    if (v.getVersion() < 1) {
      return "version " + v.getVersion() + " is below 1";
    }
    if (!v.getVersionId().equals(expectedId)) {
      return "version_id '" + v.getVersionId() + "' does not match run_id and version (expected '" + expectedId + "')";
    }
    if (!trusted(v.getRunId())) {
      return "run '" + v.getRunId() + "' is not in rollout.trusted.runs";
    }
    // Only against versions that loaded: one that never did (a forged number pointing nowhere) raises no bar.
    Long loaded = loadedNumberByRun.get(v.getRunId());
    if (loaded != null && v.getVersion() <= loaded) {
      return "version " + v.getVersion() + " of run '" + v.getRunId() + "' is not above version " + loaded
          + ", which was loaded";
    }
    if (v.getSha256().isBlank()) {
      return "sha256 is missing";
    }
    if (!SHA256.matcher(v.getSha256()).matches()) {
      return "sha256 '" + v.getSha256() + "' is not 64 lower-case hex digits";
    }
    if (!baseModel.equals(v.getBaseModel())) {
      return "base model '" + v.getBaseModel() + "' is not the served base model '" + baseModel + "'";
    }
    if (v.getUri().isBlank()) {
      return "uri is empty";
    }
    return null;
  }

  private boolean trusted(String runId) {
    if (trustedRuns.isEmpty()) {
      return true;
    }
    for (String t : trustedRuns) {
      if (t.endsWith("*") ? runId.startsWith(t.substring(0, t.length() - 1)) : runId.equals(t)) {
        return true;
      }
    }
    return false;
  }

  /**
   * The version automatic rollout should load and activate next: the newest good version published after the
   * active one, skipping a version while a higher number of its run is still good (waiting to load, or loaded).
   * Empty while paused, pinned, while another load runs, and until {@code nowMs} reaches the retry time of that
   * version when its last load was deferred.
   */
  public synchronized Optional<AdapterVersion> nextAutomaticLoad(long nowMs) {
    return automaticCandidate().filter(e -> e.retryAtMs <= nowMs).map(e -> e.spec);
  }

  /** When automatic rollout may try its next version again, if its last load was deferred. */
  public synchronized Optional<Long> retryAt() {
    return automaticCandidate().filter(e -> e.retryAtMs > 0).map(e -> e.retryAtMs);
  }

  private Optional<Entry> automaticCandidate() {
    if (paused || pinned != null || loading != null) {
      return Optional.empty();
    }
    Map<String, Long> highestGood = new HashMap<>();
    for (Entry e : versions.values()) {
      if (e.status != Status.FAILED) {
        highestGood.merge(e.spec.getRunId(), e.spec.getVersion(), Math::max);
      }
    }
    long activeSeq = active.equals(BASE) ? -1 : versions.get(active).seq;
    Entry newest = null;
    for (Entry e : versions.values()) {
      boolean good = e.status == Status.PUBLISHED || e.status == Status.READY || e.status == Status.RETIRED;
      if (good && e.seq > activeSeq && e.spec.getVersion() >= highestGood.get(e.spec.getRunId())) {
        newest = e;
      }
    }
    return Optional.ofNullable(newest);
  }

  /** The controller starts loading {@code id} into the engines. */
  public synchronized void loadStarted(String id) {
    Entry e = entry(id);
    loading = id;
    e.beforeLoad = e.status;
    if (!e.loaded) {
      e.status = Status.LOADING;
    }
  }

  /**
   * No replica could take the version for now (all unreachable, or a transient refusal such as a deadline or busy
   * engine): not a fault of the version. It returns to where it was and automatic rollout tries it again after a
   * backoff (1 s, doubling, at most {@link #MAX_RETRY_MS}); returns that delay.
   */
  public synchronized long loadDeferred(String id, String reason, long nowMs) {
    Entry e = entry(id);
    if (id.equals(loading)) {
      loading = null;
    }
    if (e.status == Status.LOADING) {
      e.status = e.beforeLoad == null || e.beforeLoad == Status.LOADING ? Status.PUBLISHED : e.beforeLoad;
    }
    long delay = Math.min(MAX_RETRY_MS, FIRST_RETRY_MS << Math.min(16, e.deferrals));
    e.deferrals++;
    e.retryAtMs = nowMs + delay;
    e.failureReason = "not loaded yet, retrying in " + delay / 1000 + " s: " + reason;
    return delay;
  }

  /** A replica entered service: what waited for one may be tried at once. */
  public synchronized void replicaJoined() {
    for (Entry e : versions.values()) {
      e.retryAtMs = 0;
      e.deferrals = 0;
    }
  }

  /** Every replica in service has {@code id} now. It becomes READY unless it is the active version already. */
  public synchronized void loadSucceeded(String id) {
    Entry e = entry(id);
    if (id.equals(loading)) {
      loading = null;
    }
    e.loaded = true;
    e.everLoaded = true;
    e.replacement = null;
    e.deferrals = 0;
    e.retryAtMs = 0;
    loadedNumberByRun.merge(e.spec.getRunId(), e.spec.getVersion(), Math::max);
    if (e.status != Status.ACTIVE) {
      e.status = Status.READY;
      e.failureReason = "";
    }
  }

  /**
   * A replica refused the version: it is FAILED and traffic stays where it is. If a later record of it arrived
   * during the load, that one takes its place (PUBLISHED, or FAILED by the checks).
   */
  public synchronized void loadFailed(String id, String reason) {
    Entry e = entry(id);
    if (id.equals(loading)) {
      loading = null;
    }
    e.status = Status.FAILED;
    e.failureReason = reason;
    if (e.replacement != null && !e.everLoaded) {
      AdapterVersion next = e.replacement;
      e.replacement = null;
      versions.remove(id);
      publish(next);
    }
  }

  /**
   * After an automatic load: switches to {@code id} unless rollout was paused or pinned meanwhile or something
   * newer became active. Empty when no switch happened (the version stays READY).
   */
  public synchronized Optional<Switch> activateAutomatically(String id, long nowMs) {
    Entry e = entry(id);
    long activeSeq = active.equals(BASE) ? -1 : versions.get(active).seq;
    if (paused || pinned != null || !e.loaded || e.status == Status.FAILED || e.seq <= activeSeq) {
      return Optional.empty();
    }
    return Optional.of(switchTo(id, nowMs));
  }

  /**
   * Checks an operator's Activate: the version exists and passed the checks. Returns its spec, to be loaded
   * (where it is not yet) and then {@link #activatePinned activated}.
   */
  public synchronized AdapterVersion activationTarget(String id) {
    Entry e = versions.get(id);
    if (e == null) {
      throw new UnknownVersionException("version_id '" + id + "' is not a known adapter version");
    }
    if (e.refusedByCheck) {
      throw new IllegalStateException("version_id '" + id + "' was refused and cannot be activated: "
          + e.failureReason);
    }
    return e.spec;
  }

  /** Switches to a loaded version (or {@link #BASE}) and pins it: automatic rollout waits for resume. */
  public synchronized Switch activatePinned(String id, long nowMs) {
    if (!id.equals(BASE)) {
      Entry e = entry(id);
      if (!e.loaded) {
        throw new IllegalStateException("version_id '" + id + "' is not loaded");
      }
    }
    Switch s = switchTo(id, nowMs);
    pinned = id;
    return s;
  }

  /**
   * The version Rollback returns to: the most recent version active before the current one that has not failed
   * since; after a restart (no history), the newest good version published before the active one; else the base
   * model. Throws when the base model is active already.
   */
  public synchronized String rollbackTarget() {
    if (active.equals(BASE)) {
      throw new IllegalStateException("the base model is active: there is no earlier version to roll back to");
    }
    for (Iterator<String> it = previouslyActive.descendingIterator(); it.hasNext(); ) {
      String id = it.next();
      if (!id.equals(active) && versions.get(id).status != Status.FAILED) {
        return id;
      }
    }
    long activeSeq = versions.get(active).seq;
    String target = BASE;
    for (Entry e : versions.values()) {
      if (e.seq < activeSeq && e.status != Status.FAILED && e.status != Status.LOADING) {
        target = e.spec.getVersionId();
      }
    }
    return target;
  }

  /** Rolls back to a loaded {@code target}: the version left is marked FAILED so that resume does not return to it. */
  public synchronized Switch rollBackTo(String target, long nowMs) {
    String left = active;
    Switch s = activatePinned(target, nowMs);
    if (!left.equals(BASE)) {
      Entry e = versions.get(left);
      e.status = Status.FAILED;
      e.failureReason = "rolled back by an operator";
      // Re-prune: the version left is no longer worth keeping loaded.
      List<String> unload = new ArrayList<>(s.unload());
      unload.addAll(prune());
      s = new Switch(s.previous(), s.active(), List.copyOf(unload));
    }
    return s;
  }

  public synchronized State pause() {
    paused = true;
    return state();
  }

  /** Resumes automatic rollout and drops any pin; the caller then asks {@link #nextAutomaticLoad}. */
  public synchronized State resume() {
    paused = false;
    pinned = null;
    return state();
  }

  public synchronized State state() {
    return new State(paused, active, Optional.ofNullable(pinned));
  }

  /**
   * The version a request runs on: the active one when the caller left {@code requested} empty, the base model for
   * {@code "base"}, else the caller's version, which must be loaded (ACTIVE or READY).
   */
  public String resolve(String requested) {
    if (requested.isEmpty()) {
      return active;
    }
    if (requested.equals(BASE_REQUEST)) {
      return BASE;
    }
    synchronized (this) {
      Entry e = versions.get(requested);
      if (e == null) {
        throw new UnknownVersionException("adapter_version '" + requested + "' is not a known adapter version");
      }
      if (!e.loaded || e.status == Status.FAILED) {
        throw new IllegalStateException("adapter_version '" + requested + "' is " + e.status
            + (e.loaded ? "" : " and not loaded") + "; only ACTIVE and READY versions serve requests");
      }
      return requested;
    }
  }

  /** The versions that should be on every replica in service: the active one first, then the READY ones. */
  public synchronized List<AdapterVersion> loadedVersions() {
    List<AdapterVersion> out = new ArrayList<>();
    if (!active.equals(BASE)) {
      out.add(versions.get(active).spec);
    }
    for (Entry e : versions.values()) {
      if (e.loaded && e.status == Status.READY) {
        out.add(e.spec);
      }
    }
    return out;
  }

  public synchronized Optional<VersionView> view(String id) {
    return Optional.ofNullable(versions.get(id)).map(Entry::view);
  }

  /** Every version in publish order. */
  public synchronized List<VersionView> versions() {
    return versions.values().stream().map(Entry::view).toList();
  }

  private Entry entry(String id) {
    Entry e = versions.get(id);
    if (e == null) {
      throw new UnknownVersionException("version_id '" + id + "' is not a known adapter version");
    }
    return e;
  }

  private Switch switchTo(String id, long nowMs) {
    String previous = active;
    if (!previous.equals(BASE)) {
      Entry p = versions.get(previous);
      if (p.status == Status.ACTIVE) {
        p.status = Status.READY;
      }
    }
    if (!id.equals(BASE)) {
      Entry e = versions.get(id);
      e.status = Status.ACTIVE;
      e.failureReason = "";
      e.activatedAtMs = nowMs;
    }
    if (!previous.equals(id)) {
      previouslyActive.remove(previous);
      // The base model is what rollback falls back to anyway; remembering it would make the first version after a
      // restart roll back to the base model rather than to the version published before it.
      if (!previous.equals(BASE)) {
        previouslyActive.addLast(previous);
      }
      previouslyActive.remove(id);
      while (previouslyActive.size() > HISTORY_LIMIT) {
        previouslyActive.removeFirst();
      }
    }
    active = id;
    return new Switch(previous, id, prune());
  }

  /** Keeps the active version and the newest READY ones up to {@code keep} loaded; returns those to unload. */
  private List<String> prune() {
    List<Entry> newestFirst = new ArrayList<>(versions.values());
    Collections.reverse(newestFirst);
    int kept = active.equals(BASE) ? 0 : 1;
    List<String> unload = new ArrayList<>();
    for (Entry e : newestFirst) {
      String id = e.spec.getVersionId();
      if (!e.loaded || id.equals(active) || e.status == Status.LOADING) {
        continue;
      }
      if (e.status == Status.READY && kept < keep) {
        kept++;
        continue;
      }
      e.loaded = false;
      if (e.status == Status.READY) {
        e.status = Status.RETIRED;
      }
      unload.add(id);
    }
    return unload;
  }
}
