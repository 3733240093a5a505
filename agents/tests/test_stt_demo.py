"""The offline demo recogniser."""

from __future__ import annotations

import pytest

from agents.stt.base import SttError
from agents.stt.demo import DemoStt

SECOND = b"\x00\x00" * 16000


async def test_commit_reports_how_long_the_caller_spoke():
    stt = DemoStt()
    await stt.start()
    await stt.send_audio(SECOND)
    await stt.send_audio(SECOND[: len(SECOND) * 6 // 10])
    assert await stt.commit() == "(demo transcription) I spoke for 1.6 seconds."
    await stt.send_audio(SECOND[:16000])  # counting restarts with each turn
    assert await stt.commit() == "(demo transcription) I spoke for 0.5 seconds."


async def test_clear_and_silence():
    stt = DemoStt()
    await stt.start()
    await stt.send_audio(SECOND)
    await stt.clear()
    assert await stt.commit() == ""
    assert stt.sample_rate == 16000


async def test_calls_outside_start_and_close_raise():
    stt = DemoStt()
    with pytest.raises(SttError):
        await stt.send_audio(SECOND)
    await stt.start()
    await stt.close()
    await stt.close()
    with pytest.raises(SttError):
        await stt.commit()
