"""A Switchboard agent whose replies come from a LangChain runnable, streamed with `astream`.

LangChain is not a dependency of the SDK; this example needs:

    pip install switchboard-agent langchain-openai   # brings langchain-core
    export SWITCHBOARD_AGENT_URL=wss://switchboard.example.com/ws/agent/
    export SWITCHBOARD_API_KEY=...   # created by staff in the admin (Agent keys)
    export OPENAI_API_KEY=...
    python langchain_agent.py

Any runnable that streams strings works the same way: swap the model or add retrieval to the
chain. The history is fetched from the server with `call.get_history()`, as an agent that keeps no
state of its own would.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_openai import ChatOpenAI

from switchboard_agent import Agent, Call, Message, Turn

MODEL = os.environ.get("OPENAI_MODEL", "gpt-4.1-mini")

prompt = ChatPromptTemplate.from_messages(
    [
        (
            "system",
            "You are a friendly receptionist on a phone call. Answer in one or two short spoken "
            "sentences: no lists, no markdown, no emoji. The caller's language is {language}.",
        ),
        MessagesPlaceholder("history"),
    ]
)
chain = prompt | ChatOpenAI(model=MODEL) | StrOutputParser()  # a runnable that streams str chunks

agent = Agent()  # SWITCHBOARD_AGENT_URL and SWITCHBOARD_API_KEY from the environment


def as_langchain(history: Sequence[Message]) -> list[BaseMessage]:
    return [AIMessage(m.text) if m.role == "assistant" else HumanMessage(m.text) for m in history]


@agent.on("turn.end")
async def reply(turn: Turn, call: Call) -> None:
    async with call.reply_stream(turn) as stream:
        history = await call.get_history()  # what the caller heard, ending with this turn
        if stream.aborted:  # the caller kept talking while we asked
            return
        chunks = chain.astream({"history": as_langchain(history), "language": call.language or "en-US"})
        # Stops at once when the reply is aborted, closing the runnable's stream.
        await stream.write_from(chunks)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    agent.run_forever()
