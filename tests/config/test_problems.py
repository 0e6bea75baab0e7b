"""Each class of configuration mistake is reported as FILE:LINE: key.path: message, all at once."""

# Expected messages are kept whole on one line so they read exactly as a user sees them.
# ruff: noqa: E501

from __future__ import annotations

from typing import Any

import pytest

KNOWN_TOP = "listeners, limits, upstreams, routes, partners, telemetry, slas, maintenance, alerts"
HTTP_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"


def test_minimal_doc_is_valid(case: Any) -> None:
    config = case.load(case.doc())
    assert [u.name for u in config.upstreams] == ["inventory", "orders"]


def test_unknown_keys_suggest_the_closest_known_key(case: Any) -> None:
    text = case.doc(
        upstreams="  - name: shipping\n    url: http://127.0.0.1:9003\n    pool_sise: 10\n",
        tail="telemetery: {enabled: false}\nzzz: 1\n",
    )
    assert case.problems(text) == [
        case.at("pool_sise", "upstreams[2].pool_sise: unknown key 'pool_sise' (did you mean 'pool_size'?)"),
        case.at("telemetery", "telemetery: unknown key 'telemetery' (did you mean 'telemetry'?)"),
        case.at("zzz", f"zzz: unknown key 'zzz' (known: {KNOWN_TOP})"),
    ]


def test_missing_required_keys(case: Any) -> None:
    text = case.doc(upstreams="  - name: shipping\n", routes="  - name: lonely\n    path: /x\n")
    assert case.problems(text) == [
        case.at("name: shipping", "upstreams[2].url: missing required key"),
        case.at("name: lonely", "routes[1].methods: missing required key"),
        case.at("name: lonely", "routes[1].upstream: missing required key"),
    ]


def test_missing_top_level_sections(case: Any) -> None:
    text = "listeners:\n  partner: {port: 0}\n  admin: {port: 0, token: t}\n"
    assert case.problems(text) == [
        case.at("listeners:", "upstreams: missing required key"),
        case.at("listeners:", "routes: missing required key"),
        case.at("listeners:", "partners: missing required key"),
    ]


def test_wrong_types(case: Any) -> None:
    text = case.doc(
        routes="  - name: listing\n    path: /v1/listings\n    methods: GET\n    upstream: orders\n"
        "    max_body_size: [1]\n",
        tail="limits: {max_headers: many}\ntelemetry: {enabled: maybe, batch_size: 2.5}\n",
    )
    assert case.problems(text) == [
        case.at("methods: GET", "routes[1].methods: expected a list, got 'GET'"),
        case.at("max_body_size", "routes[1].max_body_size: expected a size, got a list"),
        case.at("limits:", "limits.max_headers: expected a number, got 'many'"),
        case.at("telemetry:", "telemetry.enabled: expected true or false, got 'maybe'"),
        case.at("telemetry:", "telemetry.batch_size: expected a whole number, got '2.5'"),
    ]


def test_bad_writer_settings(case: Any) -> None:
    text = case.doc(tail="telemetry: {writer_priority: lowest, insert_max_wait: -1s}\n")
    assert case.problems(text) == [
        case.at("telemetry:", "telemetry.insert_max_wait: must be 0 or more, got -1s"),
        case.at("telemetry:", "telemetry.writer_priority: must be one of idle, low, normal, got 'lowest'"),
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2 seconds", "bad duration '2 seconds' (use e.g. 250ms, 2s, 1m, 1h, 1d or a number of seconds)"),
        ("5ss", "bad duration '5ss' (use e.g. 250ms, 2s, 1m, 1h, 1d or a number of seconds)"),
        ("-1s", "must be greater than 0, got -1s"),
        ("0", "must be greater than 0, got 0"),
        ("0ms", "must be greater than 0, got 0ms"),
        ("-3", "must be greater than 0, got -3"),
        ("true", "bad duration 'true' (use e.g. 250ms, 2s, 1m, 1h, 1d or a number of seconds)"),
    ],
)
def test_bad_durations(case: Any, value: str, message: str) -> None:
    text = case.doc(
        upstreams=f"  - name: slow\n    url: http://127.0.0.1:1\n    timeouts: {{read: {value}}}\n"
    )
    assert case.problems(text) == [case.at("timeouts:", f"upstreams[2].timeouts.read: {message}")]


