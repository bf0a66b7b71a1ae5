"""Twilio's side of the SMS and voice channels: the settings both share, the check of the
`X-Twilio-Signature` every Twilio webhook carries, and TwiML responses."""

from __future__ import annotations

import hmac

import aiohttp
from fastapi import HTTPException, Request, Response
from pydantic import Field, SecretStr
from twilio.request_validator import RequestValidator

from patchbay.channels.base import ChannelSettings

SIGNATURE_HEADER = "X-Twilio-Signature"
WEBHOOK_KEY_HEADER = "X-Webhook-Secret"  # the generic webhook's and the upload's shared secret


class TwilioSettings(ChannelSettings):
    """What the SMS and voice channels need to speak with Twilio."""

    account_sid: str = ""
    auth_token: SecretStr | None = None  # signs Twilio's webhooks; Twilio webhooks fail without it
    # The base URL Twilio calls (e.g. https://sms.example.org), over which it computes signatures;
    # default: the URL the request arrived at, right only when nothing proxies the channel.
    public_url: str | None = None
    api_base_url: str = "https://api.twilio.com"
    # Answer a webhook within this (then later: an SMS by the API, a call after a redirect);
    # Twilio gives up on a webhook after 15 s, so past 14 nothing slow would be answered.
    time_limit_s: float = Field(default=10.0, gt=0, le=14)
    webhook_secret: SecretStr | None = None
    max_media_bytes: int = Field(default=10_000_000, gt=0)


def account_auth(settings: TwilioSettings) -> dict[str, str]:
    """The Authorization header for Twilio's API (none without an auth token)."""
    if settings.auth_token is None:
        return {}
    secret = settings.auth_token.get_secret_value()
    return {"Authorization": aiohttp.encode_basic_auth(settings.account_sid, secret)}


def called_url(request: Request, public_url: str | None) -> str:
    """The URL Twilio called, as it signed it."""
    if public_url is None:
        return str(request.url)
    url = public_url.rstrip("/") + request.url.path
    return f"{url}?{request.url.query}" if request.url.query else url


async def signed_form(request: Request, settings: TwilioSettings) -> dict[str, str]:
    """The form Twilio posted, once its signature checks out; 403 (and nothing done) otherwise."""
    form = await request.form()
    signature = request.headers.get(SIGNATURE_HEADER, "")
    token = settings.auth_token
    if token is None:
        raise HTTPException(403, "set the channel's auth_token to accept Twilio's webhooks")
    fields = {key: value for key, value in form.multi_items() if isinstance(value, str)}
    if len(fields) != len(form.multi_items()):  # Twilio posts no files
        await form.close()
        raise HTTPException(403, "Twilio's webhooks post no files")
    validator = RequestValidator(token.get_secret_value())
    if not validator.validate(called_url(request, settings.public_url), form, signature):
        raise HTTPException(403, "the X-Twilio-Signature does not match; check public_url")
    return fields


def check_secret(given: str | None, settings: TwilioSettings) -> None:
    """Let a generic webhook through only with the channel's shared secret (401 otherwise)."""
    secret = settings.webhook_secret
    if secret is None:
        raise HTTPException(401, "set the channel's webhook_secret to use this webhook")
    if given is None or not hmac.compare_digest(given.encode(), secret.get_secret_value().encode()):
        raise HTTPException(401, f"wrong or missing {WEBHOOK_KEY_HEADER} header")


def twiml(document: object) -> Response:
    """A TwiML document (a `MessagingResponse` or `VoiceResponse`) as Twilio expects it."""
    return Response(str(document), media_type="application/xml")
