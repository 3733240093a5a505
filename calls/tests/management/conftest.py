from __future__ import annotations

from calls.tests.privacy.conftest import make_call  # noqa: F401 (the same old and new calls)
