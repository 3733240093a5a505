"""Logging filters installed on the handlers in settings.LOGGING, so every logger's lines pass."""

from __future__ import annotations

import logging

from calls.privacy.masking import mask_phone_numbers

_traceback_formatter = logging.Formatter()


class MaskPhoneNumbers(logging.Filter):
    """Phone numbers in a line (its arguments and traceback included) masked before it is written:
    log files are kept longer and read by more people than the calls they describe."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_phone_numbers(message)
        if masked != message:
            # The formatted text replaces the template: the arguments are already in it.
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            # Formatted here, as the handler's formatter would (it reuses exc_text), to be masked.
            record.exc_text = _traceback_formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_phone_numbers(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_phone_numbers(record.stack_info)
        return True
