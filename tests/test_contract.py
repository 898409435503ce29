"""The API contract: /openapi.json describes every route, validates as OpenAPI 3.1, and the
running service keeps to it under schemathesis (every operation, valid tokens, seeded)."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import attrs
import httpx
import hypothesis
import jsonschema
import schemathesis
import trio
from openapi_spec_validator import validate
from schemathesis import GenerationMode
from schemathesis.checks import (
    FailureGroup,
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from supervision.service import Running
from tests.fixtures_service import ADMIN, METRICS, TOKENS, open_test_service
from web.contract import OPERATIONS, WEBSOCKETS, path_of

CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance,
          content_type_conformance, response_headers_conformance]
#: Valid input per the document, then input that breaks it (each answered 4xx, as documented).
MODES = ((GenerationMode.POSITIVE, 15), (GenerationMode.NEGATIVE, 10))
#: Past this the passes stop (what is left is counted as skipped): generating cases costs as
#: much as calling the service, so the deadline must stop the generation, not only the calls.
#: `make test` gives it 35 s; ORDERDESK_CONTRACT_BUDGET_S=600 runs every pass to the end.
BUDGET_S = float(os.environ.get("ORDERDESK_CONTRACT_BUDGET_S", "35"))
GOLDEN = Path(__file__).parent / "golden"
MASKED = re.compile(r"<[a-z_]+(:\d+)?>")


@attrs.define
class Figures:
    operations: int = 0
    cases: int = 0
    skipped: list[str] = attrs.Factory(list)  # (mode, operation) passes the budget cut
    failures: list[str] = attrs.Factory(list)
    statuses: dict[int, int] = attrs.Factory(dict)


def _token(path: str) -> str:
    if path.startswith("/admin"):
        return ADMIN
    return METRICS if path == "/metrics" else TOKENS["primary"]


def _fuzz(document: dict[str, Any], base_url: str, figures: Figures) -> None:
    """Every operation, seeded, in this (worker) thread; the service runs in the test's. Each
    mode's pass goes over every operation before the next mode starts."""
    schema = schemathesis.openapi.from_dict(document)
    operations = [result.ok() for result in schema.get_all_operations()]
    figures.operations = len(operations)
    deadline = time.monotonic() + BUDGET_S
    for mode, examples in MODES:
        for operation in operations:
            if time.monotonic() > deadline:
                figures.skipped.append(f"{mode.value} {operation.method.upper()} "
                                       f"{operation.path}")
                continue
            _fuzz_operation(operation, mode, examples, base_url, figures, deadline)


def _fuzz_operation(operation: Any, mode: GenerationMode, examples: int, base_url: str,
                    figures: Figures, deadline: float) -> None:
    headers = {"Authorization": f"Bearer {_token(operation.path)}"}

    @hypothesis.settings(
        max_examples=examples, derandomize=True, deadline=None,
        database=None, phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def check(case: Any) -> None:
        if time.monotonic() > deadline:
            return
        figures.cases += 1
        account = (case.path_parameters or {}).get("account_id")
        if account is not None and len(account) % 4:  # most cases reach a real account
            case.path_parameters["account_id"] = "primary"
        response = case.call(base_url=base_url, headers=headers, timeout=20)
        figures.statuses[response.status_code] = figures.statuses.get(
            response.status_code, 0) + 1
        case.validate_response(response, checks=CHECKS)

    try:
        check()
    except hypothesis.errors.Unsatisfiable:
        assert mode is GenerationMode.NEGATIVE  # nothing to break: no parameter, no body
    except (Exception, FailureGroup) as exc:  # one failure per operation, all reported
        figures.failures.append(
            f"{mode.value} {operation.method.upper()} {operation.path}: {exc!r:.600}")


async def _document(running: Running) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=f"http://{running.web_bind}") as client:
        response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    return response.json()


