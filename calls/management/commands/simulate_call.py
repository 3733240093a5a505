from __future__ import annotations

import asyncio
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from calls.simulator.media import DEFAULT_SCRIPT, SCRIPT_HELP, parse_script, simulate_media_call
from calls.simulator.relay import COMMANDS_HELP, SimulatorError, iterate, simulate_call, stdin_lines


class Command(BaseCommand):
    help = (
        "Play Twilio against a running server: post the voice webhook, open the relay socket, "
        "and send what you type (or a --script file, one utterance a line) as the caller. "
        f"Commands: {COMMANDS_HELP}. With --media, open the Media Streams socket instead and "
        f"stream recorded clips as the caller's audio, following --script ({SCRIPT_HELP}; "
        f'default "{DEFAULT_SCRIPT}"), and write what the agent said to --wav.'
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--url", help="Websocket to dial (default: the url in the TwiML; the stream's with --media)."
        )
        parser.add_argument("--base", default="http://127.0.0.1:8000", help="Where the server listens.")
        parser.add_argument(
            "--script",
            help="Caller lines and commands, one a line (a file). With --media: the steps, inline or a file.",
        )
        parser.add_argument("--from", dest="from_number", default="+15550001111")
        parser.add_argument("--to", dest="to_number", default="+15550002222")
        parser.add_argument(
            "--media", action="store_true", help="A Media Streams call: caller audio in, agent audio out."
        )
        parser.add_argument("--wav", type=Path, help="With --media: write the agent's audio as heard here.")

    def handle(self, *args: object, **options: object) -> None:
        if options["media"]:
            self.handle_media(options)
            return
        if options["wav"]:
            raise CommandError("--wav needs --media")
        script = Path(str(options["script"])) if options["script"] else None
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

    def handle_media(self, options: dict[str, object]) -> None:
        text = str(options["script"] or DEFAULT_SCRIPT)
        if (path := Path(text)).is_file():
            text = path.read_text()
        self.stdout.ending = ""
        try:
            steps = parse_script(text)
            asyncio.run(
                simulate_media_call(
                    base_url=str(options["base"]),
                    public_base_url=settings.PUBLIC_BASE_URL,
                    token=settings.TWILIO_AUTH_TOKEN,
                    from_number=str(options["from_number"]),
                    to_number=str(options["to_number"]),
                    stream_url=options["url"] or None,  # type: ignore[arg-type]
                    steps=steps,
                    out=self.stdout,  # type: ignore[arg-type]
                    wav=options["wav"],  # type: ignore[arg-type]
                )
            )
        except SimulatorError as exc:
            raise CommandError(str(exc)) from exc
        except KeyboardInterrupt:
            self.stdout.write("\n[interrupted]\n")
