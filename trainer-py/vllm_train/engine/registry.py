"""Which adapters an engine serves, and which requests are using each: :class:`AdapterRegistry`.

Pure bookkeeping, no I/O and no waiting, so every rule can be tested with values:

- An adapter goes LOADING → READY → DRAINING → gone. Only READY adapters take new requests.
- Names are versions. A name that is loaded, loading or draining is refused (ALREADY_EXISTS); nothing is reloaded in
  place. After an unload the name stays bound to its content digest for the life of the process: loading it again
  is allowed only for the same sha256 (a rollback to the same immutable directory), never for other content.
- Every request takes a :class:`Lease` on the adapter it starts with and gives it back when it ends. The lease holds
  the adapter's record, so a request keeps its adapter whatever is loaded or unloaded meanwhile.
- An unload first stops new requests (DRAINING), then completes only when the last lease is returned; the registry
  says when that happens (:meth:`release` and :meth:`begin_unload` return True) and the caller does the waiting.
- Each load gets a new integer id (vLLM's ``lora_int_id``), never reused, so no engine cache can confuse two loads.

Thread-safe: one lock guards every method, and no method blocks.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path

from vllm_train.engine.errors import AlreadyExists, FailedPrecondition, NotFound


class AdapterState(Enum):
    LOADING = "loading"
    READY = "ready"
    DRAINING = "draining"


@dataclass(frozen=True)
class AdapterRecord:
    """One load of one adapter version: what a request needs to run on it."""

    name: str
    int_id: int            # unique per load, >= 1
    path: Path             # resolved directory inside the adapter root
    uri: str               # as the client sent it
    sha256: str
    rank: int


@dataclass
class _Entry:
    record: AdapterRecord
    state: AdapterState
    in_flight: int = 0


@dataclass(frozen=True)
class Lease:
    """A request's hold on an adapter (``record`` None = the base model). Return it with :meth:`AdapterRegistry.release`."""

    record: AdapterRecord | None
    serial: int


@dataclass(frozen=True)
class AdapterView:
    record: AdapterRecord
    state: AdapterState
    in_flight: int


