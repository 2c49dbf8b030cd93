"""What LoadAdapter verifies before a backend sees an adapter: names, digests, URIs confined to the adapter root, the
trainer library's validator mapped to statuses, and tensor shapes against the engine's own model."""

import json
import os

import pytest

from vllm_train.engine.adapter_checks import (ModelShapes, check_adapter_name, check_sha256, resolve_adapter_uri,
                                              validate_adapter)
from vllm_train.engine.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied

from engine_testing import make_adapter


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "adapters"
    (root / "run-1" / "v000001").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    return root


@pytest.mark.parametrize("name", ["run-1/v000001", "a", "v1.2", "run_1:v3", "r@1+x"])
def test_adapter_version_ids_are_valid_names(name):
    assert check_adapter_name(name) == name


@pytest.mark.parametrize("name", ["", "/v1", ".hidden", "v 1", "v1\n", "x" * 201, "über"])
def test_other_names_are_invalid_argument(name):
    with pytest.raises(InvalidArgument, match="adapter name"):
        check_adapter_name(name)


def test_sha256_must_be_64_hex_digits_and_is_compared_lowercase():
    assert check_sha256("AB" * 32) == "ab" * 32
    for bad in ("", "ab" * 31, "zz" * 32):
        with pytest.raises(InvalidArgument, match="64 hex digits"):
            check_sha256(bad)


def test_file_uris_absolute_and_relative_paths_inside_the_root_resolve_to_the_directory(root):
    target = (root / "run-1" / "v000001").resolve()
    assert resolve_adapter_uri(target.as_uri(), root) == target
    assert resolve_adapter_uri("file://localhost" + str(target), root) == target
    assert resolve_adapter_uri(str(target), root) == target
    assert resolve_adapter_uri("run-1/v000001", root) == target
    assert resolve_adapter_uri("run-1/../run-1/v000001", root) == target


@pytest.mark.parametrize("uri", ["../outside", "run-1/../../outside", "/etc", "file:///etc", ".", ""])
def test_uris_that_escape_the_root_are_permission_denied(root, uri):
    if not uri:
        with pytest.raises(InvalidArgument, match="uri is empty"):
            resolve_adapter_uri(uri, root)
        return
    with pytest.raises(PermissionDenied, match="outside this engine's adapter root"):
        resolve_adapter_uri(uri, root)


def test_a_symlink_inside_the_root_pointing_outside_is_permission_denied(root):
    os.symlink(root.parent / "outside", root / "run-1" / "sneaky")
    with pytest.raises(PermissionDenied):
        resolve_adapter_uri("run-1/sneaky", root)


@pytest.mark.parametrize("uri, message", [
    ("s3://bucket/run-1/v000001", "scheme 's3' is not supported"),
    ("https://host/x", "scheme 'https' is not supported"),
    ("file://otherhost/run-1/v000001", "only local file:// URIs"),
])
def test_remote_uris_are_invalid_argument(root, uri, message):
    with pytest.raises(InvalidArgument, match=message):
        resolve_adapter_uri(uri, root)


def test_missing_directories_inside_the_root_are_not_found(root):
    with pytest.raises(NotFound, match="does not exist"):
        resolve_adapter_uri("run-1/v000009", root)
    (root / "run-1" / "file").write_text("x")
    with pytest.raises(NotFound, match="not a directory"):
        resolve_adapter_uri("run-1/file", root)


@pytest.fixture(scope="module")
def adapter(tiny_model, tmp_path_factory):
    return make_adapter(tiny_model, tmp_path_factory.mktemp("a") / "v1", seed=1, rank=8)


def edited_copy(adapter, tmp_path, **config_changes):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(adapter.path, copy)
    config = json.loads((copy / "adapter_config.json").read_text())
    config.update(config_changes)
    (copy / "adapter_config.json").write_text(json.dumps(config))
    return copy


def test_a_good_adapter_passes_and_reports_its_rank(adapter, tiny_model):
    info = validate_adapter(adapter.path, expected_sha256=adapter.sha256, base_model_name=tiny_model, max_rank=16)
    assert info.rank == 8 and info.sha256 == adapter.sha256


@pytest.mark.parametrize("changes, error, message", [
    (dict(use_dora=True), InvalidArgument, "DoRA"),
    (dict(bias="all"), InvalidArgument, "bias"),
    (dict(modules_to_save=["lm_head"]), InvalidArgument, "modules_to_save"),
    (dict(r=0), InvalidArgument, "r must be a positive integer"),
])
def test_adapters_vllm_cannot_serve_are_invalid_argument(adapter, tmp_path, changes, error, message):
    copy = edited_copy(adapter, tmp_path, **changes)
    with pytest.raises(error, match=message):
        validate_adapter(copy, expected_sha256=None, base_model_name=None, max_rank=64)


def test_a_rank_above_the_engine_maximum_is_failed_precondition(adapter):
    with pytest.raises(FailedPrecondition, match="rank 8 is above this engine's max LoRA rank 1"):
        validate_adapter(adapter.path, expected_sha256=adapter.sha256, base_model_name=None, max_rank=1)


def test_a_digest_mismatch_is_failed_precondition(adapter):
    with pytest.raises(FailedPrecondition, match="sha256 is .* expected"):
        validate_adapter(adapter.path, expected_sha256="0" * 64, base_model_name=None, max_rank=64)


def test_missing_files_are_not_found(adapter, tmp_path):
    copy = edited_copy(adapter, tmp_path)
    (copy / "adapter_model.safetensors").unlink()
    with pytest.raises(NotFound, match="adapter_model.safetensors is missing"):
        validate_adapter(copy, expected_sha256=None, base_model_name=None, max_rank=64)


def test_shapes_are_checked_against_the_engines_model(adapter, tiny_model, tmp_path):
    from transformers import AutoConfig

    shapes = ModelShapes.from_pretrained(tiny_model)
    shapes.check(adapter.path / "adapter_model.safetensors")  # made for this model: fits

    wider = tmp_path / "wider"
    config = AutoConfig.from_pretrained(tiny_model)
    config.hidden_size, config.head_dim = 256, 128
    config.save_pretrained(wider)
    with pytest.raises(FailedPrecondition, match="the adapter was made for another model"):
        ModelShapes.from_pretrained(str(wider)).check(adapter.path / "adapter_model.safetensors")


def test_every_reason_of_the_trainer_librarys_validator_has_a_status():
    import re

    from vllm_train.engine.adapter_checks import _REASON_TO_ERROR
    from vllm_train.lora import AdapterFormatError

    reasons = set(re.findall(r"``(\w+)``", AdapterFormatError.__doc__.split("Reasons:", 1)[1]))
    assert "sha256_mismatch" in reasons and reasons <= set(_REASON_TO_ERROR), reasons - set(_REASON_TO_ERROR)
