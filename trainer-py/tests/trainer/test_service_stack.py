"""The trainer service against the real embedded broker + schema registry: batches in, versions out, exactly once."""

import dataclasses
import time
import urllib.request

import pytest

from vllm_train.data.synthetic import synthetic_pairs
from vllm_train.lora import adapter_sha256, validate_adapter_dir
from vllm_train.service.versions import RunFolders

from service_harness import (
    BATCHES,
    ServiceProcess,
    ServiceThread,
    Stack,
    batch_record,
    clean_batches,
    pair_record,
    poisoned_batch,
    service_config,
    write_properties,
)

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def kafka(stack):
    return Stack(stack)


def test_batches_in_a_version_out_with_offsets_committed_in_the_same_transaction(kafka, stack, tiny_model, tmp_path):
    config = service_config(stack, tiny_model, tmp_path)
    start = kafka.start_group_at_end(config.group_id)
    batches = clean_batches(2, pairs_each=6, base_model=tiny_model, seed=1)
    service = ServiceThread(config)
    try:
        kafka.produce_batches(batches)
        versions = kafka.wait_versions(config, 1)
        metrics_text = urllib.request.urlopen(f"http://127.0.0.1:{service.service.metrics_port}/metrics").read()
    finally:
        service.stop()
    assert len(versions) == 1
    v = versions[0]
    assert (v["version_id"], v["version"], v["parent_version"]) == (f"{config.run_id}/v000001", 1, None)
    assert v["batch_ids"] == [b["batch_id"] for b in batches]
    assert v["offsets"] == [{"topic": BATCHES, "partition": 0, "offset": start + 2}]
    assert kafka.committed(config.group_id) == start + 2  # committed with the version, not before or apart
    assert v["uri"] == f"{config.run_id}/v000001"
    folder = tmp_path / v["uri"]
    info = validate_adapter_dir(folder, base_model_name=tiny_model, max_rank=8, expected_sha256=v["sha256"])
    assert v["sha256"] == adapter_sha256(folder) == info.sha256
    assert (v["rank"], v["alpha"], v["base_model"]) == (8, 16.0, tiny_model)
    assert v["metrics"]["steps"] == 4 and v["metrics"]["pairs"] == 12  # 2 batches x 6 pairs, 4 pairs per step
    assert 0 < v["metrics"]["loss"] < 1
    assert (RunFolders(tmp_path, config.run_id).state_dir(1) / "trainer_state.pt").exists()
    assert b"vllm_train_versions_total{outcome=\"published\"} 1.0" in metrics_text
    assert b"vllm_train_steps_total 4.0" in metrics_text


def _assert_exactly_once(kafka, config, adapter_root, batches, start):
    """Every batch in exactly one published version, versions numbered 1..n once each, offsets at the end."""
    versions = sorted(kafka.versions(config), key=lambda v: v["version"])
    ids = [v["version_id"] for v in versions]
    assert len(ids) == len(set(ids)), f"a version was published twice: {ids}"
    assert [v["version"] for v in versions] == list(range(1, len(versions) + 1))
    trained = [b for v in versions for b in v["batch_ids"]]
    assert sorted(trained) == sorted(b["batch_id"] for b in batches), "a batch was lost or trained twice"
    assert kafka.committed(config.group_id) == start + len(batches)
    folders = sorted(p.name for p in (adapter_root / config.run_id).iterdir() if not p.name.startswith("."))
    assert folders == [f"v{n:06d}" for n in range(1, len(versions) + 1)]
    for v in versions:
        assert adapter_sha256(adapter_root / v["uri"]) == v["sha256"]
    for parent, child in zip(versions, versions[1:]):
        assert child["parent_version"] == parent["version_id"]
    return versions


@pytest.mark.slow
def test_kill_9_during_training_loses_nothing_and_trains_nothing_twice(kafka, stack, tiny_model, tmp_path):
    config = service_config(stack, tiny_model, tmp_path, publish_every_batches=3)
    start = kafka.start_group_at_end(config.group_id)
    conf_file = write_properties(config, tmp_path / "trainer.properties")
    batches = clean_batches(3, pairs_each=6, base_model=tiny_model, seed=2)
    first = ServiceProcess(conf_file, tmp_path / "first.log")
    try:
        first.wait_for("starting run")
        kafka.produce_batches(batches[:2])
        first.wait_for(f"batch {batches[1]['batch_id']}")  # a step of the second batch: mid-window
    finally:
        first.kill9()
    assert kafka.versions(config) == [] and kafka.committed(config.group_id) == start

    second = ServiceProcess(conf_file, tmp_path / "second.log")
    try:
        kafka.produce_batches(batches[2:])
        assert len(kafka.wait_versions(config, 1)) == 1
    finally:
        exit_code = second.terminate()
    assert exit_code == 0, second.log()  # SIGTERM: a clean stop
    (v,) = _assert_exactly_once(kafka, config, tmp_path, batches, start)
    assert (v["metrics"]["pairs"], v["metrics"]["steps"]) == (18, 6)  # the killed run's steps are not counted