def test_zero_duration_where_allowed(case: Any) -> None:
    config = case.load(case.doc(tail="limits: {drain_timeout: 0}\ntelemetry: {sync_lag_max_skew: 0s}\n"))
    assert config.limits.drain_timeout == 0.0
    assert config.telemetry.sync_lag_max_skew == 0.0


def test_unwritten_alert_after_and_dead_letter_bound_must_be_positive(case: Any) -> None:
    text = case.doc(tail="telemetry: {unwritten_alert_after: 0s, dead_letter_max_bytes: none}\n")
    assert case.problems(text) == [
        case.at("telemetry:", "telemetry.dead_letter_max_bytes: bad size 'none' (use e.g. 512KiB, 1MiB, 10MB or a number of bytes)"),
        case.at("telemetry:", "telemetry.unwritten_alert_after: must be greater than 0, got 0s"),
    ]


def test_timeouts_longer_than_total(case: Any) -> None:
    text = case.doc(upstreams="  - name: x\n    url: http://h\n    timeouts: {connect: 1m, total: 30s}\n")
    assert case.problems(text) == [
        case.at("timeouts:", "upstreams[2].timeouts.connect: 1m is longer than the total timeout (30s)")
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("10 megs", "bad size '10 megs' (use e.g. 512KiB, 1MiB, 10MB or a number of bytes)"),
        ("1Mib", "bad size '1Mib' (use e.g. 512KiB, 1MiB, 10MB or a number of bytes)"),
        ("0", "must be greater than 0, got 0"),
        ("0KiB", "must be greater than 0, got 0KiB"),
        ("-5", "must be greater than 0, got -5"),
        ("1.5", "bad size '1.5' (use e.g. 512KiB, 1MiB, 10MB or a number of bytes)"),
    ],
)
def test_bad_sizes(case: Any, value: str, message: str) -> None:
    text = case.doc(
        routes=f"  - name: up\n    path: /up\n    methods: [POST]\n    upstream: orders\n"
        f"    max_body_size: {value}\n"
    )
    assert case.problems(text) == [case.at("max_body_size", f"routes[1].max_body_size: {message}")]


def test_bad_ports_and_shared_port(case: Any) -> None:
    text = (
        case.doc()
        .replace("partner: {port: 0}", "partner: {port: 70000}")
        .replace("admin: {port: 0, token: s3cret}", "admin: {port: http, token: s3cret}")
    )
    assert case.problems(text) == [
        case.at(
            "partner:",
            "listeners.partner.port: port must be between 0 and 65535 (0 = any free port), got 70000",
        ),
        case.at("admin:", "listeners.admin.port: expected a port number, got 'http'"),
    ]
    text = case.doc().replace("{port: 0}", "{port: 9000}").replace("{port: 0,", "{port: 9000,")
    assert case.problems(text) == [
        case.at("admin:", "listeners.admin.port: same port as listeners.partner.port (9000)")
    ]


def test_admin_token_required(case: Any) -> None:
    text = case.doc().replace("{port: 0, token: s3cret}", "{port: 0}")
    assert case.problems(text) == [case.at("admin:", "listeners.admin.token: missing required key")]
    text = case.doc().replace("token: s3cret", 'token: ""')
    assert case.problems(text) == [case.at("admin:", "listeners.admin.token: must not be empty")]


