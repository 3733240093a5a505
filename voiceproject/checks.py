"""System checks of the deployment: `manage.py check --deploy` fails (an Error, where Django only
warns) on a SECRET_KEY that would let anyone forge an admin session."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register

from voiceproject.secret_key import GENERATE, secret_key_weakness


@register(Tags.security, deploy=True)
def check_secret_key_strength(app_configs: object, **kwargs: object) -> list[CheckMessage]:
    weakness = secret_key_weakness(settings.SECRET_KEY)
    if settings.DEBUG or weakness is None:
        return []
    return [Error(f"{weakness}.", hint=f"Generate one: {GENERATE}", id="switchboard.E001")]
