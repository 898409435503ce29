"""The typed boundary: the coordinator raises typed errors and returns typed values, and the
web front alone decides their HTTP status and body (web/replies.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import trio

from actors.batch import BatchCoordinator
from actors.errors import (
    BatchNotFound,
    CoordinatorError,
    FieldError,
    InvalidRequest,
    UnknownAccount,
)
from actors.requests import BatchRequest, LegRequest
from store import open_store
from tests.fixtures_web import typed
from web.converter import make_converter
from web.replies import STATUS, refusal

ACTORS = Path(__file__).parent.parent / "actors"


def _subclasses(cls: type) -> set[type]:
    found = set(cls.__subclasses__())
    return found.union(*(_subclasses(sub) for sub in found)) if found else found


def _http_replies(path: Path) -> list[int]:
    """Lines of `path` returning a tuple whose first item is an HTTP status (100..599)."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        value = node.value if isinstance(node, ast.Return) else None
        if (isinstance(value, ast.Tuple) and value.elts
                and isinstance(value.elts[0], ast.Constant)
                and isinstance(value.elts[0].value, int) and 100 <= value.elts[0].value <= 599):
            lines.append(node.lineno)
    return lines


def test_actors_answer_no_http_status() -> None:
    found = {path.name: _http_replies(path) for path in sorted(ACTORS.rglob("*.py"))}
    assert {name: lines for name, lines in found.items() if lines} == {}
    # The (status, body) reply type: an HTTP status and a JSON body.
    assert not [path.name for path in ACTORS.rglob("*.py")
                if "tuple[int, dict[str, Any]]" in path.read_text(encoding="utf-8")]


@pytest.mark.parametrize("error", sorted(_subclasses(CoordinatorError), key=lambda c: c.__name__),
                         ids=lambda c: c.__name__)
def test_every_refusal_has_its_status(error: type[CoordinatorError]) -> None:
    assert error in STATUS, f"web/replies.py maps no status for {error.__name__}"
    assert 400 <= STATUS[error][0] <= 599


def test_invalid_request_lists_its_fields() -> None:
    status, body = refusal(make_converter(), InvalidRequest(
        [FieldError("orders[0].quantity", "lot", "a multiple of 75")]))
    assert status == 422
    assert body == {"error": "invalid_request",
                    "message": "the request is invalid; nothing was placed",
                    "fields": [{"path": "orders[0].quantity", "rule": "lot",
                                "message": "a multiple of 75"}]}


async def test_the_coordinator_raises_typed_errors(sqlite_url: str) -> None:
    with trio.fail_after(10):
        async with open_store(sqlite_url) as store:
            coordinator = BatchCoordinator(store, {})
            refused = [
                coordinator.submit("nobody", *typed({"orders": []}, BatchRequest), None),
                coordinator.place_single("nobody", *typed({}, LegRequest)),
                coordinator.cancel_order("nobody", "1"),
                coordinator.kill("nobody"),
            ]
            for call in refused:
                with pytest.raises(UnknownAccount, match="no account 'nobody'"):
                    await call
            with pytest.raises(BatchNotFound, match="no batch 'abcdefghij'"):
                await coordinator.get("nobody", "abcdefghij")
