"""${VAR} / ${VAR:-default} substitution happens before type checks and reports unset variables."""

from __future__ import annotations

from typing import Any


def _listeners(port: str, token: str) -> str:
    return f"listeners:\n  partner:\n    port: {port}\n  admin:\n    port: 0\n    token: {token}\n"


def _doc(case: Any, port: str = "0", token: str = "s3cret", tail: str = "") -> str:
    base = case.doc(tail=tail)
    return base.replace(
        "listeners:\n  partner: {port: 0}\n  admin: {port: 0, token: s3cret}\n", _listeners(port, token)
    )


def test_variables_are_substituted_and_typed_after_substitution(case: Any) -> None:
    text = _doc(case, port="${PORT}", token="${TOKEN}", tail="telemetry:\n  enabled: ${TELEMETRY}\n")
    config = case.load(text, env={"PORT": "18080", "TOKEN": "from-env", "TELEMETRY": "false"})
    assert config.partner_listener.port == 18080
    assert config.admin_listener.token == "from-env"
    assert config.telemetry.enabled is False


def test_defaults_apply_when_unset_or_empty(case: Any) -> None:
    text = _doc(
        case, port="${PORT:-8088}", token="tok-${SUFFIX:-dflt}-end", tail="telemetry:\n  store: ${STORE:-}\n"
    )
    config = case.load(text, env={"SUFFIX": ""})
    assert config.partner_listener.port == 8088
    assert config.admin_listener.token == "tok-dflt-end"
    assert config.telemetry.store == ""  # empty: the embedded default under data_dir
    config = case.load(text, env={"PORT": "9", "SUFFIX": "x"})
    assert (config.partner_listener.port, config.admin_listener.token) == (9, "tok-x-end")


def test_quoted_references_in_flow_collections_and_dollar_escapes(case: Any) -> None:
    text = _doc(case, port='"${PORT}"', token="${NUM}")
    extra = "    rate_limit: {rps: \"${RPS}\", burst: 3}\n    artisans: ['$${x}']\n    api_keys:"
    config = case.load(
        text.replace("    api_keys:", extra), env={"PORT": "18080", "NUM": "12345", "RPS": "2.5"}
    )
    assert config.partner_listener.port == 18080  # quoted, still typed by the substituted text
    assert config.admin_listener.token == "12345"  # a string key keeps the text
    assert config.partners[0].rate_limit.rps == 2.5
    assert config.partners[0].artisans == ("${x}",)


def test_unset_variable_without_default_is_reported_with_line_and_key(case: Any) -> None:
    text = _doc(case, token="${LOOMGATE_ADMIN_TOKEN}", tail="telemetry:\n  store: ${STORE}\n")
    assert case.problems(text, env={}) == [
        case.at(
            "LOOMGATE_ADMIN_TOKEN",
            "listeners.admin.token: environment variable LOOMGATE_ADMIN_TOKEN is not set and has no default",
        ),
        case.at("${STORE}", "telemetry.store: environment variable STORE is not set and has no default"),
    ]


def test_malformed_references(case: Any) -> None:
    text = _doc(case, token="a${1BAD}b", tail="telemetry:\n  service_name: svc-${OPEN\n")
    assert case.problems(text) == [
        case.at(
            "1BAD", "listeners.admin.token: malformed reference '${1BAD}' (use ${NAME} or ${NAME:-default})"
        ),
        case.at("${OPEN", "telemetry.service_name: unterminated '${' (write $$ for a literal $)"),
    ]


def test_substituted_value_is_type_checked(case: Any) -> None:
    text = _doc(case, port="${PORT}")
    assert case.problems(text, env={"PORT": "eighty"}) == [
        case.at("${PORT}", "listeners.partner.port: expected a port number, got 'eighty'")
    ]


def test_process_environment_is_the_default_source(case: Any, monkeypatch: Any) -> None:
    from gateway.config_loader import load_config

    case.load(_doc(case, token="${LG_TEST_TOKEN:-x}"))
    monkeypatch.setenv("LG_TEST_TOKEN", "from-process")
    assert load_config(case.path).admin_listener.token == "from-process"
