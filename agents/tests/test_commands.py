from __future__ import annotations

import re
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

pytestmark = pytest.mark.django_db


def test_the_local_admin_login_is_created_once_and_printed(settings, tmp_path):
    settings.DEBUG = True
    settings.VAR_DIR = tmp_path
    first, second = StringIO(), StringIO()
    call_command("create_local_admin", stdout=first)
    call_command("create_local_admin", stdout=second)
    password = re.search(r"password: (\S+)", first.getvalue()).group(1)
    assert password in second.getvalue()
    user = User.objects.get(username="admin")
    assert user.is_superuser and user.check_password(password)


def test_no_local_admin_is_created_with_debug_off(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG off"):
        call_command("create_local_admin")
    assert not User.objects.filter(username="admin").exists()


def test_load_demo_reports_the_call(default_persona):
    out = StringIO()
    call_command("load_demo", stdout=out)
    call_command("load_demo", stdout=out)
    assert "Created the demo call" in out.getvalue() and "Kept the demo call" in out.getvalue()
