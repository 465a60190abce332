"""Property-based fuzzing of the live server's OpenAPI document: no input may produce a 5xx.

Every operation of ``/openapi.json`` gets a bounded number of generated requests (valid and
invalid), derandomized so runs are repeatable, sent with a real token (the operator token
for app routes, the app's admin token otherwise, the device key for packages) so requests
reach the handlers instead of stopping at authentication.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode

from pocketml.server.schemas import AppCreatedPublic
from pocketml.testing import DIGITS_SCHEMA, OPERATOR_TOKEN, LiveServer

from .conftest import push_two_variants

MAX_EXAMPLES = 25


def _token_for(path: str, app: AppCreatedPublic) -> str:
    if path.startswith("/v1/admin/apps"):
        return OPERATOR_TOKEN
    if path.startswith("/v1/packages"):
        return app.device_key
    return app.admin_token


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_generated_request_gets_a_server_error(
    live_server: LiveServer, app_a: AppCreatedPublic, tmp_path: Path, mode: GenerationMode
) -> None:
    with live_server.admin(app_a.admin_token) as client:
        client.create_model("digits", DIGITS_SCHEMA)
        push_two_variants(client, "digits", tmp_path / "seed")
    schema = schemathesis.openapi.from_url(f"{live_server.url}/openapi.json")
    failures: list[str] = []
    unsatisfiable: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 13

    for operation in operations:
        headers = {"Authorization": f"Bearer {_token_for(operation.path, app_a)}"}
        fixed = {"name": "digits"} if "{name}" in operation.path else None

        @given(case=operation.as_strategy(mode, headers=headers, path_parameters=fixed))
        @settings(
            max_examples=MAX_EXAMPLES,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case) -> None:
            response = case.call(base_url=live_server.url, timeout=30)
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path} -> {response.status_code}: "
                    f"{response.text[:200]}"
                )
            else:
                assert response.status_code < 500

        try:
            check()
        except Unsatisfiable:
            # nothing invalid to generate (e.g. GET /healthz has no inputs): skip it
            assert mode is GenerationMode.NEGATIVE, operation.path
            unsatisfiable.append(f"{operation.method.upper()} {operation.path}")
    assert not failures, "\n".join(failures)
    assert len(unsatisfiable) < len(operations) // 2, unsatisfiable
