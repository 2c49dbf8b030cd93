"""Generates the Python side of the contracts from ``schemas/`` (the one source of truth).

Writes, inside the package (git-ignored):
- ``vllm_train/proto/v1/*_pb2.py`` and ``*_pb2_grpc.py`` from ``schemas/src/main/proto`` (grpcio-tools' protoc);
- ``vllm_train/_schemas/avro/<Name>.avsc``: every Avro type with its named dependencies inlined, ready to register;
- ``vllm_train/_schemas/topics.json``: the topic table.

Run ``python -m vllm_train.codegen`` (``./pipeline test`` and ``./pipeline demo`` do it for you);
``python -m vllm_train.codegen --release v2`` freezes the current schemas for the compatibility guard.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_SCHEMAS = PACKAGE_DIR.parent.parent / "schemas" / "src" / "main"
GENERATED_SCHEMAS = PACKAGE_DIR / "_schemas"
GENERATED_PROTO = PACKAGE_DIR / "proto"


def inline_avro_schemas(avro_dir: Path) -> dict[str, dict]:
    """Loads every ``.avsc`` under ``avro_dir`` and returns {short name: schema with named types inlined}.

    A named type is inlined at its first use within each top-level schema and referenced by full name after that,
    which is what Avro parsers (and the registry) expect of a self-contained schema.
    """
    named: dict[str, dict] = {}
    for path in sorted(avro_dir.rglob("*.avsc")):
        schema = json.loads(path.read_text())
        full = f"{schema['namespace']}.{schema['name']}"
        named[full] = schema

    def expand(node, seen: set[str], namespace: str):
        if isinstance(node, str):
            full = node if "." in node else f"{namespace}.{node}"
            if full in named:
                if full in seen:
                    return full
                seen.add(full)
                return expand(named[full], seen, namespace)
            return node
        if isinstance(node, list):
            return [expand(n, seen, namespace) for n in node]
        if isinstance(node, dict):
            out = dict(node)
            t = node.get("type")
            if t in ("record", "error"):
                seen.add(f"{node.get('namespace', namespace)}.{node['name']}")
                out["fields"] = [dict(f, type=expand(f["type"], seen, namespace)) for f in node["fields"]]
            elif t == "array":
                out["items"] = expand(node["items"], seen, namespace)
            elif t == "map":
                out["values"] = expand(node["values"], seen, namespace)
            elif isinstance(t, (dict, list)) or (isinstance(t, str) and t not in ("enum", "fixed")):
                out["type"] = expand(t, seen, namespace)
            return out
        return node

    return {s["name"]: expand(s, set(), s["namespace"]) for s in named.values()}


def generate(schemas_root: Path = REPO_SCHEMAS, quiet: bool = False) -> None:
    if not schemas_root.is_dir():
        raise SystemExit(f"schemas folder not found at {schemas_root}: run from a checkout of vllm-train")
    from grpc_tools import protoc  # imported late: only needed at generation time

    proto_root = schemas_root / "proto"
    protos = sorted(str(p) for p in proto_root.rglob("*.proto"))
    if GENERATED_PROTO.exists():
        shutil.rmtree(GENERATED_PROTO)
    include = Path(protoc.__file__).parent / "_proto"
    args = ["protoc", f"-I{proto_root}", f"-I{include}", f"--python_out={PACKAGE_DIR.parent}",
            f"--pyi_out={PACKAGE_DIR.parent}", f"--grpc_python_out={PACKAGE_DIR.parent}", *protos]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed on " + " ".join(protos))
    for d in [GENERATED_PROTO, *[p for p in GENERATED_PROTO.rglob("*") if p.is_dir()]]:
        (d / "__init__.py").touch()

    if GENERATED_SCHEMAS.exists():
        shutil.rmtree(GENERATED_SCHEMAS)
    (GENERATED_SCHEMAS / "avro").mkdir(parents=True)
    for name, schema in inline_avro_schemas(schemas_root / "avro").items():
        (GENERATED_SCHEMAS / "avro" / f"{name}.avsc").write_text(json.dumps(schema, indent=1))
    shutil.copy(schemas_root / "resources" / "vllm_train" / "topics.json", GENERATED_SCHEMAS / "topics.json")
    if not quiet:
        print(f"generated {len(protos)} proto modules and the Avro schemas into {PACKAGE_DIR}")


def ensure_generated() -> None:
    """Generates the contracts when they are missing or older than ``schemas/`` (in a checkout)."""
    marker = GENERATED_SCHEMAS / "topics.json"
    if not REPO_SCHEMAS.is_dir():
        if not marker.exists():
            raise RuntimeError("vllm_train was installed without its generated contracts")
        return
    newest = max(p.stat().st_mtime for p in REPO_SCHEMAS.rglob("*") if p.is_file())
    if not marker.exists() or marker.stat().st_mtime < newest:
        generate(quiet=True)


TOPIC_VALUE_TYPES = ("PromptEvent", "ResponseEvent", "FeedbackEvent", "PreferencePair", "PreferenceBatch",
                     "AdapterVersion")


def release(version: str, schemas_root: Path = REPO_SCHEMAS) -> Path:
    """Freezes the current topic-value schemas as ``schemas/released/<version>/``: the compatibility test checks
    every later change against the newest released version (BACKWARD: new readers read old data)."""
    out = schemas_root.parent.parent / "released" / version
    if out.exists():
        raise SystemExit(f"{out} exists: released schemas are immutable; pick a new version")
    out.mkdir(parents=True)
    schemas = inline_avro_schemas(schemas_root / "avro")
    for name in TOPIC_VALUE_TYPES:
        (out / f"{name}.avsc").write_text(json.dumps(schemas[name], indent=1) + "\n")
    print(f"released {len(TOPIC_VALUE_TYPES)} schemas as {out}")
    return out


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--release":
        release(sys.argv[2])
    elif len(sys.argv) == 1:
        generate()
    else:
        raise SystemExit("usage: python -m vllm_train.codegen [--release VERSION]")
