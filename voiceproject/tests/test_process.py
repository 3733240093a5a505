"""What a server process loads, checked in a fresh interpreter (the test process has loaded it all)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import gc, json, sys
sys.argv = {argv!r}
import voiceproject.asgi
from django.conf import settings
print(json.dumps({{
    "daphne": "daphne" in settings.INSTALLED_APPS,
    "twisted": "twisted" in sys.modules,
    "frozen": gc.get_freeze_count(),
}}))
"""


def loaded_by(argv: list[str]) -> dict:
    env = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "voiceproject.settings"}
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(argv=argv)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_an_asgi_server_process_goes_without_daphne_and_twisted():
    loaded = loaded_by(["uvicorn", "voiceproject.asgi:application"])
    assert loaded["daphne"] is False
    assert loaded["twisted"] is False


def test_runserver_serves_asgi_through_daphne():
    loaded = loaded_by(["manage.py", "runserver"])
    assert loaded["daphne"] is True


def test_what_the_asgi_module_loads_is_frozen_out_of_the_collectors_sight():
    # Full collections walked these objects at every pass: 100 ms pauses at 500 live calls.
    assert loaded_by(["uvicorn"])["frozen"] > 50_000