def test_duplicates(case: Any) -> None:
    text = case.doc(
        upstreams="  - name: orders\n    url: http://127.0.0.1:9005\n",
        routes="  - name: stock\n    path: /v2/stock\n    methods: [GET]\n    upstream: orders\n",
        partners=f"  - id: shopsync\n    api_keys: [{case.DIGEST_B}]\n"
        f"  - id: tillpoint\n    api_keys: [{case.DIGEST_A}]\n",
    )
    assert case.problems(text) == [
        case.at(
            "- name: orders",
            "upstreams[2].name: duplicate upstream name 'orders' (first at line "
            f"{case.line('- name: orders')})",
            occurrence=2,
        ),
        case.at(
            "- name: stock",
            f"routes[1].name: duplicate route name 'stock' (first at line {case.line('- name: stock')})",
            occurrence=2,
        ),
        case.at(
            "- id: shopsync",
            f"partners[1].id: duplicate partner id 'shopsync' (first at line {case.line('- id: shopsync')})",
            occurrence=2,
        ),
        case.at(
            case.DIGEST_A,
            f"partners[2].api_keys[0]: duplicate API key digest '{case.DIGEST_A}' "
            f"(first at line {case.line(case.DIGEST_A)})",
            occurrence=2,
        ),
    ]


def test_same_route_shape_and_method_twice(case: Any) -> None:
    text = case.doc(
        routes="  - name: stock2\n    path: /v1/artisans/{id}/stock\n    methods: [POST, GET]\n"
        "    upstream: orders\n"
    )
    assert case.problems(text) == [
        case.at(
            "path: /v1/artisans/{id}/stock",
            "routes[1].path: GET /v1/artisans/{id}/stock is already served "
            f"by route 'stock' (line {case.line('- name: stock')})",
        ),
    ]


def test_unknown_upstream_references(case: Any) -> None:
    text = case.doc(
        routes="  - name: bad\n    path: /b\n    methods: [GET]\n    upstream: inventry\n",
        tail="slas:\n  - name: s\n    upstream: ordrs\n  - name: r\n    route: stok\n"
        "maintenance:\n  - name: m\n    upstreams: [inventory, shiping]\n    recurrence: {every: daily, duration: 1h}\n",
    )
    assert case.problems(text) == [
        case.at("inventry", "routes[1].upstream: unknown upstream 'inventry' (known: inventory, orders)"),
        case.at("ordrs", "slas[0].upstream: unknown upstream 'ordrs' (known: inventory, orders)"),
        case.at("stok", "slas[1].route: unknown route 'stok' (known: stock, bad)"),
        case.at(
            "shiping", "maintenance[0].upstreams[1]: unknown upstream 'shiping' (known: inventory, orders)"
        ),
    ]


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("v1/items", "path template 'v1/items' must start with '/'"),
        (
            "/v1/items?page=1",
            "path template '/v1/items?page=1' must not contain '?' (a query string is not part of a route)",
        ),
        (
            "/v1//items",
            "path template '/v1//items' has an empty segment '//', which never survives path normalisation",
        ),
        (
            "/v1/../admin",
            "path template '/v1/../admin' has a '..' segment, which never survives path normalisation",
        ),
        (
            "/v1/./items",
            "path template '/v1/./items' has a '.' segment, which never survives path normalisation",
        ),
        ("/v1/{id", "path template '/v1/{id' has unbalanced braces in segment '{id'"),
        ("/v1/id}", "path template '/v1/id}' has unbalanced braces in segment 'id}'"),
        ("/v1/}id{", "path template '/v1/}id{' has unbalanced braces in segment '}id{'"),
        ("/v1/{{id}}", "path template '/v1/{{id}}' has unbalanced braces in segment '{{id}}'"),
        (
            "/v1/{1st}",
            "path template '/v1/{1st}' has an invalid parameter name '{1st}' (use letters, digits and '_')",
        ),
        ("/v1/{}", "path template '/v1/{}' has an invalid parameter name '{}' (use letters, digits and '_')"),
        ("/v1/{id}/x/{id}", "path template '/v1/{id}/x/{id}' repeats parameter '{id}'"),
        (
            "/v1/{id}.json",
            "path template '/v1/{id}.json': segment '{id}.json' must be a literal or a whole {name} "
            "parameter",
        ),
    ],
)
def test_route_templates_that_cannot_match(case: Any, template: str, message: str) -> None:
    text = case.doc(routes=f'  - name: t\n    path: "{template}"\n    methods: [GET]\n    upstream: orders\n')
    assert case.problems(text) == [case.at('path: "', f"routes[1].path: {message}")]


