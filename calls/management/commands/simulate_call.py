from __future__ import annotations

import asyncio
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from calls.simulator.relay import COMMANDS_HELP, SimulatorError, iterate, simulate_call, stdin_lines


class Command(BaseCommand):
    help = (
        "Play Twilio against a running server: post the voice webhook, open the relay socket, "
        "and send what you type (or a --script file, one utterance a line) as the caller. "
        f"Commands: {COMMANDS_HELP}."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", help="Relay websocket to dial (default: the url in the TwiML).")
        parser.add_argument("--base", default="http://127.0.0.1:8000", help="Where the server listens.")
        parser.add_argument("--script", type=Path, help="Caller lines and commands, one a line.")
        parser.add_argument("--from", dest="from_number", default="+15550001111")
        parser.add_argument("--to", dest="to_number", default="+15550002222")

    def handle(self, *args: object, **options: object) -> None:
        script: Path | None = options["script"]  # type: ignore[assignment]
        if script is not None:
            try:
                lines = iterate(script.read_text().splitlines())
            except OSError as exc:
                raise CommandError(f"cannot read the script: {exc}") from exc
        else:
            lines = stdin_lines()
            self.stdout.write(f"Type what the caller says; {COMMANDS_HELP}; EOF hangs up.\n")
        # The simulator ends its own lines: streamed tokens must not each get a newline.
        self.stdout.ending = ""
        try:
            asyncio.run(
                simulate_call(
                    base_url=str(options["base"]),
                    public_base_url=settings.PUBLIC_BASE_URL,
                    token=settings.TWILIO_AUTH_TOKEN,
                    from_number=str(options["from_number"]),
                    to_number=str(options["to_number"]),
                    relay_url=options["url"] or None,  # type: ignore[arg-type]
                    lines=lines,
                    scripted=script is not None,
                    out=self.stdout,  # type: ignore[arg-type]
                )
            )
        except SimulatorError as exc:
            raise CommandError(str(exc)) from exc
        except KeyboardInterrupt:
            self.stdout.write("\n[interrupted]\n")
