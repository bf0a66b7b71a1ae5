"""The helper registry's rules, apart from its state: which manifests it takes, what a model
calls each capability, whose a helper's name is, who may use a helper, and how values and a
helper's refusals are checked and told."""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import orjson
from referencing.exceptions import Unresolvable

from patchbay.errors import (
    HelperFailed,
    HelperNotFound,
    InvalidRequest,
    PatchbayError,
    error_from_dict,
)
from patchbay.hosts import odd_ipv4
from patchbay.schemas.helpers import Capability, HelperManifest, HelperRead
from patchbay.schemas.users import UserRead

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")  # RFC 3986's
TOOL_NAME_MAX = 64  # OpenAI's limit on a function's name, which most upstreams share


def check_manifest(manifest: HelperManifest) -> None:
    """Refuse a base URL the core cannot call (`check_base_url`), duplicate capability names and
    schemas that are not JSON Schema."""
    check_base_url(manifest.base_url)
    names = [c.name for c in manifest.capabilities]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InvalidRequest(f"capabilities named twice: {', '.join(duplicates)}")
    for capability in manifest.capabilities:
        for which in ("input_schema", "output_schema"):
            schema = getattr(capability, which)
            try:
                jsonschema.Draft202012Validator.check_schema(schema)
            except jsonschema.SchemaError as exc:
                raise InvalidRequest(f"{capability.name}.{which}: {exc.message}") from exc
        if capability.kind == "to-text" and not capability.media_types:
            raise InvalidRequest(f"{capability.name}: a to-text capability names its media types")


def check_base_url(url: str) -> None:
    """Refuse a URL that is not http(s), names no host, or an IPv4 host spelled as `ipaddress` does
    not read it (127.1, 2130706433): the resolver reads it as the address, which would then be
    another host than the same address spelled a.b.c.d, or the host an admin allowed by name."""
    scheme = _SCHEME.match(url)
    if scheme is None or scheme[1].lower() not in ("http", "https"):
        written = f"its scheme is {scheme[1]!r}" if scheme else "it names no scheme"
        raise InvalidRequest(
            f"the base URL is reached over http:// or https:// only ({written}): "
            "write it as http://host:port"
        )
    host = url_host_key(url)
    if host is None:
        raise InvalidRequest("the base URL names no host: write it as http://host:port")
    canonical = odd_ipv4(host)
    if canonical is not None:
        raise InvalidRequest(
            f"the base URL's host {host} is the IPv4 address {canonical} spelled another way: "
            f"write it as {canonical}"
        )


def tool_names(capabilities: list[tuple[str, str]]) -> list[str]:
    """The name a model calls each (helper, capability) by: `helper__capability`, unless that is
    over `TOOL_NAME_MAX` or another's already (helper names may hold `__` too: `a` + `b__c` and
    `a__b` + `c`); then cut, with a hash of the pair that keeps it apart. Two capabilities under
    one name would leave the model one of them, and a call meant for either going to it."""
    names: list[str] = []
    taken: set[str] = set()
    for helper, capability in capabilities:
        full = name = f"{helper}__{capability}"
        salt = 0  # a cut name may be one a capability has as its own (a helper may so name one)
        while len(name) > TOOL_NAME_MAX or name in taken:
            pair = f"{helper}/{capability}" + (f"/{salt}" if salt else "")
            name = f"{full[: TOOL_NAME_MAX - 9]}_{hashlib.sha256(pair.encode()).hexdigest()[:8]}"
            salt += 1
        taken.add(name)
        names.append(name)
    return names


def same_host(base_url: str, peer: str | None, allowed: list[str]) -> bool:
    """Whether a helper at `base_url` registers from its own host, `peer`, or its URL is at an
    allowed host: the same host as `host_key` tells hosts apart, however each is written."""
    key = url_host_key(base_url)
    return key is not None and (key == host_key(peer) or key in {host_key(h) for h in allowed})


