"""Twilio webhook signatures: over the URL Twilio called, with the library's own validator."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from twilio.request_validator import RequestValidator

from patchbay.channels.sms.twilio_format import TwilioSettings, signed_form

TOKEN = "auth-token"
PARAMS = {"From": "+15550001", "Body": "hi & bye", "MessageSid": "SM1"}


def client(**settings: object) -> TestClient:
    app = FastAPI()
    own = TwilioSettings.model_validate({"auth_token": TOKEN, **settings})

    @app.post("/sms/twilio")
    async def hook(request: Request) -> dict[str, str]:
        return await signed_form(request, own)

    return TestClient(app)


def post(test: TestClient, signed_url: str, *, token: str = TOKEN, path: str = "/sms/twilio"):
    signature = RequestValidator(token).compute_signature(signed_url, PARAMS)
    return test.post(path, data=PARAMS, headers={"X-Twilio-Signature": signature})


def test_signed_over_the_request_url() -> None:
    with client() as test:
        assert post(test, "http://testserver/sms/twilio").json() == PARAMS
        assert post(test, "http://testserver/sms/twilio", token="other").status_code == 403
        assert post(test, "http://testserver/elsewhere").status_code == 403


def test_signed_over_the_public_url_with_its_query() -> None:
    with client(public_url="https://sms.example.org/") as test:
        signed = "https://sms.example.org/sms/twilio?tenant=a"
        assert post(test, signed, path="/sms/twilio?tenant=a").status_code == 200
        assert post(test, "http://testserver/sms/twilio").status_code == 403


def test_without_an_auth_token_nothing_is_accepted() -> None:
    with client(auth_token=None) as test:
        response = post(test, "http://testserver/sms/twilio")
        assert response.status_code == 403 and "auth_token" in response.text
