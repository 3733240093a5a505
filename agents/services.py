"""Operations on personas that admin actions and commands share."""

from __future__ import annotations

from django.db import transaction
from django.utils.text import slugify

from agents.models import Persona, PersonaLanguage, PersonaTool


@transaction.atomic
def persona_duplicate(*, persona: Persona) -> Persona:
    """An inactive, non-default copy with a free name and slug, ready to edit: the languages it may
    switch to and its HTTP tools come along; its phone numbers stay with the original."""
    copy = Persona.objects.get(pk=persona.pk)
    copy.pk = None
    copy.is_default = False
    copy.is_active = False
    n = 1
    while True:
        suffix = " (copy)" if n == 1 else f" (copy {n})"
        slug = slugify(f"{persona.slug}-copy" if n == 1 else f"{persona.slug}-copy-{n}")[:100]
        if not Persona.objects.filter(slug=slug).exists():
            break
        n += 1
    copy.name = f"{persona.name}{suffix}"[:100]
    copy.slug = slug
    copy.save()
    PersonaLanguage.objects.bulk_create(
        PersonaLanguage(
            persona=copy,
            code=language.code,
            voice=language.voice,
            tts_provider=language.tts_provider,
            transcription_provider=language.transcription_provider,
            speech_model=language.speech_model,
        )
        for language in persona.languages.all()
    )
    tools = list(persona.http_tools.all())
    for tool in tools:
        tool.pk, tool.persona = None, copy
    PersonaTool.objects.bulk_create(tools)
    return copy
