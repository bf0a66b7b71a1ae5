"""Media Twilio holds for a message or a call (pictures, recordings), fetched with a size limit
and passed on as attachments, which the core's helpers turn into text."""

from __future__ import annotations

import base64

import aiohttp

from patchbay.bodies import read_at_most
from patchbay.channels.sms.twilio_format import TwilioSettings, account_auth
from patchbay.errors import InvalidRequest, PayloadTooLarge, ServiceUnavailable
from patchbay.schemas.turns import AttachmentIn

FETCH_TIMEOUT = aiohttp.ClientTimeout(total=30, connect=10)


def media_of(form: dict[str, str]) -> list[tuple[str, str | None]]:
    """The (URL, media type) of each file an SMS carries (`MediaUrl0`, `MediaContentType0`, …)."""
    count = int(form.get("NumMedia", "0") or 0)
    return [
        (form[f"MediaUrl{i}"], form.get(f"MediaContentType{i}"))
        for i in range(count)
        if form.get(f"MediaUrl{i}")
    ]


async def fetch_media(
    http: aiohttp.ClientSession,
    url: str,
    *,
    settings: TwilioSettings,
    media_type: str | None = None,
    filename: str | None = None,
) -> AttachmentIn:
    """One file, read up to `settings.max_media_bytes`.

    Only Twilio's API (with the account's credentials) or other https URLs are fetched; Twilio
    answers media URLs with a redirect to its CDN, and aiohttp drops the Authorization header
    on a redirect to another origin.
    """
    base = settings.api_base_url.rstrip("/") + "/"
    ours = url.startswith(base)
    if not ours and not url.startswith("https://"):
        raise InvalidRequest("media is read from Twilio's API or an https URL only")
    headers = account_auth(settings) if ours else {}
    try:
        async with http.get(url, headers=headers, timeout=FETCH_TIMEOUT) as response:
            if response.status != 200:
                raise ServiceUnavailable(f"the media URL answered {response.status}")
            data = await read_at_most(response, settings.max_media_bytes)
            media_type = media_type or response.content_type
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise ServiceUnavailable("the media could not be fetched; try again shortly") from exc
    if data is None:
        limit = settings.max_media_bytes
        raise PayloadTooLarge(f"a file is over the limit of {limit // 1_000_000} MB")
    return AttachmentIn(
        media_type=media_type, data=base64.b64encode(data).decode(), filename=filename
    )
