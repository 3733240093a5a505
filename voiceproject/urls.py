from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from voiceproject.health import health

admin.site.site_header = "Switchboard"
admin.site.site_title = "Switchboard"
admin.site.index_title = "Phone agents and their calls"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("admin/", admin.site.urls),
    path("health/", health, name="health"),
    path("", include("calls.urls")),
]
