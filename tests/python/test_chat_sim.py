"""examples/chat_sim/chat_sim.py runs against a real daemon, verifies every loaded byte and
reports hits on the shared system prompt and conversation histories."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(os.environ.get("KVTIER_SOURCE_DIR") or pathlib.Path(__file__).parents[2])


def test_chat_sim(daemon):
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "chat_sim" / "chat_sim.py"), "--socket",
         daemon.socket, "--conversations", "4", "--turns", "4", "--json"],
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr + out.stdout
    s = json.loads(out.stdout)
    assert s["mismatched_blocks"] == 0
    assert s["requests"] == 16
    # All but the very first request find at least the system prompt cached.
    assert 0.5 < s["hit_ratio"] < 1.0
    assert s["time_saved_s"] > 0
    # The plain-text report too.
    text = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "chat_sim" / "chat_sim.py"), "--socket",
         daemon.socket, "--conversations", "2", "--turns", "2"],
        capture_output=True, text=True, timeout=120, check=True).stdout
    assert "hit ratio" in text and "time saved" in text