async def test_every_route_is_described(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with open_test_service(tmp_path) as running:
            document = await _document(running)
    table = {op.key for op in OPERATIONS}
    routes = {(method, rule.rule) for rule in running.app.url_map.iter_rules()
              if not rule.websocket
              for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}}
    assert routes - table == set(), "routes missing from web/contract.py's table"
    assert table - routes == set(), "operations in the table that the app does not have"
    sockets = {rule.rule for rule in running.app.url_map.iter_rules() if rule.websocket}
    assert sockets == WEBSOCKETS
    assert sum(len(methods) for methods in document["paths"].values()) == len(table)
    validate(document)  # OpenAPI 3.1, by openapi-spec-validator


async def test_documents_are_cacheable(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with open_test_service(tmp_path) as running, httpx.AsyncClient(
                base_url=f"http://{running.web_bind}") as client:
            for path in ("/openapi.json", "/asyncapi.json"):
                first = await client.get(path)
                assert first.status_code == 200 and "max-age" in first.headers["cache-control"]
                again = await client.get(path, headers={"If-None-Match": first.headers["etag"]})
                assert again.status_code == 304
            docs = await client.get("/docs")
            assert docs.status_code == 200
            assert "script-src 'self'" in docs.headers["content-security-policy"]
            assert (await client.get("/static/docs.js")).status_code == 200
            assert (await client.get("/redoc")).headers["location"] == "/docs"


async def test_the_service_keeps_to_its_contract(tmp_path: Path) -> None:
    figures = Figures()
    with trio.fail_after(BUDGET_S + 55):
        async with open_test_service(tmp_path) as running:
            document = await _document(running)
            started = time.monotonic()
            await trio.to_thread.run_sync(_fuzz, document, f"http://{running.web_bind}", figures)
            elapsed = time.monotonic() - started
    print(f"schemathesis: {figures.operations} operations, {figures.cases} cases, "
          f"{len(figures.failures)} failures, {len(figures.skipped)} passes skipped in "
          f"{elapsed:.1f}s; statuses {figures.statuses}")
    assert figures.operations == len(OPERATIONS)
    # the valid-input pass reaches every operation even on a loaded machine
    assert not [s for s in figures.skipped if s.startswith(GenerationMode.POSITIVE.value)]
    assert figures.failures == [], "\n".join(figures.failures)


def _masked(error: jsonschema.ValidationError) -> bool:
    """The golden record masks ids, times and prices as "<name>": a type error on one is not
    the document's; nor is an anyOf/oneOf that fails only on such."""
    if isinstance(error.instance, str) and MASKED.fullmatch(error.instance):
        return True
    # an optional object (`X | None`): its null branch fails too, whatever the object holds
    return bool(error.context) and all(
        _masked(e) or (e.validator == "type" and e.validator_value == "null")
        for e in error.context)


async def test_the_golden_record_keeps_to_the_contract(tmp_path: Path) -> None:
    """Every answer recorded in tests/golden/ (successes of every route, 409s, 503s, ...) has a
    documented status, and its body matches the documented schema."""
    with trio.fail_after(30):
        async with open_test_service(tmp_path) as running:
            document = await _document(running)
    problems, checked = [], 0
    for path in sorted(GOLDEN.glob("*.json")):
        for name, case in json.loads(path.read_text(encoding="utf-8")).items():
            if case.get("route") is None or "status" not in case or case["route"].startswith(
                    "WS "):
                continue  # 405s and the like (no route), websockets (checked as they arrive)
            method, rule = case["route"].split(" ", 1)
            operation = document["paths"][path_of(rule)][method.lower()]
            answer = operation["responses"].get(str(case["status"]))
            if answer is None:
                problems.append(f"{path.name} {name!r}: status {case['status']} undocumented")
                continue
            schema = answer.get("content", {}).get("application/json", {}).get("schema")
            if schema is None or "body" not in case:
                continue
            checked += 1
            root = {**schema, "components": document["components"]}
            errors = [e for e in jsonschema.Draft202012Validator(root).iter_errors(case["body"])
                      if not _masked(e)]
            problems += [f"{path.name} {name!r}: {e.message:.200}" for e in errors]
    print(f"golden: {checked} answers checked")
    assert checked > 80
    assert problems == []
