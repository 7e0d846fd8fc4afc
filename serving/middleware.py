"""ASGI middleware in front of the whole BentoML app: routes, authentication, limits, uniform JSON errors.

It is the outermost layer (:func:`put_guard_outermost`), so BentoML's metrics and access log only
ever see the service's own routes:

* **404/405** for unknown paths and wrong methods, answered here: a path never becomes a metrics
  label or an access-log line (unknown paths are counted under one label, ``other``).
* **401** without exactly one valid key (``X-API-Key: <key>`` or ``Authorization: Bearer <key>``,
  compared with :func:`hmac.compare_digest`) on every route outside the open list the service
  passes in (deny by default). **429** once a client address has sent
  ``LEADSCORE_AUTH_FAILURES_PER_MINUTE`` wrong keys in a minute.
* **503** + ``Retry-After`` when ``LEADSCORE_MAX_CONCURRENCY`` API requests are already in progress.
* **415** unless the body is ``application/json``; **400** when a request has both
  ``Transfer-Encoding`` and ``Content-Length``; **413** when the bytes actually read exceed
  ``LEADSCORE_MAX_BODY_MB`` (whatever the headers say, chunked or not).
* **400/422** rewritten from BentoML's pydantic errors, naming each field and lead; **5xx**, 404,
  405 and 504 bodies replaced with the documented :class:`~leadscore.serving.schemas.ErrorResponse`.
* ``GET /readyz``: JSON with the live model version and whether the tracking store answered.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from pathlib import Path
from typing import Any

from leadscore.serving import ledger_routes, metrics, state
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
#: Every other route the app serves (GET): BentoML's health, metrics, schema and docs routes.
SYSTEM_PATHS: frozenset[str] = frozenset(
    {"/livez", "/healthz", "/readyz", "/metrics", "/docs.json", "/", "/schema.json"}
)
STATIC_PREFIX = "/static_content/"
#: The score ledger's routes (GET history, DELETE erasure, POST feedback), labelled without the lead id.
LEDGER_METHODS: dict[str, tuple[str, ...]] = {
    ledger_routes.HISTORY_ROUTE: ("GET", "HEAD"),
    ledger_routes.FORGET_ROUTE: ("DELETE",),
    ledger_routes.FEEDBACK_ROUTE: ("POST",),
}
UNKNOWN_ROUTE = "other"  # the one metrics label of every path the service does not serve
JSON_TYPES: frozenset[str] = frozenset({"application/json"})
OPENAPI_PATH = "/docs.json"
READY_PATH = "/readyz"
_ERROR_RESPONSES: dict[str, str] = {
    "400": "Malformed JSON, or both Transfer-Encoding and Content-Length.",
    "401": "Missing or invalid API key, or more than one key.",
    "413": "Body over LEADSCORE_MAX_BODY_MB, more leads than LEADSCORE_MAX_BATCH, or more events than "
    "LEADSCORE_MAX_EVENTS_PER_LEAD / LEADSCORE_MAX_EVENTS_PER_REQUEST (the problem names the field).",
    "415": "Content-Type is not application/json.",
    "422": "The body does not fit the schema or breaks the data contract; problems name each field and lead.",
    "429": "Too many wrong API keys from this address; retry after Retry-After seconds.",
    "500": "Unexpected error (logged by the server; never a stack trace).",
    "503": "No model loaded, or too many requests in progress (Retry-After).",
    "504": "The request took longer than LEADSCORE_REQUEST_TIMEOUT_SECONDS.",
}
_REWRITTEN = frozenset({400, 404, 405, 500, 502, 503, 504})


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
        if path == "/reload":
            accepted = operation.setdefault("responses", {}).pop("200", None)
            if accepted is not None:
                accepted["description"] = "Accepted: every worker checks the model in the background."
                operation["responses"]["202"] = accepted
        responses = operation.setdefault("responses", {})
        responses.pop("404", None)
        for status, description in _ERROR_RESPONSES.items():
            responses[status] = {
                "description": description,
                "content": {"application/json": {"schema": reference}},
            }
    return spec


def static_files() -> frozenset[str]:
    """Paths of the Swagger UI's static files that BentoML serves (exact names, nothing else)."""
    try:
        import _bentoml_impl.server as server
    except ImportError:
        return frozenset()
    folder = Path(server.__file__).parent / "static_content"
    if not folder.is_dir():
        return frozenset()
    return frozenset(
        STATIC_PREFIX + path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()
    )


