from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from calls.models import Call, Turn


@pytest.fixture
def make_call(default_persona):
    """`make_call(sid, days_old=…, from_number=…, turns=n, **fields)`: a call with its turns, as old as asked."""

    def make(sid: str, *, days_old: float = 0, turns: int = 2, **fields: object) -> Call:
        fields = {"from_number": "+14155550198", "to_number": "+14155550100", **fields}
        call = Call.objects.create(call_sid=sid, persona=default_persona, **fields)
        for sequence in range(turns):
            role = Turn.Role.USER if sequence % 2 else Turn.Role.ASSISTANT
            Turn.objects.create(call=call, sequence=sequence, role=role, text=f"{sid} said {sequence}")
        if days_old:
            Call.objects.filter(pk=call.pk).update(created_at=timezone.now() - timedelta(days=days_old))
            call.refresh_from_db()
        return call

    return make