def url_host_key(url: str) -> str | None:
    """The `host_key` of `url`'s host, as the core's HTTP client reads it: an IPv6 zone, written
    %25eth0 in a URL (RFC 6874), is %eth0, as in a peer's address. None if it names none."""
    try:
        host = urlsplit(url).hostname
    except ValueError:  # brackets around no IPv6 address, or never closed
        return None
    return host_key(host.replace("%25", "%", 1) if host and ":" in host else host)


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An IP address, an IPv4 one as itself when a core listening on `::` sees it as
    ::ffff:a.b.c.d."""
    address = ipaddress.ip_address(host)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def host_key(host: str | None) -> str | None:
    """`host` spelled one way, as a helper's name belongs to it: this machine is one host,
    "localhost" (the name, any loopback address: all of 127.0.0.0/8 and ::1, and 0.0.0.0 or ::,
    which a connection takes for this machine too); any other address is written as `ipaddress`
    does, a name in lower case and without the dot that may end it."""
    host = host.removesuffix(".") if host else host  # `ocr.internal.` is `ocr.internal`
    if not host:
        return None
    try:
        address = _address(host)
    except ValueError:
        host = host.lower()
        return "localhost" if host == "localhost" else host
    return "localhost" if address.is_loopback or address.is_unspecified else address.compressed


def may_use(helper: HelperRead, user: UserRead) -> bool:
    """Whether a helper's limits (roles, users) let `user` use it."""
    if helper.allowed_users is None and helper.allowed_roles is None:
        return True
    return user.id in (helper.allowed_users or []) or user.role in (helper.allowed_roles or [])


def capability_of(helper: HelperRead, name: str, kind: str) -> Capability:
    for capability in helper.capabilities:
        if capability.name == name and capability.kind == kind:
            return capability
    raise HelperNotFound(f"the helper {helper.name} has no {kind} capability {name!r}")


def matches(media_type: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(media_type, p.lower()) for p in patterns)


@functools.lru_cache(maxsize=1024)
def _validator(schema_json: bytes) -> jsonschema.Draft202012Validator:
    """A validator per schema, built once: checking the schema itself costs far more than
    checking a value against it."""
    return jsonschema.Draft202012Validator(orjson.loads(schema_json))


def validate(value: object, schema: dict[str, Any], what: str, *, helper: bool = False) -> None:
    if not schema:
        return
    validator = _validator(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS))
    try:
        validator.validate(value)
    except jsonschema.ValidationError as exc:
        if helper:
            raise HelperFailed(f"{what} breaks its schema: {exc.message}") from exc
        raise InvalidRequest(f"{what} break the schema: {exc.message}") from exc
    except Unresolvable as exc:  # a $ref to nowhere: only found once a value leads to it
        raise HelperFailed(f"{what}: the helper's schema refers to nowhere ({exc})") from exc


# A helper's refusals that are about the input (bad arguments, a file too large, of a type it
# does not read, or unreadable), with the code each has when the helper names none: the caller's
# to hear as they are. Any other failure is the helper's: a 502.
INPUT_REFUSALS = {
    400: "invalid_request",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unreadable_input",
}


def refusal_of(name: str, status: int, raw: bytes) -> PatchbayError:
    """The error for a helper's answer of `status` (4xx or 5xx); never retryable but a 5xx."""
    try:
        error = orjson.loads(raw).get("error", {})
        detail, code = error.get("message"), error.get("code")
    except (orjson.JSONDecodeError, AttributeError):
        detail = code = None
    message = f"{name} answered {status}" + (f": {detail}" if detail else "")
    if status in INPUT_REFUSALS:
        refused = error_from_dict(
            {"code": code or INPUT_REFUSALS[status], "message": message}, status
        )
        if refused.status in INPUT_REFUSALS:  # not a code of another kind (a 401 of its own)
            return refused
        return error_from_dict({"code": INPUT_REFUSALS[status], "message": message}, status)
    failed = HelperFailed(message)
    failed.retryable = status >= 500  # the helper read the input and refused it: asking again
    return failed  # changes nothing
