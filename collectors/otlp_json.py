"""OTLP/JSON trace export files (``resourceSpans`` / ``scopeSpans`` / ``spans``) as Collector-schema rows.

Reads what the OpenTelemetry Collector's file exporter writes (one ``ExportTraceServiceRequest`` JSON object
per line) and a single pretty-printed object.  Values become the strings the Collector's clickhouseexporter
stores: ``SpanKind`` 'Server' / 'Client' / ..., ``StatusCode`` 'Unset' / 'Ok' / 'Error', attribute values as
text (ints as digits, doubles as JSON numbers, bools 'true'/'false', arrays and maps as JSON), times in UTC.
Ids are hex as the OTLP/JSON encoding requires; base64 ids (protobuf's generic JSON form) are converted.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

KINDS = {0: "Unspecified", 1: "Internal", 2: "Server", 3: "Client", 4: "Producer", 5: "Consumer"}
STATUSES = {0: "Unset", 1: "Ok", 2: "Error"}
# Timestamps are written in UTC and staged as DateTime64(9, 'UTC'), whatever the server's time zone.
TIMESTAMP_TYPE = "DateTime64(9, 'UTC')"


class OtlpJsonError(Exception):
    """The file is not OTLP/JSON; the message names the file and line."""


def looks_like_otlp(path: Path) -> bool:
    """True when the start of a JSON file is an OTLP trace export (has ``resourceSpans``)."""
    with path.open("rb") as f:
        return b'"resourceSpans"' in f.read(1 << 16)


def documents(path: Path) -> Iterator[tuple[int, Any]]:
    """(line, parsed object) for a whole-file JSON document or JSON Lines."""
    text = path.read_text(encoding="utf-8")
    try:
        yield 1, json.loads(text)
        return
    except ValueError:
        pass
    for lineno, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                yield lineno, json.loads(line)
            except ValueError as exc:
                raise OtlpJsonError(f"{path}: line {lineno}: invalid JSON: {exc}") from None


def rows(path: Path) -> Iterator[dict[str, Any]]:
    """One Collector-schema row (JSONEachRow object) per span in the file."""
    for lineno, doc in documents(path):
        where = f"{path}: line {lineno}"
        if not isinstance(doc, dict) or not isinstance(doc.get("resourceSpans"), list):
            raise OtlpJsonError(f"{where}: expected an object with a resourceSpans array")
        for rs in doc["resourceSpans"]:
            resource = attributes((rs.get("resource") or {}).get("attributes"), where)
            service = resource.get("service.name", "")
            for ss in rs.get("scopeSpans") or rs.get("instrumentationLibrarySpans") or []:
                scope = ss.get("scope") or ss.get("instrumentationLibrary") or {}
                for span in ss.get("spans") or []:
                    yield _row(span, resource, service, scope, where)


def _row(span: Mapping[str, Any], resource: dict[str, str], service: str, scope: Mapping[str, Any],
         where: str) -> dict[str, Any]:
    try:
        start, end = int(span["startTimeUnixNano"]), int(span["endTimeUnixNano"])
        trace_id, span_id = hex_id(span["traceId"]), hex_id(span["spanId"])
    except (KeyError, ValueError, TypeError) as exc:
        raise OtlpJsonError(f"{where}: span {span.get('name', '?')!r}: missing or invalid {exc}") from None
    status = span.get("status") or {}
    events = span.get("events") or []
    links = span.get("links") or []
    return {
        "Timestamp": ns_text(start), "TraceId": trace_id, "SpanId": span_id,
        "ParentSpanId": hex_id(span.get("parentSpanId") or ""), "TraceState": span.get("traceState") or "",
        "SpanName": span.get("name") or "", "SpanKind": _enum(span.get("kind", 0), KINDS, "SPAN_KIND_"),
        "ServiceName": service, "ResourceAttributes": resource,
        "ScopeName": scope.get("name") or "", "ScopeVersion": scope.get("version") or "",
        "SpanAttributes": attributes(span.get("attributes"), where), "Duration": max(end - start, 0),
        "StatusCode": _enum(status.get("code", 0), STATUSES, "STATUS_CODE_"),
        "StatusMessage": status.get("message") or "",
        "Events.Timestamp": [ns_text(int(e.get("timeUnixNano") or 0)) for e in events],
        "Events.Name": [e.get("name") or "" for e in events],
        "Events.Attributes": [attributes(e.get("attributes"), where) for e in events],
        "Links.TraceId": [hex_id(link.get("traceId") or "") for link in links],
        "Links.SpanId": [hex_id(link.get("spanId") or "") for link in links],
        "Links.TraceState": [link.get("traceState") or "" for link in links],
        "Links.Attributes": [attributes(link.get("attributes"), where) for link in links],
    }


def _enum(value: Any, names: Mapping[int, str], prefix: str) -> str:
    if isinstance(value, str) and not value.isdigit():
        word = value.removeprefix(prefix).lower()
        return word[:1].upper() + word[1:]
    return names.get(int(value), names[0])


def hex_id(value: str) -> str:
    """An id as lowercase hex: OTLP/JSON already is; protobuf's base64 form (24 or 12 chars) is decoded."""
    if not value:
        return ""
    try:
        int(value, 16)
        return value.lower()
    except ValueError:
        pass
    try:
        return base64.b64decode(value, validate=True).hex()
    except (binascii.Error, ValueError):
        raise ValueError(f"id {value!r} is neither hex nor base64") from None


