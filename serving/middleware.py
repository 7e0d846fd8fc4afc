"""ASGI middleware in front of the BentoML app: authentication, request limits, uniform JSON errors.

For the API routes (``/score``, ``/score-records``, ``/explain``, ``/reload``):

* **401** without a valid key: ``X-API-Key: <key>`` or ``Authorization: Bearer <key>``, compared
  with :func:`hmac.compare_digest` against every configured key.
* **415** unless the body is ``application/json`` (BentoML would parse ``text/plain`` as JSON).
* **413** when the body is larger than ``LEADSCORE_MAX_BODY_MB`` (checked on Content-Length
  before reading, or while reading a chunked body).
* **400** for malformed JSON and **422** for a body that does not fit the request model: BentoML
  answers both with a 400 carrying pydantic's errors; they are rewritten here into
  :class:`~leadscore.serving.schemas.ErrorResponse` naming each bad field and, where it can be
  read from the body, the lead id. **5xx** bodies are replaced with a generic message.

Health (``/livez``, ``/healthz``, ``/readyz``), ``/metrics`` and the OpenAPI docs stay open.
Every API request is counted in ``leadscore_requests_total{endpoint, outcome}``.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from leadscore.serving import metrics
from leadscore.serving.errors import MAX_PROBLEMS, error_body
from leadscore.serving.schemas import ErrorResponse, Problem
from leadscore.serving.settings import ServingSettings

logger = logging.getLogger("leadscore.serving")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

API_PATHS: frozenset[str] = frozenset({"/score", "/score-records", "/explain", "/reload"})
JSON_TYPES: frozenset[str] = frozenset({"application/json"})
OPENAPI_PATH = "/docs.json"
_ERROR_RESPONSES: dict[str, str] = {
    "400": "Malformed JSON.",
    "401": "Missing or invalid API key.",
    "413": "Body over LEADSCORE_MAX_BODY_MB, or more leads than LEADSCORE_MAX_BATCH.",
    "415": "Content-Type is not application/json.",
    "422": "The body does not fit the schema or breaks the data contract; problems name each field and lead.",
    "500": "Unexpected error (logged by the server; never a stack trace).",
    "503": "No model loaded.",
}


async def send_json(
    send: Send, status: int, body: bytes, extra_headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *extra_headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _path(loc: list[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def _lead_of(loc: list[Any], body: Any) -> tuple[int | None, str | None]:
    """Which lead a pydantic error location points into, and its id if the body shows it."""
    lead: Any = None
    index: int | None = None
    if len(loc) >= 2 and loc[0] == "leads" and isinstance(loc[1], int):
        index = loc[1]
        try:
            lead = body["leads"][index]
        except (KeyError, IndexError, TypeError):
            lead = None
    elif loc and loc[0] == "lead":
        index = 0
        lead = body.get("lead") if isinstance(body, dict) else None
    lead_id = lead.get("lead_id") if isinstance(lead, dict) else None
    if isinstance(lead_id, int | float) and not isinstance(lead_id, bool):
        lead_id = str(lead_id)
    return index, lead_id if isinstance(lead_id, str) else None


def rewrite_validation_error(original: bytes, request_body: bytes) -> tuple[int, bytes]:
    """BentoML's 400 (pydantic errors) -> 400 malformed JSON or 422 naming fields and leads."""
    try:
        details = json.loads(original).get("detail")
    except (ValueError, AttributeError):
        details = None
    if not isinstance(details, list):
        return 400, error_body(400, "the request could not be read")
    for detail in details:
        if isinstance(detail, dict) and detail.get("type") == "json_invalid":
            return 400, error_body(400, f"the body is not valid JSON: {detail.get('msg', '')}".strip())
    try:
        body = json.loads(request_body) if request_body else {}
    except ValueError:
        body = {}
    problems = []
    for detail in details[:MAX_PROBLEMS]:
        if not isinstance(detail, dict):
            continue
        loc = list(detail.get("loc") or [])
        index, lead_id = _lead_of(loc, body)
        problems.append(
            Problem(
                field=_path(loc),
                problem=str(detail.get("msg", "invalid value")),
                lead_index=index,
                lead_id=lead_id,
            )
        )
    count = len(details)
    if count > MAX_PROBLEMS:
        problems.append(
            Problem(field="request", problem=f"{count - MAX_PROBLEMS} more problem(s) not listed")
        )
    return 422, error_body(422, f"{count} problem{'s' if count != 1 else ''} in the request", problems)


def patch_openapi(spec: dict[str, Any]) -> dict[str, Any]:
    """Add the API-key security schemes and the uniform error responses to BentoML's document."""
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    error_schema = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(error_schema.pop("$defs", {}))
    schemas["ErrorResponse"] = error_schema
    components["securitySchemes"] = {
        "ApiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        "BearerKey": {"type": "http", "scheme": "bearer", "description": "The API key as a bearer token."},
    }
    reference = {"$ref": "#/components/schemas/ErrorResponse"}
    for path in API_PATHS:
        operation = spec.get("paths", {}).get(path, {}).get("post")
        if operation is None:
            continue
        operation["security"] = [{"ApiKeyHeader": []}, {"BearerKey": []}]
        responses = operation.setdefault("responses", {})
        responses.pop("404", None)
        for status, description in _ERROR_RESPONSES.items():
            responses[status] = {
                "description": description,
                "content": {"application/json": {"schema": reference}},
            }
    return spec


