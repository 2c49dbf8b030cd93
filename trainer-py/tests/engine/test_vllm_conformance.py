"""The vllm backend uses only names, parameters and fields that exist in the pinned vLLM release.

METHOD: static reading of each supported release's source with ``ast`` (every test runs once per release in
:data:`vllm_train.compat.CHECKED_VLLM_RELEASES`). vLLM cannot run here (no GPU) and importing it would pull a second
torch, so each wheel is fetched once with ``pip download --no-deps`` into a cached folder (``<repo>/.cache/vllm-wheel``
or ``$VLLM_WHEEL_DIR``) and its ``.py`` files are parsed straight out of the zip; nothing of vLLM is imported or
executed. A release's tests skip only when its wheel is not cached and PyPI cannot be reached, saying why. The same
code ran for real on a GPU with vLLM 0.26.0 (tests/engine with ``--engine-backend vllm``; trainer-py/bench/GPU_E2E.md).

What is checked comes from the backend itself: the keyword dicts its helper functions build, its declared method and
field lists, and an AST scan of vllm_backend.py for any ``self._llm.*`` / ``self._api.*`` use not declared.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import zipfile
from functools import cached_property
from pathlib import Path

import pytest

from vllm_train import compat
from vllm_train.engine import vllm_backend
from vllm_train.engine.config import SUPPORTED_MAX_LORA_RANKS, EngineConfig
from vllm_train.engine.generation import SamplingSpec
from vllm_train.engine.registry import AdapterRecord

REPO = Path(__file__).resolve().parents[3]
WHEEL_DIR = Path(os.environ.get("VLLM_WHEEL_DIR") or REPO / ".cache" / "vllm-wheel")
METHOD = "ast over the source files of the vllm=={} wheel (not imported)"


def _wheel(version: str) -> Path:
    found = sorted(WHEEL_DIR.glob(f"vllm-{version}-*.whl"))
    if found:
        return found[0]
    WHEEL_DIR.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                               "--disable-pip-version-check", "-q", "-d", str(WHEEL_DIR), f"vllm=={version}"],
                              capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        pytest.skip(f"PyPI unreachable: pip download vllm=={version} timed out; conformance "
                    f"({METHOD.format(version)}) not checked")
    found = sorted(WHEEL_DIR.glob(f"vllm-{version}-*.whl"))
    if not found:
        reason = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        pytest.skip(f"PyPI unreachable: pip download vllm=={version} failed ({reason[0]}); conformance "
                    f"({METHOD.format(version)}) not checked")
    return found[0]


class WheelSource:
    """The parsed modules of the wheel, by dotted name."""

    def __init__(self, wheel: Path, version: str):
        self.wheel = wheel
        self.version = version
        self.zip = zipfile.ZipFile(wheel)
        self._trees: dict[str, ast.Module] = {}

    def module(self, dotted: str) -> ast.Module:
        if dotted not in self._trees:
            base = dotted.replace(".", "/")
            names = set(self.zip.namelist())
            path = f"{base}.py" if f"{base}.py" in names else f"{base}/__init__.py"
            assert path in names, f"module {dotted} is not in {self.wheel.name}"
            self._trees[dotted] = ast.parse(self.zip.read(path), filename=path)
        return self._trees[dotted]

    def cls(self, dotted: str, name: str) -> ast.ClassDef:
        for node in self.module(dotted).body:
            if isinstance(node, ast.ClassDef) and node.name == name:
                return node
        raise AssertionError(f"class {name} is not defined in {dotted} of {self.wheel.name}")

    def fields(self, dotted: str, name: str) -> list[str]:
        """Annotated class attributes (dataclass / msgspec / TypedDict fields), base classes of the same module
        included, in declaration order."""
        node = self.cls(dotted, name)
        out: list[str] = []
        for base in node.bases:
            if isinstance(base, ast.Name):
                try:
                    out += self.fields(dotted, base.id)
                except AssertionError:
                    pass  # a base from another module (msgspec.Struct, TypedDict...)
        out += [s.target.id for s in node.body if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)]
        return out

    def method(self, dotted: str, cls_name: str, method: str) -> ast.FunctionDef | ast.AsyncFunctionDef:
        for node in self.cls(dotted, cls_name).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == method:
                return node
        raise AssertionError(f"{cls_name}.{method} is not defined in {dotted} of {self.wheel.name}")


def params(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[list[str], list[str]]:
    """(positional parameter names without self/cls, keyword-only parameter names)."""
    positional = [a.arg for a in fn.args.posonlyargs + fn.args.args]
    if positional and positional[0] in ("self", "cls"):
        positional = positional[1:]
    return positional, [a.arg for a in fn.args.kwonlyargs]


@pytest.fixture(scope="module", params=compat.CHECKED_VLLM_RELEASES)
def src(request) -> WheelSource:
    return WheelSource(_wheel(request.param), request.param)


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> EngineConfig:
    return EngineConfig(model="Qwen/Qwen2.5-0.5B", backend="vllm", adapter_root=tmp_path_factory.mktemp("root"),
                        max_model_len=4096)


ADAPTER = AdapterRecord(name="run-1/v000001", int_id=1, path=Path("/adapters/run-1/v000001"), uri="", sha256="0" * 64,
                        rank=8)


def test_method_used_is_static_reading_of_the_pinned_wheel(src):
    print(f"vLLM conformance method: {METHOD.format(src.version)}; wheel {src.wheel}")
    assert src.wheel.name.startswith(f"vllm-{src.version}-")
    assert compat.is_supported(src.version)


def test_every_compat_name_is_defined_where_compat_imports_it(src):
    for name, module in compat.VLLM_NAMES.items():
        src.cls(module, name)


def test_public_exports_include_what_the_backend_uses(src):
    exports = next(node.value for node in src.module("vllm").body if isinstance(node, ast.Assign)
                   and any(isinstance(t, ast.Name) and t.id == "MODULE_ATTRS" for t in node.targets))
    exported = {k.value: v.value for k, v in zip(exports.keys, exports.values)}
    for name in ("AsyncEngineArgs", "SamplingParams", "RequestOutput", "CompletionOutput"):
        assert name in exported, f"vllm.{name} is not a public export"
        assert exported[name].split(":")[0].lstrip(".") == compat.VLLM_NAMES[name].removeprefix("vllm.")
    inputs = ast.unparse(src.module("vllm.inputs"))
    assert "TokensPrompt" in inputs, "vllm.inputs no longer exports TokensPrompt"


def test_engine_args_accept_every_keyword_the_backend_passes(src, config):
    fields = src.fields("vllm.engine.arg_utils", "EngineArgs") + src.fields("vllm.engine.arg_utils", "AsyncEngineArgs")
    bases = [ast.unparse(b) for b in src.cls("vllm.engine.arg_utils", "AsyncEngineArgs").bases]
    assert "EngineArgs" in bases
    for keyword in vllm_backend.engine_args_kwargs(config):
        assert keyword in fields, f"AsyncEngineArgs has no field {keyword!r} in vLLM {src.version}"


def test_max_lora_rank_choices_match_the_engine_config(src):
    literal = next(node.value for node in src.module("vllm.config.lora").body if isinstance(node, ast.Assign)
                   and any(isinstance(t, ast.Name) and t.id == "MaxLoRARanks" for t in node.targets))
    ranks = tuple(ast.literal_eval(e) for e in literal.slice.elts)
    assert ranks == SUPPORTED_MAX_LORA_RANKS


def test_async_llm_methods_exist_with_the_signatures_called(src):
    module = compat.VLLM_NAMES["AsyncLLM"]
    from_args = src.method(module, "AsyncLLM", "from_engine_args")
    assert any(ast.unparse(d) == "classmethod" for d in from_args.decorator_list)
    assert params(from_args)[0][0] == "engine_args"

    generate = src.method(module, "AsyncLLM", "generate")
    assert isinstance(generate, ast.AsyncFunctionDef)
    positional, keyword_only = params(generate)
    assert positional[:3] == ["prompt", "sampling_params", "request_id"]
    assert "lora_request" in keyword_only + positional
    assert any(isinstance(n, ast.Yield) for n in ast.walk(generate)), "generate is no longer an async generator"

    add_lora = src.method(module, "AsyncLLM", "add_lora")
    assert isinstance(add_lora, ast.AsyncFunctionDef) and params(add_lora)[0] == ["lora_request"]
    remove_lora = src.method(module, "AsyncLLM", "remove_lora")
    assert isinstance(remove_lora, ast.AsyncFunctionDef) and params(remove_lora)[0] == ["lora_id"]
    list_loras = src.method(module, "AsyncLLM", "list_loras")
    assert isinstance(list_loras, ast.AsyncFunctionDef) and params(list_loras) == ([], [])
    shutdown = src.method(module, "AsyncLLM", "shutdown")
    assert isinstance(shutdown, ast.FunctionDef), "shutdown is called without await"


def test_backend_uses_no_undeclared_vllm_attribute():
    tree = ast.parse(Path(vllm_backend.__file__).read_text())
    llm_calls, api_names = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) \
                and isinstance(node.value.value, ast.Name) and node.value.value.id == "self":
            if node.value.attr == "_llm":
                llm_calls.add(node.attr)
            elif node.value.attr == "_api":
                api_names.add(node.attr)
        if isinstance(node, ast.Attribute) and ast.unparse(node.value) == "self._api.AsyncLLM":
            llm_calls.add(node.attr)
    assert llm_calls <= set(vllm_backend.ASYNC_LLM_METHODS), llm_calls - set(vllm_backend.ASYNC_LLM_METHODS)
    assert api_names <= set(compat.VLLM_NAMES) | {"version"}, api_names - set(compat.VLLM_NAMES)


def test_sampling_params_have_every_field_the_backend_sets(src):
    fields = src.fields(compat.VLLM_NAMES["SamplingParams"], "SamplingParams")
    spec = SamplingSpec(n=2, temperature=0.7, top_p=0.9, max_tokens=16, seed=3, stop=("\n",))
    for keyword in vllm_backend.sampling_params_kwargs(spec, output_kind="DELTA"):
        assert keyword in fields, f"SamplingParams has no field {keyword!r} in vLLM {src.version}"


def test_lora_request_takes_name_int_id_path_in_that_order(src):
    fields = src.fields(compat.VLLM_NAMES["LoRARequest"], "LoRARequest")
    assert fields[:3] == ["lora_name", "lora_int_id", "lora_path"]
    assert list(vllm_backend.lora_request_kwargs(ADAPTER)) == fields[:3]


def test_outputs_have_every_field_the_backend_reads(src):
    module = compat.VLLM_NAMES["RequestOutput"]
    init = src.method(module, "RequestOutput", "__init__")
    assigned = {t.attr for n in ast.walk(init) if isinstance(n, ast.Assign) for t in n.targets
                if isinstance(t, ast.Attribute) and ast.unparse(t.value) == "self"}
    for field in vllm_backend.REQUEST_OUTPUT_FIELDS:
        assert field in assigned, f"RequestOutput has no attribute {field!r} in vLLM {src.version}"
    completion_fields = src.fields(compat.VLLM_NAMES["CompletionOutput"], "CompletionOutput")
    for field in vllm_backend.COMPLETION_OUTPUT_FIELDS:
        assert field in completion_fields, f"CompletionOutput has no field {field!r} in vLLM {src.version}"


def test_tokens_prompt_is_the_dict_the_backend_builds(src):
    fields = src.fields("vllm.inputs.llm", "TokensPrompt")
    assert set(vllm_backend.tokens_prompt([1, 2])) <= set(fields)


def test_every_finish_reason_vllm_emits_is_mapped(src):
    strings = next(node.value for node in src.module("vllm.v1.engine").body if isinstance(node, ast.Assign)
                   and any(isinstance(t, ast.Name) and t.id == "FINISH_REASON_STRINGS" for t in node.targets))
    reasons = set(ast.literal_eval(strings))
    assert reasons <= set(vllm_backend.FINISH_REASONS) | {vllm_backend.VLLM_RETRYABLE_ERROR}


def test_the_output_kinds_the_backend_asks_for_exist(src):
    kinds = src.cls(compat.VLLM_NAMES["RequestOutputKind"], "RequestOutputKind")
    members = {t.id for node in kinds.body if isinstance(node, ast.Assign) for t in node.targets
               if isinstance(t, ast.Name)}
    assert set(vllm_backend.OUTPUT_KINDS.values()) <= members


def test_final_only_outputs_carry_every_completion_of_a_parallel_request(src):
    """The unary path reads ONE output with all n completions (full text and token ids) under FINAL_ONLY; that is
    ParentRequest's aggregation of its children's final outputs."""
    get_outputs = ast.unparse(src.method("vllm.v1.engine.parallel_sampling", "ParentRequest", "get_outputs"))
    assert "FINAL_ONLY" in get_outputs and "output_aggregator" in get_outputs