def ns_text(ns: int) -> str:
    sec, frac = divmod(ns, 10**9)
    return dt.datetime.fromtimestamp(sec, dt.UTC).strftime("%Y-%m-%d %H:%M:%S") + f".{frac:09d}"


def attributes(items: Any, where: str) -> dict[str, str]:
    if not items:
        return {}
    if not isinstance(items, list):
        raise OtlpJsonError(f"{where}: attributes must be a list of key/value objects")
    return {str(kv.get("key", "")): any_value_text(kv.get("value") or {}) for kv in items}


def any_value_text(v: Mapping[str, Any]) -> str:
    """An AnyValue as the Collector's ClickHouse exporter stores it (pcommon Value.AsString)."""
    if "stringValue" in v:
        return str(v["stringValue"])
    if "boolValue" in v:
        return "true" if v["boolValue"] in (True, "true") else "false"
    if "intValue" in v:
        return str(int(v["intValue"]))
    if "doubleValue" in v:
        return _double_text(float(v["doubleValue"]))
    if "bytesValue" in v:
        return str(v["bytesValue"])  # base64 in JSON, and base64 in the Collector's string form too
    if "arrayValue" in v:
        return json.dumps([_plain(x) for x in (v["arrayValue"].get("values") or [])], separators=(",", ":"))
    if "kvlistValue" in v:
        return json.dumps({kv.get("key", ""): _plain(kv.get("value") or {})
                           for kv in (v["kvlistValue"].get("values") or [])}, separators=(",", ":"))
    return ""


def _plain(v: Mapping[str, Any]) -> Any:
    if "intValue" in v:
        return int(v["intValue"])
    if "doubleValue" in v:
        return float(v["doubleValue"])
    if "boolValue" in v:
        return v["boolValue"] in (True, "true")
    if "arrayValue" in v or "kvlistValue" in v:
        return json.loads(any_value_text(v))
    return v.get("stringValue", v.get("bytesValue"))


def _double_text(f: float) -> str:
    # The ECMAScript number-to-string form Go's pcommon uses: 40.0 -> '40', 1e-07 -> '1e-7'.
    if math.isnan(f) or math.isinf(f):
        return repr(f)
    if f == math.trunc(f) and abs(f) < 1e21:
        return str(int(f))
    text = repr(f)
    if "e" in text:
        mant, exp = text.split("e")
        text = f"{mant}e{'-' if exp.startswith('-') else '+'}{int(exp.lstrip('+-'))}"
    return text