class AdapterRegistry:
    """The adapters of one engine and the requests in flight on each (see the module doc for the rules)."""

    def __init__(self, max_loras: int):
        if max_loras < 1:
            raise ValueError(f"max_loras must be at least 1, not {max_loras}")
        self.max_loras = max_loras
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._retired: dict[str, str] = {}    # name -> sha256 of every adapter ever unloaded
        self._next_int_id = 1
        self._base_in_flight = 0
        self._open_leases: set[int] = set()
        self._next_serial = 0

    # --- loading -------------------------------------------------------------------------------------------------

    def begin_load(self, name: str, path: Path, uri: str, sha256: str, rank: int = 0) -> AdapterRecord:
        """Reserves ``name`` (state LOADING) and allocates its int id; refuses taken names and full engines."""
        with self._lock:
            existing = self._entries.get(name)
            if existing is not None:
                raise AlreadyExists(f"adapter {name!r} is already {existing.state.value} (from {existing.record.uri}); "
                                    "names are versions and are never reloaded in place: publish a new version "
                                    "under a new name, or unload this one first")
            retired_sha = self._retired.get(name)
            if retired_sha is not None and retired_sha != sha256:
                raise AlreadyExists(f"adapter name {name!r} was used for other content (sha256 {retired_sha[:12]}…) "
                                    "and names are versions: load this content under a new name")
            if len(self._entries) >= self.max_loras:
                loaded = ", ".join(sorted(self._entries))
                raise FailedPrecondition(f"this engine holds its maximum of {self.max_loras} adapters ({loaded}); "
                                         "unload one before loading another (or raise --max-loras)")
            record = AdapterRecord(name=name, int_id=self._next_int_id, path=path, uri=uri, sha256=sha256, rank=rank)
            self._next_int_id += 1
            self._entries[name] = _Entry(record, AdapterState.LOADING)
            return record

    def finish_load(self, name: str, rank: int | None = None) -> AdapterRecord:
        """LOADING → READY: from now on requests may use it. ``rank`` records what verification found."""
        with self._lock:
            entry = self._require(name, AdapterState.LOADING)
            if rank is not None:
                entry.record = replace(entry.record, rank=rank)
            entry.state = AdapterState.READY
            return entry.record

    def abort_load(self, name: str) -> None:
        """Forgets a load that failed; the name is free again (nothing was served under it)."""
        with self._lock:
            self._require(name, AdapterState.LOADING)
            del self._entries[name]

    # --- requests ------------------------------------------------------------------------------------------------

    def acquire(self, name: str) -> Lease:
        """A lease on adapter ``name`` (empty = base model) for one request; refuses anything not READY."""
        with self._lock:
            if not name:
                self._base_in_flight += 1
                record = None
            else:
                entry = self._entries.get(name)
                if entry is None:
                    loaded = ", ".join(sorted(n for n, e in self._entries.items()
                                              if e.state is AdapterState.READY)) or "none"
                    raise NotFound(f"adapter {name!r} is not loaded on this engine (loaded: {loaded}); "
                                   "load it with LoadAdapter first, or leave adapter empty for the base model")
                if entry.state is AdapterState.LOADING:
                    raise FailedPrecondition(f"adapter {name!r} is still loading; send requests once LoadAdapter "
                                             "has returned")
                if entry.state is AdapterState.DRAINING:
                    raise FailedPrecondition(f"adapter {name!r} is being unloaded and takes no new requests")
                entry.in_flight += 1
                record = entry.record
            self._next_serial += 1
            self._open_leases.add(self._next_serial)
            return Lease(record, self._next_serial)

    def release(self, lease: Lease) -> bool:
        """Returns a lease (once; later calls are ignored). True when this completed the drain of an unloading
        adapter, i.e. the caller should now finish the unload."""
        with self._lock:
            if lease.serial not in self._open_leases:
                return False
            self._open_leases.discard(lease.serial)
            if lease.record is None:
                self._base_in_flight -= 1
                return False
            entry = self._entries.get(lease.record.name)
            if entry is None or entry.record.int_id != lease.record.int_id:
                return False
            entry.in_flight -= 1
            return entry.state is AdapterState.DRAINING and entry.in_flight == 0

    # --- unloading -----------------------------------------------------------------------------------------------

    def begin_unload(self, name: str) -> bool:
        """READY → DRAINING: no new requests. True when nothing is in flight (finish the unload now); False means the
        last :meth:`release` will say so. Unloading an adapter already draining is allowed and changes nothing."""
        with self._lock:
            entry = self._entries.get(name)
            if entry is None:
                raise NotFound(f"adapter {name!r} is not loaded on this engine; nothing to unload")
            if entry.state is AdapterState.LOADING:
                raise FailedPrecondition(f"adapter {name!r} is still loading; unload it once LoadAdapter has returned")
            entry.state = AdapterState.DRAINING
            return entry.in_flight == 0

    def is_drained(self, name: str) -> bool:
        with self._lock:
            entry = self._entries.get(name)
            return entry is None or (entry.state is AdapterState.DRAINING and entry.in_flight == 0)

    def finish_unload(self, name: str) -> AdapterRecord:
        """Drops a drained adapter; its name stays bound to its digest."""
        with self._lock:
            entry = self._require(name, AdapterState.DRAINING)
            if entry.in_flight:
                raise FailedPrecondition(f"adapter {name!r} still has {entry.in_flight} requests in flight")
            del self._entries[name]
            self._retired[name] = entry.record.sha256
            return entry.record

    # --- views ---------------------------------------------------------------------------------------------------

    def get(self, name: str) -> AdapterView | None:
        with self._lock:
            entry = self._entries.get(name)
            return None if entry is None else AdapterView(entry.record, entry.state, entry.in_flight)

    def adapters(self) -> list[AdapterView]:
        """Every adapter known now, in load order."""
        with self._lock:
            views = [AdapterView(e.record, e.state, e.in_flight) for e in self._entries.values()]
        return sorted(views, key=lambda v: v.record.int_id)

    @property
    def in_flight(self) -> int:
        """Requests in flight on the base model and on every adapter."""
        with self._lock:
            return self._base_in_flight + sum(e.in_flight for e in self._entries.values())

    def _require(self, name: str, state: AdapterState) -> _Entry:
        entry = self._entries.get(name)
        if entry is None or entry.state is not state:
            now = "absent" if entry is None else entry.state.value
            raise FailedPrecondition(f"adapter {name!r} is {now}, not {state.value}")
        return entry
