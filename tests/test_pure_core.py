"""The pure core imports no event loop and no I/O library: the session machine, the
control point, the FTMS codec and sans-I/O client, the envelope, the watchdog, the plan
and the profile compiler run the same under asyncio, in a plain loop or in a test."""

from __future__ import annotations

import json
import subprocess
import sys

PURE = [
    "retrotread.machine",
    "retrotread.control_point",
    "retrotread.observations",
    "retrotread.ftms.codec",
    "retrotread.ftms.client",
    "retrotread.envelope",
    "retrotread.watchdog",
    "retrotread.authority",
    "retrotread.plan",
    "retrotread.profile",
    "retrotread.formatting",
    "retrotread.units",
]
FORBIDDEN = ["asyncio", "bleak", "aiomqtt", "aiohttp", "sounddevice", "pocketsphinx"]


def test_the_pure_core_imports_no_event_loop_and_no_io_library() -> None:
    code = (
        "import importlib, json, sys\n"
        f"for name in {PURE!r}: importlib.import_module(name)\n"
        f"print(json.dumps([m for m in {FORBIDDEN!r} if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert json.loads(out.stdout) == [], out.stdout
