"""Generate the reference pages that come from code: the mapping schema, from the pydantic models, and
the endpoints, from the service's OpenAPI document.

``python docs/gen_reference.py`` rewrites the text between ``<!-- generated:NAME:start -->`` and
``<!-- generated:NAME:end -->`` in ``docs/reference/*.md``; ``--check`` reports stale pages
(``tests/test_docs.py`` fails on them). The field descriptions are the models' own
(``leadscore.features.mapping``, ``leadscore.features.events``): ``leadscore mapping-schema`` prints
the same, and ``--json`` the JSON schema.
"""

from __future__ import annotations

import argparse
import enum
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "reference" / "mapping-schema.md"
MARKERS = re.compile(
    r"(<!-- generated:(?P<name>[a-z-]+):start -->\n)(?P<body>.*?)(<!-- generated:(?P=name):end -->)",
    re.DOTALL,
)


def _models_in(annotation: object) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        found.extend(_models_in(arg))
    return found


def _type_name(annotation: object) -> str:
    if annotation is type(None):
        return "None"
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__name__
    if typing.get_origin(annotation) is typing.Annotated:
        return _type_name(typing.get_args(annotation)[0])
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(annotation))
    args = ", ".join("..." if a is Ellipsis else _type_name(a) for a in typing.get_args(annotation))
    name = getattr(origin, "__name__", str(origin))
    return f"{name}[{args}]" if args else name


def _default(field: typing.Any) -> str:
    if field.is_required():
        return "required"
    value = field.default
    if value is PydanticUndefined:
        value = field.default_factory() if field.default_factory is not None else None
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, BaseModel):
        return "(its defaults)"
    return _short(repr(value))


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _prose(text: str) -> str:
    return _cell(text).replace("<", "&lt;")


def model_tables(root: type[BaseModel]) -> str:
    """One table per model reachable from ``root``, in the order a mapping file nests them."""
    seen: list[type[BaseModel]] = []
    queue = [root]
    while queue:
        model = queue.pop(0)
        if model in seen:
            continue
        seen.append(model)
        for field in model.model_fields.values():
            queue.extend(m for m in _models_in(field.annotation) if m not in seen)
    parts = []
    for model in seen:
        doc = _prose((model.__doc__ or "").strip().split("\n\n")[0])
        lines = [
            f"#### `{model.__name__}`",
            "",
            doc,
            "",
            "| field | type | default | description |",
            "|---|---|---|---|",
        ]
        for name, field in model.model_fields.items():
            key = field.alias or name
            kind, default = _cell(_type_name(field.annotation)), _cell(_default(field))
            lines.append(f"| `{key}` | `{kind}` | `{default}` | {_prose(field.description or '')} |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def _schema_type(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return " | ".join(_schema_type(s) for s in schema["anyOf"])
    if schema.get("type") == "array":
        return f"list[{_schema_type(schema.get('items', {}))}]"
    if "enum" in schema:
        return " | ".join(repr(v) for v in schema["enum"])
    return str(schema.get("type", "any")).replace("null", "None")


def _fields_table(schema: dict[str, Any], components: dict[str, Any]) -> list[str]:
    if "$ref" in schema:
        schema = components.get(_schema_type(schema), schema)
    required = set(schema.get("required", ()))
    lines = ["| field | type | required | description |", "|---|---|---|---|"]
    for name, field in schema.get("properties", {}).items():
        kind = _cell(_schema_type(field))
        needed = "yes" if name in required else ""
        lines.append(f"| `{name}` | `{kind}` | {needed} | {_prose(field.get('description', ''))} |")
    return lines


def openapi_document() -> dict[str, Any]:
    """The service's OpenAPI document as ``/docs.json`` serves it (BentoML's, with the service's patch)."""
    import json

    from leadscore.serving.middleware import patch_openapi
    from leadscore.serving.service import LeadScoringService

    return patch_openapi(json.loads(json.dumps(LeadScoringService.openapi_spec.asdict(), default=str)))


def endpoints() -> str:
    spec = openapi_document()
    components = spec.get("components", {}).get("schemas", {})
    parts = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if method != "post":
                continue
            summary = (operation.get("description") or "").strip().split("\n")[0]
            key = "key" if operation.get("security") else "open"
            lines = [f"### `POST {path}`", "", f"{_prose(summary)} Auth: {key}.", ""]
            body = (
                operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            )
            if body and (body.get("properties") or "$ref" in body):
                lines += ["Request body:", "", *_fields_table(body, components), ""]
            ok = next(
                (r for status, r in operation.get("responses", {}).items() if status in ("200", "202")), {}
            )
            answer = ok.get("content", {}).get("application/json", {}).get("schema")
            if answer and answer.get("properties"):
                lines += ["Answer:", "", *_fields_table(answer, components), ""]
            statuses = ", ".join(f"`{status}`" for status in sorted(operation.get("responses", {})))
            lines.append(f"Statuses: {statuses}.")
            parts.append("\n".join(lines))
    for name in (
        "ScoredLead",
        "Reason",
        "RawLead",
        "Activity",
        "EngagementCount",
        "ErrorResponse",
        "Problem",
    ):
        if name in components:
            doc = _prose((components[name].get("description") or "").split("\n\n")[0])
            parts.append(
                "\n".join([f"### `{name}`", "", doc, "", *_fields_table(components[name], components)])
            )
    return "\n\n".join(parts) + "\n"


def generated(name: str) -> str:
    from leadscore.features.events import EventMapping
    from leadscore.features.mapping import ExportMapping

    if name == "endpoints":
        return endpoints()
    if name == "event-mapping":
        return model_tables(EventMapping)
    if name == "flat-mapping":
        return model_tables(ExportMapping)
    raise ValueError(f"unknown generated section {name!r}")


def render(text: str) -> str:
    return MARKERS.sub(lambda m: m.group(1) + generated(m.group("name")) + m.group(4), text)


def pages() -> list[Path]:
    return sorted((ROOT / "docs" / "reference").glob("*.md"))


def stale() -> list[Path]:
    return [p for p in pages() if render(p.read_text()) != p.read_text()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report stale pages, write nothing")
    args = parser.parse_args(argv)
    if args.check:
        found = stale()
        for path in found:
            print(f"stale generated reference: {path.relative_to(ROOT)} (run python docs/gen_reference.py)")
        return 1 if found else 0
    for path in pages():
        if (new := render(path.read_text())) != path.read_text():
            path.write_text(new)
            print(f"generated {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