def test_upstream_path_parameters_must_exist(case: Any) -> None:
    text = case.doc(
        routes="  - name: t\n    path: /v1/orders/{order_id}\n    methods: [GET]\n    upstream: orders\n"
        "    upstream_path: /orders/{order}/{order_id}\n"
    )
    assert case.problems(text) == [
        case.at(
            "upstream_path",
            "routes[1].upstream_path: uses {order}, which path '/v1/orders/{order_id}' does not have",
        )
    ]


def test_artisan_and_sync_lag_lookups(case: Any) -> None:
    text = case.doc(
        routes="  - name: t\n    path: /v1/artisans/{artisan}/x\n    methods: [POST]\n    upstream: orders\n"
        "    artisan: {from: path, name: artisan_id}\n"
        "    sync_lag: {from: query, name: ts}\n"
        "  - name: u\n    path: /v1/u\n    methods: [POST]\n    upstream: orders\n"
        "    artisan: {from: header, name: 'X Artisan', required: sometimes}\n"
        "  - name: v\n    path: /v1/v\n    methods: [POST]\n    upstream: orders\n"
        "    artisan: {from: json, name: artisan..id}\n    sync_lag: {from: json}\n"
    )
    assert case.problems(text) == [
        case.at(
            "name: artisan_id}",
            "routes[1].artisan.name: 'artisan_id' is not a parameter of path "
            "'/v1/artisans/{artisan}/x' (parameters: artisan)",
            occurrence=2,
        ),
        case.at("from: query", "routes[1].sync_lag.from: must be one of header, json, got 'query'"),
        case.at("X Artisan", "routes[2].artisan.name: invalid header name 'X Artisan'"),
        case.at("X Artisan", "routes[2].artisan.required: expected true or false, got 'sometimes'"),
        case.at(
            "artisan..id", "routes[3].artisan.name: invalid dotted JSON path 'artisan..id' (e.g. artisan.id)"
        ),
        case.at("sync_lag: {from: json}", "routes[3].sync_lag.name: missing required key"),
    ]


def test_http_methods(case: Any) -> None:
    text = case.doc(
        routes="  - name: m\n    path: /m\n    methods: [GET, get, TRACE, FETCH, GET]\n"
        "    upstream: orders\n  - name: n\n    path: /n\n    methods: []\n    upstream: orders\n"
    )
    assert case.problems(text) == [
        case.at(
            "[GET, get",
            f"routes[1].methods[1]: unknown HTTP method 'get' (methods are case-sensitive: "
            f"write 'GET') (valid: {HTTP_METHODS})",
        ),
        case.at("[GET, get", f"routes[1].methods[2]: unknown HTTP method 'TRACE' (valid: {HTTP_METHODS})"),
        case.at("[GET, get", f"routes[1].methods[3]: unknown HTTP method 'FETCH' (valid: {HTTP_METHODS})"),
        case.at("[GET, get", "routes[1].methods[4]: 'GET' is listed twice"),
        case.at("methods: []", "routes[2].methods: needs at least one HTTP method"),
    ]


def test_api_keys_must_be_sha256_hex(case: Any) -> None:
    upper = case.DIGEST_B.upper()
    text = case.doc(
        partners=f"  - id: pos\n    api_keys: [my-secret-key, {upper}]\n  - id: none\n    api_keys: []\n"
        f"  - id: raw\n    api_keys: {case.DIGEST_B}\n"
    )
    hint = "`loomgate hash-key` prints one"
    assert case.problems(text) == [
        case.at(
            "my-secret-key",
            f"partners[1].api_keys[0]: must be a SHA-256 digest: 64 lowercase hex characters "
            f"(13 characters); {hint}",
        ),
        case.at(
            "my-secret-key",
            f"partners[1].api_keys[1]: must be a SHA-256 digest: 64 lowercase hex characters "
            f"(use lower case); {hint}",
        ),
        case.at("api_keys: []", "partners[2].api_keys: needs at least one key digest"),
        case.at(
            f"api_keys: {case.DIGEST_B}", f"partners[3].api_keys: expected a list, got '{case.DIGEST_B}'"
        ),
    ]