class GuardMiddleware:
    """Authentication, content type and size limits, and error rewriting for the API routes."""

    def __init__(self, app: ASGIApp, settings: ServingSettings | None = None) -> None:
        self.app = app
        self.settings = settings or ServingSettings.from_env()
        self.keys = tuple(key.encode("utf-8") for key in self.settings.api_keys)
        # No keys and no explicit LEADSCORE_ALLOW_NO_AUTH: fail closed. (The service refuses to
        # start in that case; raising here instead would surface only on the first request.)
        self.open = not self.keys and self.settings.allow_no_auth
        self._openapi: bytes | None = None

    # --- authentication -------------------------------------------------------------------------
    def authorized(self, headers: list[tuple[bytes, bytes]]) -> bool:
        if self.open:
            return True  # LEADSCORE_ALLOW_NO_AUTH=true and no keys
        presented: list[bytes] = []
        for name, value in headers:
            if name == b"x-api-key":
                presented.append(value.strip())
            elif name == b"authorization":
                scheme, _, token = value.strip().partition(b" ")
                if scheme.lower() == b"bearer":
                    presented.append(token.strip())
        ok = False
        for candidate in presented:
            for key in self.keys:  # no early exit: timing does not tell which key matched
                ok |= hmac.compare_digest(candidate, key)
        return ok

    # --- ASGI -----------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in API_PATHS:
            if scope["type"] == "http" and scope["path"] == OPENAPI_PATH and scope["method"] == "GET":
                await self._openapi_document(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        endpoint = scope["path"]
        status_seen: list[int] = []

        async def reply(status: int, message: str, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
            status_seen.append(status)
            await send_json(send, status, error_body(status, message), headers)

        try:
            await self._guarded(scope, receive, send, reply, status_seen)
        except Exception:
            logger.exception("unhandled error on %s", endpoint)
            if not status_seen:
                await reply(500, "unexpected error; the server logged it")
        finally:
            metrics.count_request(endpoint, status_seen[0] if status_seen else 500)

    async def _openapi_document(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._openapi is None:
            captured: dict[str, Any] = {"status": 500, "body": []}

            async def capture(message: Message) -> None:
                if message["type"] == "http.response.start":
                    captured["status"] = int(message["status"])
                elif message["type"] == "http.response.body":
                    captured["body"].append(message.get("body", b""))

            await self.app(scope, receive, capture)
            if captured["status"] != 200:
                await send_json(send, 500, error_body(500, "the OpenAPI document could not be generated"))
                return
            spec = patch_openapi(json.loads(b"".join(captured["body"])))
            self._openapi = json.dumps(spec).encode()
        await send_json(send, 200, self._openapi)

    async def _guarded(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        reply: Callable[..., Awaitable[None]],
        status_seen: list[int],
    ) -> None:
        headers: list[tuple[bytes, bytes]] = scope.get("headers") or []
        if not self.authorized(headers):
            await reply(
                401,
                "missing or invalid API key: send 'X-API-Key: <key>' or 'Authorization: Bearer <key>'",
                [(b"www-authenticate", b'Bearer realm="leadscore"')],
            )
            return
        if scope["method"] != "POST":
            await reply(405, f"use POST for {scope['path']}", [(b"allow", b"POST")])
            return
        content_type = b""
        content_length: int | None = None
        for name, value in headers:
            if name == b"content-type":
                content_type = value
            elif name == b"content-length":
                try:
                    content_length = int(value)
                except ValueError:
                    await reply(400, "invalid Content-Length header")
                    return
        media_type = content_type.split(b";", 1)[0].strip().lower().decode("latin-1")
        wrong_type = "send the body as JSON with 'Content-Type: application/json' (got {})"
        # no Content-Type is fine for an empty body (e.g. POST /reload); checked after reading
        # when the length is unknown
        if media_type not in JSON_TYPES and not (media_type == "" and content_length in (None, 0)):
            await reply(415, wrong_type.format(media_type or "none"))
            return
        limit = self.settings.max_body_bytes
        if content_length is not None and content_length > limit:
            await reply(
                413, f"body of {content_length} bytes is over the limit of {limit} (LEADSCORE_MAX_BODY_MB)"
            )
            return

        chunks: list[bytes] = []
        if content_length is None:  # chunked: read it all, bounded, then replay
            size = 0
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return  # client went away
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    await reply(413, f"body is over the limit of {limit} bytes (LEADSCORE_MAX_BODY_MB)")
                    return
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
            if media_type == "" and size:
                await reply(415, wrong_type.format("none"))
                return
            replay: list[Message] = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

            async def body_receive() -> Message:
                return replay.pop() if replay else await receive()

        else:

            async def body_receive() -> Message:
                message = await receive()
                if message["type"] == "http.request":
                    chunks.append(message.get("body", b""))
                return message

        held: dict[str, Any] = {}

        async def guarded_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = int(message["status"])
                status_seen.append(status)
                if status in (400, 500):  # BentoML's: pydantic errors, unexpected exceptions
                    held["start"] = message
                    held["body"] = []
                    return
                await send(message)
                return
            if message["type"] == "http.response.body" and "start" in held:
                held["body"].append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                status = int(held["start"]["status"])
                original = b"".join(held.pop("body"))
                held.pop("start")
                if status == 400:
                    new_status, body = rewrite_validation_error(original, b"".join(chunks))
                else:
                    new_status, body = status, error_body(status, "unexpected error; the server logged it")
                status_seen[:] = [new_status]
                await send_json(send, new_status, body)
                return
            await send(message)

        await self.app(scope, body_receive, guarded_send)
