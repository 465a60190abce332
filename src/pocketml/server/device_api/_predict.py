"""Cloud inference: a predict body in, the production model's predictions out.

The body is parsed with orjson, its fields checked here, and its inputs checked against
the model's schema by the serving service (shape, dtype, NaN). A well-formed body whose
fields or inputs fail their contract is a ``ValidationFailed`` (422, the catalog's row);
a body that is not JSON stays ``MalformedJson`` (400).
"""

from __future__ import annotations

import re
from typing import Any

from pocketml.bounds import check_text
from pocketml.errors import InvalidInput, MalformedJson, ValidationFailed
from pocketml.registry import Principal
from pocketml.server._json import parse_json
from pocketml.server._state import ServerState
from pocketml.server.device_api._answer import Answer
from pocketml.server.schemas_device import ID_PATTERN

__all__ = ["answer_predict", "parse_predict_body"]

_ALLOWED = frozenset({"inputs", "device_id", "prediction_id"})
_ID = re.compile(ID_PATTERN.removesuffix("$") + r"\Z")


async def answer_predict(
    state: ServerState, principal: Principal, name: str, body: bytes
) -> Answer:
    """Run the production version of model ``name`` on the body's inputs.

    Args:
        state: the server state.
        principal: the authenticated device key's principal.
        name: the model's name (from the path).
        body: the request body (JSON ``PredictRequest``).

    Returns:
        200 with the serving service's JSON.

    Raises:
        MalformedJson: the body is not JSON (400).
        ValidationFailed: bad fields, or inputs the model cannot take (422).
        NotFound: no such model or no production version (404).
        PayloadTooLarge: more samples than the server's row limit (413).
    """
    try:
        inputs, prediction_id = parse_predict_body(parse_json(body))
        answer = await state.serving.predict(principal.app_id, name, inputs, prediction_id)
    except (MalformedJson, ValidationFailed):
        raise
    except InvalidInput as exc:  # the serving schema check (and a bad name): the 422 row
        raise ValidationFailed.of(exc) from exc
    return Answer(200, answer)


def parse_predict_body(payload: Any) -> tuple[Any, str | None]:
    """The inputs and prediction id of a parsed predict body.

    Raises:
        ValidationFailed: not an object, unknown fields, no list ``inputs``, or a bad
            ``prediction_id`` / ``device_id``.
    """
    if not isinstance(payload, dict):
        raise ValidationFailed(
            f"the body must be a JSON object with 'inputs'; got {type(payload).__name__}."
        )
    extra = set(payload) - _ALLOWED
    if extra:
        raise ValidationFailed(
            f"unknown field(s) {sorted(extra)}; a predict body has inputs, device_id and "
            "prediction_id."
        )
    if "inputs" not in payload or not isinstance(payload["inputs"], list):
        raise ValidationFailed("field 'inputs' is required: a nested list (one sample or a batch).")
    prediction_id = payload.get("prediction_id")
    if prediction_id is not None and (
        not isinstance(prediction_id, str)
        or len(prediction_id) > 128
        or not _is_storable(prediction_id)
    ):
        raise ValidationFailed(
            "field 'prediction_id' must be a string of at most 128 characters without NUL "
            "characters or lone surrogates."
        )
    device_id = payload.get("device_id")
    if device_id is not None and (not isinstance(device_id, str) or not _ID.match(device_id)):
        raise ValidationFailed(
            f"field 'device_id' must match {ID_PATTERN} (8-128 letters, digits, _ . : -)."
        )
    return payload["inputs"], prediction_id


def _is_storable(text: str) -> bool:
    try:
        check_text(text)
    except ValueError:
        return False
    return True