def test_rate_limits_and_artisans(case: Any) -> None:
    text = case.doc(
        partners=f"  - id: pos\n    api_keys: [{case.DIGEST_B}]\n    artisans: all\n"
        "    rate_limit: {rps: 0, burst: -2}\n"
    )
    assert case.problems(text) == [
        case.at("artisans: all", "partners[1].artisans: expected a list of artisan ids or \"*\", got 'all'"),
        case.at("rate_limit", "partners[1].rate_limit.rps: must be greater than 0, got 0"),
        case.at("rate_limit", "partners[1].rate_limit.burst: must be at least 1, got -2"),
    ]


def test_slas(case: Any) -> None:
    text = case.doc(
        tail="slas:\n"
        "  - name: both\n    upstream: orders\n    route: stock\n    availability: 100.5\n"
        "  - name: neither\n    latency: {threshold: 300ms, target: 0}\n"
        "  - name: fine\n    route: stock\n    availability: 100\n    window: 0\n"
    )
    assert case.problems(text) == [
        case.at("name: both", "slas[0]: names both upstream and route; give exactly one"),
        case.at("100.5", "slas[0].availability: must be a percentage in (0, 100], e.g. 99.9, got 100.5"),
        case.at("name: neither", "slas[1]: names neither upstream nor route; give exactly one"),
        case.at("latency:", "slas[1].latency.target: must be a percentage in (0, 100], e.g. 99.9, got 0"),
        case.at("window: 0", "slas[2].window: must be greater than 0, got 0"),
    ]


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ("[STATUS] = 200", "condition '[STATUS] = 200': no operator (use one of == != <= >= < > contains)"),
        (
            "[STATSU] == 200",
            "condition '[STATSU] == 200': unknown placeholder [STATSU] (expected one of [STATUS], "
            "[RESPONSE_TIME], [BODY], [CONNECTED])",
        ),
        (
            "[RESPONSE_TIME] < fast",
            "condition '[RESPONSE_TIME] < fast': operator < needs a number, got 'fast'",
        ),
        (
            "[STATUS].code == 200",
            "condition '[STATUS].code == 200': only [BODY] takes a JSON path, not [STATUS]",
        ),
        ("[BODY].status ==", "condition '[BODY].status ==': missing value after '=='"),
        (
            "STATUS == 200",
            "condition 'STATUS == 200': must start with a placeholder such as [STATUS] or [BODY].field",
        ),
    ],
)
def test_health_check_conditions(case: Any, condition: str, message: str) -> None:
    text = case.doc(
        upstreams=f"  - name: hc\n    url: http://h\n    health_check:\n      conditions:\n"
        f'        - "[STATUS] == 200"\n        - "{condition}"\n'
    )
    assert case.problems(text) == [
        case.at(f'"{condition}"', f"upstreams[2].health_check.conditions[1]: {message}")
    ]


def test_health_check_fields(case: Any) -> None:
    text = case.doc(
        upstreams="  - name: hc\n    url: http://h\n    health_check:\n      interval: 5s\n"
        "      timeout: 10s\n      method: BREW\n      path: healthz\n      conditions: []\n"
        "      failure_threshold: 0\n"
    )
    assert case.problems(text) == [
        case.at("timeout: 10s", "upstreams[2].health_check.timeout: 10s is longer than the interval (5s)"),
        case.at(
            "method: BREW",
            f"upstreams[2].health_check.method: unknown HTTP method 'BREW' (valid: {HTTP_METHODS})",
        ),
        case.at("path: healthz", "upstreams[2].health_check.path: must start with '/', got 'healthz'"),
        case.at("conditions: []", "upstreams[2].health_check.conditions: needs at least one condition"),
        case.at(
            "failure_threshold", "upstreams[2].health_check.failure_threshold: must be at least 1, got 0"
        ),
    ]