class _FailedAuth:
    """Wrong keys per client address over the last minute (bounded memory: 10,000 addresses)."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._seen: OrderedDict[str, list[float]] = OrderedDict()

    def _recent(self, client: str, now: float) -> list[float]:
        times = [t for t in self._seen.get(client, []) if now - t < 60.0]
        if times:
            self._seen[client] = times
            self._seen.move_to_end(client)
        else:
            self._seen.pop(client, None)
        return times

    def blocked_for(self, client: str) -> float:
        """Seconds until this address may try a key again (0: now)."""
        now = time.monotonic()
        times = self._recent(client, now)
        if len(times) < self.per_minute:
            return 0.0
        return max(1.0, 60.0 - (now - times[-self.per_minute]))

    def record(self, client: str) -> None:
        now = time.monotonic()
        self._seen.setdefault(client, []).append(now)
        self._seen.move_to_end(client)
        while len(self._seen) > 10_000:
            self._seen.popitem(last=False)


class GuardMiddleware:
    """Routes, authentication, limits and uniform JSON errors for the whole app (see the module doc)."""

    def __init__(
        self,
        app: ASGIApp,
        settings: ServingSettings | None = None,
        *,
        open_routes: Iterable[str] = (),
        open_prefixes: Sequence[str] = (),
    ) -> None:
        self.app = app
        self.settings = settings or ServingSettings.from_env()
        self.keys = tuple(key.encode("utf-8") for key in self.settings.api_keys)
        # No keys and no explicit LEADSCORE_ALLOW_NO_AUTH: fail closed. (The service refuses to
        # start in that case; raising here instead would surface only on the first request.)
        self.no_auth = not self.keys and self.settings.allow_no_auth
        self.open_routes = frozenset(open_routes)
        self.open_prefixes = tuple(open_prefixes)
        self.static = static_files()
        self.failed_auth = _FailedAuth(self.settings.auth_failures_per_minute)
        self.in_flight = 0
        self._openapi: bytes | None = None

    # --- routes ---------------------------------------------------------------------------------
    def route_of(self, path: str) -> str | None:
        """The route a path belongs to (the path itself), or None when the service has no such route."""
        if path in API_PATHS or path in SYSTEM_PATHS or path in self.static:
            return path
        return ledger_routes.route_of(path)

    def is_open(self, route: str) -> bool:
        return route in self.open_routes or route.startswith(self.open_prefixes)

    # --- authentication -------------------------------------------------------------------------
    @staticmethod
    def presented_keys(headers: Iterable[tuple[bytes, bytes]]) -> list[bytes]:
        presented: list[bytes] = []
        for name, value in headers:
            if name == b"x-api-key":
                presented.append(value.strip())
            elif name == b"authorization":
                scheme, _, token = value.strip().partition(b" ")
                presented.append(token.strip() if scheme.lower() == b"bearer" else b"")
        return presented

    def authorized(self, headers: list[tuple[bytes, bytes]]) -> bool:
        """Exactly one key, and a configured one (every key compared, no early exit)."""
        if self.no_auth:
            return True  # LEADSCORE_ALLOW_NO_AUTH=true and no keys
        presented = self.presented_keys(headers)
        if len(presented) != 1 or b"," in presented[0]:
            return False
        ok = False
        for key in self.keys:
            ok |= hmac.compare_digest(presented[0], key)
        return ok

    # --- ASGI -----------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = self.route_of(scope["path"])
        status_seen: list[int] = []

        async def reply(status: int, message: str, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
            status_seen.append(status)
            await send_json(send, status, error_body(status, message), headers)

        try:
            if route is None:
                await reply(404, "no such route: see GET /docs.json for the API")
                return
            await self._route(route, scope, receive, send, reply, status_seen)
            if not status_seen:  # the app below returned without answering
                await reply(500, "unexpected error; the server logged it")
        except Exception:
            logger.exception("unhandled error on %s", route or UNKNOWN_ROUTE)
            if not status_seen:
                await reply(500, "unexpected error; the server logged it")
        finally:
            metrics.count_request(route or UNKNOWN_ROUTE, status_seen[0] if status_seen else 500)

    async def _route(
        self,
        route: str,
        scope: Scope,
        receive: Receive,
        send: Send,
        reply: Callable[..., Awaitable[None]],
        status_seen: list[int],
    ) -> None:
        method = scope["method"]
        api = route in API_PATHS
        allowed = ("POST",) if api else LEDGER_METHODS.get(route, ("GET", "HEAD"))
        if method not in allowed:
            await reply(
                405, f"use {' or '.join(allowed)} for {route}", [(b"allow", ", ".join(allowed).encode())]
            )
            return
        headers: list[tuple[bytes, bytes]] = scope.get("headers") or []
        if not self.is_open(route):
            client = (scope.get("client") or ("unknown", 0))[0]
            wait = self.failed_auth.blocked_for(client)
            if wait > 0:
                await reply(
                    429,
                    "too many wrong API keys from this address: wait and retry with a valid key",
                    [(b"retry-after", str(int(wait + 0.999)).encode())],
                )
                return
            if not self.authorized(headers):
                presented = self.presented_keys(headers)
                if presented:
                    self.failed_auth.record(client)
                many = len(presented) > 1 or any(b"," in key for key in presented)
                await reply(
                    401,
                    "send exactly one API key"
                    if many
                    else "missing or invalid API key: send "
                    "'X-API-Key: <key>' or 'Authorization: Bearer <key>'",
                    [(b"www-authenticate", b'Bearer realm="leadscore"')],
                )
                return
        if route == OPENAPI_PATH:
            await self._openapi_document(scope, receive, send, status_seen)
            return
        if route == READY_PATH:
            await self._ready(send, status_seen)
            return
        if not api:
            await self.app(scope, receive, self._rewriting_send(send, status_seen, b""))
            return
        if self.in_flight >= self.settings.max_concurrency:
            await reply(
                503,
                f"{self.in_flight} requests in progress (LEADSCORE_MAX_CONCURRENCY): retry shortly",
                [(b"retry-after", b"1")],
            )
            return
        self.in_flight += 1
        try:
            await self._api(scope, receive, send, reply, status_seen, headers)
        finally:
            self.in_flight -= 1

    async def _ready(self, send: Send, status_seen: list[int]) -> None:
        holder = state.HOLDER
        if holder is None:
            body: dict[str, Any] = {"ready": False, "problem": "the service is starting"}
        else:
            body = holder.status()
            batch = state.BATCH_PROCESS
            body.update(batch.status() if batch is not None else {"batch_process": "off"})
        status = 200 if body.get("ready") else 503
        status_seen.append(status)
        await send_json(send, status, json.dumps(body).encode())

    async def _api(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        reply: Callable[..., Awaitable[None]],
        status_seen: list[int],
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        content_type = b""
        content_length: int | None = None
        chunked = False
        for name, value in headers:
            if name == b"content-type":
                content_type = value
            elif name == b"content-length":
                try:
                    content_length = int(value)
                except ValueError:
                    await reply(400, "invalid Content-Length header")
                    return
            elif name == b"transfer-encoding":
                chunked = True
        if chunked and content_length is not None:
            await reply(400, "send either Transfer-Encoding or Content-Length, not both")
            return
        media_type = content_type.split(b";", 1)[0].strip().lower().decode("latin-1")
        wrong_type = "send the body as JSON with 'Content-Type: application/json' (got {})"
        # no Content-Type is fine for an empty body (e.g. POST /reload); checked after reading
        # when the length is unknown
        if media_type not in JSON_TYPES and not (media_type == "" and content_length in (None, 0)):
            await reply(415, wrong_type.format(media_type or "none"))
            return
        limit = self.settings.max_body_bytes
        over = f"body is over the limit of {limit} bytes (LEADSCORE_MAX_BODY_MB)"
        if content_length is not None and content_length > limit:
            await reply(413, over)
            return

        # read the whole body here, counting the bytes that actually arrive, then replay it
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await reply(413, over)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        if media_type == "" and size:
            await reply(415, wrong_type.format("none"))
            return
        body = b"".join(chunks)
        replay: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

        async def body_receive() -> Message:
            return replay.pop() if replay else await receive()

        await self.app(scope, body_receive, self._rewriting_send(send, status_seen, body))

    def _rewriting_send(self, send: Send, status_seen: list[int], request_body: bytes) -> Send:
        """Pass responses through; BentoML's and Starlette's error bodies become the documented JSON."""
        held: dict[str, Any] = {}

        async def guarded_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = int(message["status"])
                status_seen.append(status)
                if status in _REWRITTEN:
                    held["start"] = message
                    held["body"] = []
                    return
                await send(message)
                return
            if message["type"] == "http.response.body" and "start" in held:
                held["body"].append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                start = held.pop("start")
                status = int(start["status"])
                original = b"".join(held.pop("body"))
                if _is_our_error(original):
                    new_status, body = status, original
                elif status == 400:
                    new_status, body = rewrite_validation_error(original, request_body)
                elif status == 504:
                    new_status, body = (
                        504,
                        error_body(504, "the request took too long; retry, or send fewer leads"),
                    )
                elif status == 404:
                    new_status, body = 404, error_body(404, "not found")
                elif status == 405:
                    new_status, body = 405, error_body(405, "method not allowed")
                elif status == 503:
                    new_status, body = 503, error_body(503, "the service is not ready")
                else:
                    new_status, body = status, error_body(status, "unexpected error; the server logged it")
                status_seen[:] = [new_status]
                extra = [
                    (k, v) for k, v in start.get("headers", []) if k.lower() in (b"retry-after", b"allow")
                ]
                await send_json(send, new_status, body, extra)
                return
            await send(message)

        return guarded_send

    async def _openapi_document(
        self, scope: Scope, receive: Receive, send: Send, status_seen: list[int]
    ) -> None:
        if self._openapi is None:
            captured: dict[str, Any] = {"status": 500, "body": []}

            async def capture(message: Message) -> None:
                if message["type"] == "http.response.start":
                    captured["status"] = int(message["status"])
                elif message["type"] == "http.response.body":
                    captured["body"].append(message.get("body", b""))

            await self.app(scope, receive, capture)
            if captured["status"] != 200:
                status_seen.append(500)
                await send_json(send, 500, error_body(500, "the OpenAPI document could not be generated"))
                return
            spec = patch_openapi(json.loads(b"".join(captured["body"])))
            self._openapi = json.dumps(spec).encode()
        status_seen.append(200)
        await send_json(send, 200, self._openapi)


def _is_our_error(body: bytes) -> bool:
    """Whether a body already is the documented error (the service's own 413/422/503 answers)."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return False
    return isinstance(parsed, dict) and set(parsed) == {"error", "message", "problems"}


def put_guard_outermost() -> None:
    """Make :class:`GuardMiddleware` the outermost layer of BentoML's app (idempotent).

    BentoML puts its metrics, tracing and access-log middleware outside the service's own; a path
    would be recorded there before the guard could refuse it. Only this process's app factory is
    changed, and only the order of its middleware list.
    """
    from _bentoml_impl.server.app import ServiceAppFactory

    if getattr(ServiceAppFactory, "_leadscore_guard_first", False):
        return
    original = ServiceAppFactory.middlewares

    def middlewares(self: Any) -> list[Any]:
        stack = list(original.fget(self))  # type: ignore[attr-defined]
        ours = [m for m in stack if getattr(m, "cls", None) is GuardMiddleware]
        return ours + [m for m in stack if getattr(m, "cls", None) is not GuardMiddleware]

    ServiceAppFactory.middlewares = property(middlewares)  # type: ignore[method-assign,assignment]
    ServiceAppFactory._leadscore_guard_first = True  # type: ignore[attr-defined]
