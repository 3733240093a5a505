"""One live conversation per call.

When Twilio reconnects a call, the new socket can open before the old one has closed, in this
process or in another. Two engines on one call would both converse and both number turns from
their own history, and one of them would lose its turns to the unique sequence. So the new
socket takes the call over: the old conversation stops, stores what was sent, flushes its writes
and hangs up its socket, and only then does the new one load the history.

Within a process a dict finds the holder. Across processes the request goes to every server
process over the channel layer (a group all of them listen on); the one holding the call answers
once its writes are flushed. A process with no holder stays silent, so a requester that hears
nothing within HANDOVER_TIMEOUT_SECONDS goes on (the old process is gone, and its writes with it
are either applied or lost with the process). Nothing here is on a call's token path: it runs
at setup, and a reconnect is rare.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from typing import Protocol

from channels.layers import BaseChannelLayer, InMemoryChannelLayer, get_channel_layer
from django.conf import settings

logger = logging.getLogger(__name__)

GROUP = "calls.handover"
GROUP_REFRESH_SECONDS = 3600.0  # channels_redis forgets group members after a day


class Holder(Protocol):
    async def hand_over(self) -> None:
        """Stop, store what was sent, flush the writes, hang up; the call is not ended."""


_live: dict[str, Holder] = {}
_answering: set[asyncio.Task[None]] = set()  # hand-overs in progress, kept from the collector
_listeners: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[None]] = (
    weakref.WeakKeyDictionary()
)


def hold(call_sid: str, holder: Holder) -> None:
    """`holder` converses on the call in this process."""
    _live[call_sid] = holder
    _listen_for_requests()


def release(call_sid: str, holder: Holder) -> None:
    if _live.get(call_sid) is holder:
        del _live[call_sid]


def holder(call_sid: str) -> Holder | None:
    """The conversation live on the call in this process, if any (the agent socket reads its history)."""
    return _live.get(call_sid)


async def take_over_here(call_sid: str) -> bool:
    """Stop the conversation holding the call in this process, if any; True when there was one."""
    holder = _live.pop(call_sid, None)
    if holder is None:
        return False
    logger.warning("call %s: a new socket takes the call over from this process's old one", call_sid)
    await holder.hand_over()
    return True


async def take_over_elsewhere(call_sid: str, session_id: str) -> bool:
    """Ask the other server processes to stop the conversation holding the call; True when one
    did and its writes are flushed, False when none answered in time."""
    layer = _shared_layer()
    if layer is None:
        return False
    reply_to = await layer.new_channel()
    request = {
        "type": "handover.request",
        "call_sid": call_sid,
        "session_id": session_id,
        "reply_to": reply_to,
    }
    await layer.group_send(GROUP, request)
    try:
        async with asyncio.timeout(settings.HANDOVER_TIMEOUT_SECONDS):
            await layer.receive(reply_to)
    except TimeoutError:
        logger.info("call %s: no process held the call's old session", call_sid)
        return False
    logger.warning("call %s: taken over from another process", call_sid)
    return True


def _shared_layer() -> BaseChannelLayer | None:
    """The channel layer when it reaches other processes (Redis); None in the embedded run."""
    layer = get_channel_layer()
    if layer is None or isinstance(layer, InMemoryChannelLayer):
        return None
    return layer


def _listen_for_requests() -> None:
    """Start this process's listener, once per event loop, when it first holds a call."""
    layer = _shared_layer()
    if layer is None:
        return
    loop = asyncio.get_running_loop()
    task = _listeners.get(loop)
    if task is None or task.done():
        _listeners[loop] = loop.create_task(_listen(layer), name="handover-listener")


async def _listen(layer: BaseChannelLayer) -> None:
    channel = await layer.new_channel()
    joined_at: float | None = None  # when this process last joined the group
    pause = 0.5
    while True:
        try:
            if joined_at is None or time.monotonic() - joined_at > GROUP_REFRESH_SECONDS:
                await layer.group_add(GROUP, channel)
                joined_at = time.monotonic()
            async with asyncio.timeout(GROUP_REFRESH_SECONDS):
                message = await layer.receive(channel)
            pause = 0.5
        except TimeoutError:
            continue
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Redis away: try again, the calls go on without us
            logger.warning("handover listener: %s; retrying in %.1f s", exc, pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 10.0)
            joined_at = None
            continue
        holder = _live.pop(message.get("call_sid", ""), None)
        if holder is not None:
            task = asyncio.get_running_loop().create_task(_answer(layer, holder, message))
            _answering.add(task)
            task.add_done_callback(_answering.discard)


async def _answer(layer: BaseChannelLayer, holder: Holder, message: dict) -> None:
    logger.warning("call %s: another process's socket takes the call over", message["call_sid"])
    try:
        await holder.hand_over()
    finally:
        await layer.send(message["reply_to"], {"type": "handover.done"})