def test_urls(case: Any) -> None:
    text = case.doc(
        upstreams="  - name: ftp\n    url: ftp://files.example\n  - name: q\n    url: http://h/x?a=1\n",
        tail="alerts:\n  webhooks:\n    - {name: mail, url: 'mailto:ops@example.com'}\n"
        "    - {name: nohost, url: 'https://', format: xml}\n",
    )
    assert case.problems(text) == [
        case.at(
            "ftp://",
            "upstreams[2].url: must be an http:// or https:// URL with a host, got 'ftp://files.example'",
        ),
        case.at("a=1", "upstreams[3].url: must not have a query or fragment, got 'http://h/x?a=1'"),
        case.at(
            "mailto",
            "alerts.webhooks[0].url: must be an http:// or https:// URL with a host, got "
            "'mailto:ops@example.com'",
        ),
        case.at(
            "nohost", "alerts.webhooks[1].url: must be an http:// or https:// URL with a host, got 'https://'"
        ),
        case.at("nohost", "alerts.webhooks[1].format: must be one of json, slack, got 'xml'"),
    ]


def test_maintenance_windows(case: Any) -> None:
    text = case.doc(
        tail="maintenance:\n"
        "  - name: backwards\n    start: 2026-03-01T02:00:00Z\n    end: 2026-03-01T01:00:00+00:00\n"
        "  - name: garbled\n    start: yesterday\n    end: 2026-13-01\n"
        "  - name: half\n    start: 2026-03-01T02:00:00Z\n"
        "  - name: nothing\n    upstreams: '*'\n"
        "  - name: both\n    start: 2026-03-01T02:00:00Z\n    end: 2026-03-01T03:00:00Z\n"
        "    recurrence: {every: daily, duration: 1h}\n"
        "  - name: monthly\n    recurrence: {every: monthly, at: '25:00', duration: 1h}\n"
        "  - name: weekly\n    recurrence: {every: weekly, weekday: funday, duration: 8d}\n"
        "  - name: noday\n    recurrence: {every: weekly, duration: 1h}\n"
        "  - name: daily\n    recurrence: {every: daily, weekday: mon, duration: 1h}\n"
    )
    assert case.problems(text) == [
        case.at(
            "01:00:00+00:00",
            "maintenance[0].end: 2026-03-01T01:00:00Z is not after start (2026-03-01T02:00:00Z)",
        ),
        case.at(
            "yesterday",
            "maintenance[1].start: bad timestamp 'yesterday' (use ISO-8601, e.g. 2025-03-01T02:00:00Z)",
        ),
        case.at(
            "2026-13-01",
            "maintenance[1].end: bad timestamp '2026-13-01' (use ISO-8601, e.g. 2025-03-01T02:00:00Z)",
        ),
        case.at(
            "name: half", "maintenance[2].end: missing required key (a one-off window needs start and end)"
        ),
        case.at("name: nothing", "maintenance[3]: needs start and end (one-off) or a recurrence"),
        case.at("name: both", "maintenance[4]: give either start/end (one-off) or recurrence, not both"),
        case.at(
            "every: monthly", "maintenance[5].recurrence.every: must be one of daily, weekly, got 'monthly'"
        ),
        case.at(
            "every: monthly", "maintenance[5].recurrence.at: time '25:00' is not HH:MM (UTC, 00:00-23:59)"
        ),
        case.at(
            "funday",
            "maintenance[6].recurrence.weekday: must be a weekday (mon, tue, wed, thu, fri, sat, sun), "
            "got 'funday'",
        ),
        case.at("funday", "maintenance[6].recurrence.duration: 8d is longer than the period (7d)"),
        case.at(
            "{every: weekly, duration",
            "maintenance[7].recurrence.weekday: missing required key (every: weekly needs a weekday)",
        ),
        case.at("weekday: mon", "maintenance[8].recurrence.weekday: only allowed with every: weekly"),
    ]


