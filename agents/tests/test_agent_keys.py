"""Agent keys: made and shown once in the admin, stored only as a hash, revoked by an action."""

from __future__ import annotations

import hashlib
import re

import pytest
from django.urls import reverse

from agents.models import AgentKey

pytestmark = pytest.mark.django_db


def test_a_key_is_stored_only_as_its_hash_and_authenticates_until_revoked():
    agent_key, key = AgentKey.objects.issue("langchain-prod")
    assert key.startswith("sbk_") and len(key) >= 4 + 43  # 32 random bytes, base64
    assert agent_key.key_hash == hashlib.sha256(key.encode()).hexdigest() and key not in agent_key.key_hash
    assert agent_key.prefix == key[:10] and str(agent_key) == f"langchain-prod ({key[:10]}…)"
    assert AgentKey.objects.authenticate(key) == agent_key
    assert AgentKey.objects.authenticate(key + "x") is None
    assert AgentKey.objects.authenticate(key[4:]) is None  # not even hashed without the marker
    assert AgentKey.objects.filter(pk=agent_key.pk).revoke() == 1
    assert AgentKey.objects.authenticate(key) is None
    assert AgentKey.objects.filter(pk=agent_key.pk).revoke() == 0  # revoked once, stamped once


def test_staff_create_a_key_and_see_it_once(admin_client, admin_user):
    response = admin_client.post(
        reverse("admin:agents_agentkey_add"), {"name": "langchain-prod"}, follow=True
    )
    assert response.status_code == 200
    shown = [m.message for m in response.context["messages"]]
    [message] = [m for m in shown if "copy it now" in m]
    key = re.search(r"sbk_[A-Za-z0-9_-]+", message).group(0)
    agent_key = AgentKey.objects.get()
    assert agent_key.name == "langchain-prod" and agent_key.created_by == admin_user
    assert AgentKey.objects.authenticate(key) == agent_key
    # Never again: not on its page, not in the list.
    page = admin_client.get(reverse("admin:agents_agentkey_change", args=[agent_key.pk])).content.decode()
    listing = admin_client.get(reverse("admin:agents_agentkey_changelist")).content.decode()
    assert key not in page and key not in listing
    assert agent_key.prefix in listing and "langchain-prod" in listing


def test_the_revoke_action_revokes_the_selected_keys(admin_client):
    kept, _ = AgentKey.objects.issue("kept")
    revoked, key = AgentKey.objects.issue("old")
    admin_client.post(
        reverse("admin:agents_agentkey_changelist"),
        {"action": "revoke", "_selected_action": [revoked.pk]},
    )
    revoked.refresh_from_db()
    kept.refresh_from_db()
    assert revoked.revoked_at is not None and kept.revoked_at is None
    assert AgentKey.objects.authenticate(key) is None
