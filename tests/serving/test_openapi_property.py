"""Property test: requests generated from the OpenAPI document never get a 5xx.

Schemathesis (when installed) generates valid and invalid bodies for every operation of
``/docs.json`` and sends them through the ASGI app with a valid key; every answer must be a
2xx or a 4xx. Without schemathesis, hypothesis drives the request model directly.
"""

from __future__ import annotations

import warnings
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.serving.serving_support import API_KEY

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

AUTH = {"X-API-Key": API_KEY}
MAX_EXAMPLES = 40


try:
    import schemathesis
except ImportError:  # pragma: no cover - depends on the environment
    schemathesis = None  # type: ignore[assignment]


if schemathesis is not None:
    from schemathesis import GenerationMode

    @pytest.fixture(scope="module")
    def api_schema(asgi_app_client: TestClient) -> Any:
        return schemathesis.openapi.from_dict(asgi_app_client.get("/docs.json").json())

    def send(client: TestClient, case: Any) -> Any:
        """Send a generated case through our TestClient (schemathesis' own pytest plugin and
        ASGI loader would start and stop the app's lifespan themselves)."""
        kwargs = case.as_transport_kwargs(base_url="http://testserver", headers=AUTH)
        headers = {k: v for k, v in kwargs["headers"].items() if k.lower() != "content-length"}
        request: dict[str, Any] = {"headers": headers, "params": kwargs.get("params") or None}
        if "json" in kwargs:
            request["json"] = kwargs["json"]
        elif kwargs.get("data") is not None:
            data = kwargs["data"]
            request["content"] = data if isinstance(data, bytes | str) else str(data)
        return client.request(kwargs["method"], kwargs["url"], **request)

    @pytest.mark.parametrize(
        "mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value
    )
    @pytest.mark.parametrize("path", ["/score", "/explain", "/reload"])
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
    )
    @given(data=st.data())
    def test_no_server_errors_from_schema_generated_requests(
        client: TestClient, api_schema: Any, path: str, mode: Any, data: st.DataObject
    ) -> None:
        case = data.draw(api_schema[path]["POST"].as_strategy(mode))
        try:
            response = send(client, case)
        except (httpx.LocalProtocolError, UnicodeEncodeError, ValueError):
            assume(False)  # a request the HTTP client itself refuses to send (bad header names ...)
            return
        assert response.status_code < 500, f"{path}: {response.status_code} {response.text}"
        assert response.headers["content-type"].startswith("application/json")

else:  # pragma: no cover

    @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        body=st.dictionaries(
            st.sampled_from(["leads", "as_of", "explain", "top_k", "lead"]),
            st.recursive(
                st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
                lambda inner: (
                    st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
                ),
                max_leaves=20,
            ),
        )
    )
    def test_no_server_errors_from_generated_requests(client: TestClient, body: dict) -> None:
        for path in ("/score", "/explain"):
            assert client.post(path, json=body, headers=AUTH).status_code < 500