def test_telemetry(case: Any) -> None:
    text = case.doc(
        tail="telemetry:\n  store: mysql://db:3306\n  ttl: 36h\n  database: my-db\n"
        "  write_store: false\n  spool: {max_bytes: 0}\n  otlp:\n    protocol: grpc\n"
        "    headers: {'bad header': x}\n"
    )
    assert case.problems(text) == [
        case.at(
            "mysql", "telemetry.store: store DSN scheme must be chdb://, http:// or https://, got 'mysql'"
        ),
        case.at("ttl: 36h", "telemetry.ttl: must be a whole number of days, e.g. 30d (0 keeps data forever)"),
        case.at("my-db", "telemetry.database: invalid database name 'my-db' (letters, digits and '_')"),
        case.at("max_bytes", "telemetry.spool.max_bytes: must be greater than 0, got 0"),
        case.at("otlp:", "telemetry.otlp.endpoint: missing required key"),
        case.at("bad header", "telemetry.otlp.headers.bad header: invalid header name 'bad header'"),
    ]
    text = case.doc(tail="telemetry:\n  write_store: false\n")
    assert case.problems(text) == [
        case.at("write_store", "telemetry.write_store: false needs telemetry.otlp, or records go nowhere")
    ]


def test_duplicate_mapping_keys(case: Any) -> None:
    text = case.doc(upstreams="  - name: x\n    url: http://a\n    url: http://b\n")
    assert case.problems(text) == [
        case.at(
            "url: http://b",
            f"upstreams[2].url: duplicate key (first set at line {case.line('url: http://a')})",
        )
    ]


def test_every_problem_is_reported_at_once_in_line_order(case: Any) -> None:
    text = case.doc(
        upstreams="  - name: x\n    url: http://h\n    pool_size: 0\n",
        routes="  - name: r\n    path: /r\n    methods: [GET]\n    upstream: nowhere\n",
        partners="  - id: p\n    api_keys: [nope]\n",
        tail="alerts: {evaluate_every: never}\nslas:\n  - name: s\n    route: r\n    availability: 0\n",
    )
    problems = case.problems(text)
    assert [p.split(": ", 2)[1] for p in problems] == [
        "upstreams[2].pool_size",
        "routes[1].upstream",
        "partners[1].api_keys[0]",
        "alerts.evaluate_every",
        "slas[0].availability",
    ]
    lines = [int(p.split(":")[1]) for p in problems]
    assert lines == sorted(lines) and len(set(lines)) == 5


def test_yaml_syntax_error_has_a_line(case: Any) -> None:
    text = case.doc() + "telemetry:\n  enabled: [true\n  database: otel\n"
    problems = case.problems(text)
    assert len(problems) == 1
    assert problems[0].startswith(f"{case.path}:")
    assert "YAML syntax error" in problems[0]
    assert int(problems[0].split(":")[1]) >= case.line("enabled: [true")


def test_tab_indentation_is_a_syntax_error_at_its_line(case: Any) -> None:
    text = case.doc() + "limits:\n\tmax_headers: 10\n"
    problems = case.problems(text)
    # libyaml and the pure-Python parser word the character differently; the line is what matters
    assert len(problems) == 1
    assert problems[0].startswith(
        case.at("\tmax_headers", "YAML syntax error: while scanning for the next token found character")
    )
    assert problems[0].endswith("cannot start any token")


def test_empty_and_non_mapping_files(case: Any) -> None:
    assert case.problems("") == [f"{case.path}:1: the file is empty"]
    assert case.problems("- a\n- b\n") == [f"{case.path}:1: expected a mapping, got a list"]


def test_missing_file(tmp_path: Any) -> None:
    from gateway.config_loader import ConfigError, load_config

    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    assert info.value.problems == [f"{missing}:1: cannot read the file: No such file or directory"]
