"""The README's Python snippet runs as printed against a running stack (keeps the README true)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.stack

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_snippet_produces_and_consumes_a_prompt_event(stack, tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    snippet = next(b for b in blocks if "AvroCodec" in b and "PromptEvent" in b)
    (tmp_path / "snippet.py").write_text(snippet)
    out = subprocess.run([sys.executable, str(tmp_path / "snippet.py")], env={**os.environ, **stack.env},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "'request_id':" in out.stdout and "'prompt':" in out.stdout