@pytest.mark.slow
@pytest.mark.parametrize("point", ["publish.after_state", "publish.after_adapter", "publish.before_commit",
                                   "publish.after_commit"])
def test_kill_9_while_publishing_then_restart_publishes_each_version_once(kafka, stack, tiny_model, tmp_path, point):
    config = service_config(stack, tiny_model, tmp_path)
    start = kafka.start_group_at_end(config.group_id)
    conf_file = write_properties(config, tmp_path / "trainer.properties")
    batches = clean_batches(4, pairs_each=4, base_model=tiny_model, seed=3)
    first = ServiceProcess(conf_file, tmp_path / "first.log", failpoint=point)
    try:
        kafka.produce_batches(batches[:2])
        first.wait_for(f"failpoint {point} reached")
    finally:
        first.kill9()
    committed_before_kill = point == "publish.after_commit"
    assert len(kafka.versions(config)) == (1 if committed_before_kill else 0)
    assert kafka.committed(config.group_id) == (start + 2 if committed_before_kill else start)

    second = ServiceProcess(conf_file, tmp_path / "second.log")
    try:
        second.wait_for("resuming run" if committed_before_kill else "starting run")
        kafka.produce_batches(batches[2:])
        kafka.wait_versions(config, 2)
    finally:
        second.terminate()
    v1, v2 = _assert_exactly_once(kafka, config, tmp_path, batches, start)
    assert v1["batch_ids"] == [b["batch_id"] for b in batches[:2]]
    assert v2["batch_ids"] == [b["batch_id"] for b in batches[2:]]
    assert v2["metrics"]["steps"] == 4  # one step per 4-pair batch, none repeated


def test_bad_records_go_to_the_dlq_with_a_reason_and_duplicates_are_skipped(kafka, stack, tiny_model, tmp_path):
    config = service_config(stack, tiny_model, tmp_path)
    start = kafka.start_group_at_end(config.group_id)
    dlq_start = kafka.end_offset("llm.dlq")
    good = clean_batches(2, pairs_each=4, base_model=tiny_model, seed=4)
    same_text = batch_record([pair_record(e, tiny_model, chosen="same", rejected="same")
                              for e in synthetic_pairs(2, seed=5)])
    service = ServiceThread(config)
    try:
        kafka.produce_raw(b"junk", b"this is not Avro")
        kafka.produce_batches([same_text, good[0], good[0], good[1]])
        kafka.wait_versions(config, 1)
    finally:
        service.stop()
    (v,) = kafka.versions(config)
    assert v["batch_ids"] == [good[0]["batch_id"], good[1]["batch_id"]]
    assert kafka.committed(config.group_id) == start + 5
    dead = [d for d in kafka.dlq_records(dlq_start) if d[2].get("dlq.component") == "trainer"
            and int(d[2]["dlq.source.offset"]) >= start]
    assert [(d[0], d[2]["dlq.source.offset"]) for d in dead] == [(b"junk", str(start)),
                                                                 (same_text["batch_id"].encode(), str(start + 1))]
    assert dead[0][1] == b"this is not Avro"  # the original bytes, untouched
    assert "undecodable PreferenceBatch: not a schema-registry framed Avro record" in dead[0][2]["dlq.reason"]
    assert "chosen and rejected are the same text" in dead[1][2]["dlq.reason"]
    assert dead[0][2]["dlq.source.topic"] == BATCHES


def test_the_quality_gate_refuses_a_version_trained_on_a_poisoned_batch(kafka, stack, tiny_model, tmp_path):
    config = service_config(stack, tiny_model, tmp_path, publish_every_batches=1)
    config = dataclasses.replace(config, heldout_percent=30.0, gate_min_pairs=4)
    start = kafka.start_group_at_end(config.group_id)
    dlq_start = kafka.end_offset("llm.dlq")
    clean = clean_batches(3, pairs_each=20, base_model=tiny_model, seed=6)
    poison = poisoned_batch(64, base_model=tiny_model, seed=7)
    service = ServiceThread(config)
    try:
        kafka.produce_batches(clean[:2])
        kafka.wait_versions(config, 2)
        kafka.produce_batches([poison])
        deadline = time.monotonic() + 120
        while kafka.committed(config.group_id) < start + 3 and time.monotonic() < deadline:
            time.sleep(0.5)  # the poisoned window is committed (refused) before the next clean batch arrives
        kafka.produce_batches(clean[2:])
        versions = kafka.wait_versions(config, 3)
    finally:
        service.stop()
    assert [v["batch_ids"] for v in sorted(versions, key=lambda v: v["version"])] == \
        [[clean[0]["batch_id"]], [clean[1]["batch_id"]], [clean[2]["batch_id"]]]
    assert versions[1]["metrics"]["reward_accuracy"] >= 0.9
    assert kafka.committed(config.group_id) == start + 4
    dead = [d for d in kafka.dlq_records(dlq_start) if d[0] == poison["batch_id"].encode()]
    assert len(dead) == 1 and "quality gate refused" in dead[0][2]["dlq.reason"]
    assert "below the previous version's" in dead[0][2]["dlq.reason"]
