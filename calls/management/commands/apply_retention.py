from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser

from calls.privacy.retention import RetentionMode, retention_apply


class Command(BaseCommand):
    help = (
        "Delete or anonymise calls older than CALL_RETENTION_DAYS (CALL_RETENTION_MODE): what the "
        "daily Celery beat task does, for deployments without beat (run it from cron)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Count what would go; change nothing.")
        parser.add_argument("--days", type=int, help="Override CALL_RETENTION_DAYS for this run.")
        parser.add_argument("--mode", choices=RetentionMode.values, help="Override CALL_RETENTION_MODE.")

    def handle(
        self, *args: object, dry_run: bool, days: int | None, mode: str | None, **options: object
    ) -> None:
        result = retention_apply(days=days, mode=mode, dry_run=dry_run)
        if result.cutoff is None:
            self.stdout.write("CALL_RETENTION_DAYS is 0: calls are kept forever, nothing to do.")
            return
        verb = "deleted" if result.mode == RetentionMode.DELETE else "anonymised"
        if result.dry_run:
            verb = f"would be {verb}"
        self.stdout.write(
            f"{result.calls} calls ({result.turns} turns) created before "
            f"{result.cutoff:%Y-%m-%d %H:%M} UTC {verb}."
        )
