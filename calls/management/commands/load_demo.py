from __future__ import annotations

from django.core.management.base import BaseCommand

from calls.demo import demo_call_create


class Command(BaseCommand):
    help = "Create an example call (with an interrupted agent turn) to browse in the admin."

    def handle(self, *args: object, **options: object) -> None:
        call, created = demo_call_create()
        verb = "Created" if created else "Kept"
        self.stdout.write(f"{verb} the demo call {call.call_sid} ({call.turns.count()} turns).")
