"""A third-party channel as a package would write it: a JSON webhook, in under 50 lines."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from patchbay.channels.base import Channel, ChannelSettings, chunks, pairing_message
from patchbay.plugins import hookimpl
from patchbay.plugins.hookspecs import RegisterChannel


class PostcardSettings(ChannelSettings):
    max_length: int = 40


class Postcard(BaseModel):
    sender: str
    text: str


class PostcardChannel(Channel[PostcardSettings]):
    name = "postcard"
    settings_model = PostcardSettings

    def router(self) -> APIRouter:
        router = APIRouter()

        @router.post("/inbound")
        async def inbound(card: Postcard) -> list[str]:
            who = await self.sender(card.sender)
            if who.user is None:
                return [pairing_message(who)]
            result = await self.turn(who.user.id, card.text, thread=card.sender)
            answer = result.outcome.content or "(no answer)"
            return chunks(answer, self.settings.max_length)

        return router


@hookimpl
def register_channels(register: RegisterChannel) -> None:
    register(PostcardChannel)
