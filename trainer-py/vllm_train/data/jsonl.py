"""Reading examples from JSON Lines files, one object per line.

Preference lines: ``{"prompt": ..., "chosen": "...", "rejected": "...", "weight": 1.0}``; SFT lines:
``{"prompt": ..., "completion": "..."}``. ``prompt`` is a string or a list of ``{"role", "content"}`` messages
(``"messages"`` is accepted instead of ``"prompt"``). Errors name the file and line.
"""

from __future__ import annotations

import json
import os
from typing import Iterator

from vllm_train.data.examples import PreferenceExample, SFTExample, prompt_from_record


def _lines(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as e:
                raise ValueError(f"{path}:{number}: not valid JSON ({e})") from None
            if not isinstance(obj, dict):
                raise ValueError(f"{path}:{number}: expected a JSON object")
            yield number, obj


def _prompt(path, number, obj):
    prompt = obj.get("prompt", obj.get("messages"))
    if prompt is None:
        raise ValueError(f"{path}:{number}: missing 'prompt' (text or a list of messages)")
    return prompt_from_record(prompt)


def read_preference_jsonl(path: str | os.PathLike) -> list[PreferenceExample]:
    out = []
    for number, obj in _lines(path):
        missing = [k for k in ("chosen", "rejected") if not isinstance(obj.get(k), str)]
        if missing:
            raise ValueError(f"{path}:{number}: missing text field(s) {missing}")
        out.append(PreferenceExample(_prompt(path, number, obj), obj["chosen"], obj["rejected"],
                                     weight=float(obj.get("weight", 1.0)), pair_id=obj.get("pair_id")))
    return out


def read_sft_jsonl(path: str | os.PathLike) -> list[SFTExample]:
    out = []
    for number, obj in _lines(path):
        if not isinstance(obj.get("completion"), str):
            raise ValueError(f"{path}:{number}: missing text field 'completion'")
        out.append(SFTExample(_prompt(path, number, obj), obj["completion"]))
    return out
