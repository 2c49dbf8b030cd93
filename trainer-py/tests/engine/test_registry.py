"""AdapterRegistry: which adapters an engine serves and which requests use each (pure logic, no model)."""

from pathlib import Path

import pytest

from vllm_train.engine.errors import AlreadyExists, FailedPrecondition, NotFound
from vllm_train.engine.registry import AdapterRegistry, AdapterState

SHA_A, SHA_B = "a" * 64, "b" * 64


def loaded(registry: AdapterRegistry, name: str, sha: str = SHA_A):
    registry.begin_load(name, Path(f"/srv/adapters/{name}"), f"file:///srv/adapters/{name}", sha)
    return registry.finish_load(name, rank=8)


def test_a_name_is_servable_only_after_its_load_finished():
    registry = AdapterRegistry(max_loras=4)
    registry.begin_load("run/v1", Path("/srv/adapters/run/v1"), "uri", SHA_A)
    with pytest.raises(FailedPrecondition, match="still loading"):
        registry.acquire("run/v1")
    registry.finish_load("run/v1", rank=16)
    lease = registry.acquire("run/v1")
    assert lease.record.name == "run/v1" and lease.record.rank == 16


def test_loading_a_name_that_is_loaded_or_loading_is_already_exists():
    registry = AdapterRegistry(max_loras=4)
    loaded(registry, "v1")
    with pytest.raises(AlreadyExists, match="never reloaded in place"):
        registry.begin_load("v1", Path("/srv/adapters/other"), "uri", SHA_B)
    registry.begin_load("v2", Path("/srv/adapters/v2"), "uri", SHA_B)
    with pytest.raises(AlreadyExists):
        registry.begin_load("v2", Path("/srv/adapters/v2"), "uri", SHA_B)


def test_an_unloaded_name_comes_back_only_with_the_same_content():
    registry = AdapterRegistry(max_loras=4)
    first = loaded(registry, "v1", SHA_A)
    assert registry.begin_unload("v1") is True
    registry.finish_unload("v1")
    with pytest.raises(AlreadyExists, match="other content"):
        registry.begin_load("v1", Path("/srv/adapters/v1"), "uri", SHA_B)
    again = registry.begin_load("v1", Path("/srv/adapters/v1"), "uri", SHA_A)
    assert again.int_id != first.int_id


def test_a_failed_load_frees_its_name():
    registry = AdapterRegistry(max_loras=4)
    registry.begin_load("v1", Path("/srv/adapters/v1"), "uri", SHA_A)
    registry.abort_load("v1")
    assert registry.get("v1") is None
    loaded(registry, "v1", SHA_B)


def test_int_ids_are_never_reused():
    registry = AdapterRegistry(max_loras=2)
    ids = []
    for name in ("v1", "v2"):
        ids.append(loaded(registry, name).int_id)
    registry.begin_unload("v1")
    registry.finish_unload("v1")
    ids.append(loaded(registry, "v3").int_id)
    assert len(set(ids)) == 3 and min(ids) >= 1


def test_a_full_engine_refuses_more_adapters_until_one_is_unloaded():
    registry = AdapterRegistry(max_loras=2)
    loaded(registry, "v1")
    loaded(registry, "v2")
    with pytest.raises(FailedPrecondition, match="maximum of 2 adapters"):
        registry.begin_load("v3", Path("/srv/adapters/v3"), "uri", SHA_A)
    registry.begin_unload("v1")
    registry.finish_unload("v1")
    loaded(registry, "v3")


def test_requests_on_unknown_adapters_are_not_found_and_name_what_is_loaded():
    registry = AdapterRegistry(max_loras=4)
    loaded(registry, "v1")
    with pytest.raises(NotFound, match=r"'v9' is not loaded .*loaded: v1"):
        registry.acquire("v9")


def test_unload_stops_new_requests_at_once_and_completes_with_the_last_one():
    registry = AdapterRegistry(max_loras=4)
    loaded(registry, "v1")
    first, second = registry.acquire("v1"), registry.acquire("v1")
    assert registry.begin_unload("v1") is False          # two requests still running
    with pytest.raises(FailedPrecondition, match="being unloaded"):
        registry.acquire("v1")
    with pytest.raises(FailedPrecondition, match="still has 2 requests"):
        registry.finish_unload("v1")
    assert registry.release(first) is False
    assert registry.release(second) is True              # the last one: the unload may complete now
    registry.finish_unload("v1")
    assert registry.get("v1") is None


def test_in_flight_requests_keep_the_adapter_they_started_with():
    registry = AdapterRegistry(max_loras=4)
    old = loaded(registry, "v1", SHA_A)
    lease = registry.acquire("v1")
    registry.begin_unload("v1")
    loaded(registry, "v2", SHA_B)                        # the next version arrives meanwhile
    assert lease.record == old and lease.record.sha256 == SHA_A
    assert registry.get("v1").in_flight == 1


def test_a_lease_is_returned_once_and_counts_stay_exact():
    registry = AdapterRegistry(max_loras=4)
    loaded(registry, "v1")
    lease, base = registry.acquire("v1"), registry.acquire("")
    assert base.record is None and registry.in_flight == 2
    registry.release(lease)
    registry.release(lease)                              # a second release changes nothing
    registry.release(base)
    assert registry.in_flight == 0 and registry.get("v1").in_flight == 0


def test_unloading_unknown_or_loading_adapters_is_refused():
    registry = AdapterRegistry(max_loras=4)
    with pytest.raises(NotFound):
        registry.begin_unload("v1")
    registry.begin_load("v1", Path("/srv/adapters/v1"), "uri", SHA_A)
    with pytest.raises(FailedPrecondition, match="still loading"):
        registry.begin_unload("v1")


def test_views_list_adapters_in_load_order_with_their_state():
    registry = AdapterRegistry(max_loras=4)
    loaded(registry, "b")
    loaded(registry, "a")
    registry.begin_load("c", Path("/srv/adapters/c"), "uri", SHA_A)
    registry.begin_unload("b")
    assert [(v.record.name, v.state) for v in registry.adapters()] == [
        ("b", AdapterState.DRAINING), ("a", AdapterState.READY), ("c", AdapterState.LOADING)]
