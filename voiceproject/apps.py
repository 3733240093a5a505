"""The project itself as an app: only so that its deployment checks (voiceproject/checks.py) are
registered wherever Django runs checks."""

from __future__ import annotations

from django.apps import AppConfig


class SwitchboardConfig(AppConfig):
    name = "voiceproject"
    label = "switchboard"
    verbose_name = "Switchboard"

    def ready(self) -> None:
        from voiceproject import checks  # noqa: F401  registers them
