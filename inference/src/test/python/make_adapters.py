"""Test fixture for the inference service's real-engine tests and benchmark: the tiny model and LoRA adapter
versions of it, written by the trainer library (vllm_train.lora.save_lora), as the trainer would publish them.

    python make_adapters.py --root DIR --run RUN --versions 1 2 3 [--seed 7]

Prints one JSON object: {"model": <tiny model dir>, "adapters": [{"version_id", "version", "uri", "sha256",
"rank", "alpha", "target_modules"}...]}. Adapter directories are DIR/RUN/vNNNNNN (uri relative to DIR, as an
engine started with --adapter-root DIR resolves it). Each version gets different random weights, so greedy outputs
differ from version to version.
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", required=True, help="adapter root directory (created if missing)")
    p.add_argument("--run", default="run-1", help="run id: adapters go to ROOT/RUN/vNNNNNN")
    p.add_argument("--versions", type=int, nargs="*", default=[], help="version numbers to write")
    p.add_argument("--seed", type=int, default=0, help="added to each version number to seed its weights")
    p.add_argument("--rank", type=int, default=8)
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(1)  # shared machine
    from pathlib import Path

    from vllm_train.tiny_model import tiny_model_path

    model = str(tiny_model_path(0))
    out = []
    if args.versions:
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM

        from vllm_train.lora import save_lora

        root = Path(args.root)
        root.mkdir(parents=True, exist_ok=True)
        targets = ["q_proj", "v_proj"]
        for number in args.versions:
            rel = f"{args.run}/v{number:06d}"
            torch.manual_seed(1000 * args.seed + number)
            base = AutoModelForCausalLM.from_pretrained(model)
            peft_model = get_peft_model(base, LoraConfig(r=args.rank, lora_alpha=2 * args.rank, target_modules=targets,
                                                         init_lora_weights=False, lora_dropout=0.0))
            # Large enough to move the tiny model's greedy choices, so each version answers differently.
            with torch.no_grad():
                for name, param in peft_model.named_parameters():
                    if "lora_B" in name:
                        param.mul_(20.0)
            info = save_lora(peft_model, root / rel, base_model_name=model)
            out.append({"version_id": rel, "version": number, "uri": rel, "sha256": info.sha256,
                        "rank": info.rank, "alpha": float(2 * args.rank), "target_modules": targets})
    print(json.dumps({"model": model, "adapters": out}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
