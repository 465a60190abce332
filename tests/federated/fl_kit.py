"""The federated tests' world: a federatable model, non-IID device data, a minimal device.

- ``federatable_onnx``: ``pixels (N, 64) -> relu(pixels @ B) = embedding (N, 16) ->
  Gemm(embedding, head.weight (10 x 16), head.bias, transB=1) -> softmax = probabilities``,
  with ``embedding`` as a second graph output (what a device reads), and ``FED_PARAMS``
  naming the head.
- ``device_data``: per device a few classes of 8x8-digit-like clusters (non-IID).
- ``MiniDevice``: a device's side of the wire in a few lines (verify the round document,
  train the head, clip, upload; the SecAgg steps) on top of ``pocketml.fl``; ``transport``
  is either the service (calls) or HTTP (the routes), so one device runs both ways.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pocketml.fl import (
    FixedPoint,
    Head,
    KeyAdvertisement,
    LocalRecipe,
    SecAggClient,
    SecAggConfig,
    clip_update,
    train_head,
)
from pocketml.protect import verify_signature
from pocketml.protocol import ROUND_SIGNATURE_CONTEXT

FEATURES, DIM, CLASSES = 64, 16, 10
FED_PARAMS = {
    "federated": {
        "embedding_output": "embedding",
        "weight": "head.weight",
        "bias": "head.bias",
        "weight_layout": "out_in",
    }
}
SCHEMA: dict[str, Any] = {
    "format_version": 1,
    "name": "digits",
    "inputs": [{"name": "pixels", "dtype": "float32", "shape": [None, FEATURES], "layout": "NC"}],
    "outputs": [
        {
            "name": "probabilities",
            "kind": "probabilities",
            "labels": [str(i) for i in range(CLASSES)],
        }
    ],
}


def backbone(seed: int = 0) -> np.ndarray:
    """The frozen backbone's weights ``B`` (64 x 16)."""
    return np.random.default_rng(seed).normal(0, 0.3, size=(FEATURES, DIM)).astype(np.float32)


def federatable_onnx(path: Path, seed: int = 0) -> Path:
    """Write the federatable model (zero head) to ``path``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    b = backbone(seed)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["pixels", "backbone.w"], ["z"]),
            helper.make_node("Relu", ["z"], ["embedding"]),
            helper.make_node(
                "Gemm", ["embedding", "head.weight", "head.bias"], ["logits"], transB=1
            ),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        ],
        "federatable",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [None, FEATURES])],
        [
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, CLASSES]),
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [None, DIM]),
        ],
        [
            numpy_helper.from_array(b, "backbone.w"),
            numpy_helper.from_array(np.zeros((CLASSES, DIM), np.float32), "head.weight"),
            numpy_helper.from_array(np.zeros(CLASSES, np.float32), "head.bias"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def variant_entry(path: Path, name: str = "fed-onnx") -> dict[str, Any]:
    """The push entry of ``path`` as an fp32 ONNX device variant."""
    return {
        "name": name,
        "format": "onnx",
        "precision": "fp32",
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }


def device_data(
    device: int, n: int = 40, classes_per_device: int = 3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Non-IID pixels and labels of one device: ``classes_per_device`` classes only."""
    centers = np.random.default_rng(seed).normal(0, 1, size=(CLASSES, FEATURES))
    rng = np.random.default_rng(seed * 1000 + device + 1)
    classes = [(device + i) % CLASSES for i in range(classes_per_device)]
    y = rng.choice(classes, size=n)
    x = centers[y] + rng.normal(0, 0.3, size=(n, FEATURES))
    return x.astype(np.float32), y.astype(np.int64)


def embed(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """The backbone's embedding (what ONNX Runtime returns as ``embedding``)."""
    return np.maximum(x @ backbone(seed), 0).astype(np.float64)


Transport = Any
"""Either a ``ServiceTransport`` or an ``HttpTransport`` (same methods)."""


@dataclass
class MiniDevice:
    """A device's side of the protocol, minimal: enough to drive a server in tests."""

    device_id: str
    x: np.ndarray
    y: np.ndarray
    public_keys: Mapping[str, bytes]
    client_id: int | None = None
    document: dict[str, Any] | None = None
    secagg: SecAggClient | None = None
    clipped: np.ndarray | None = None
    log: list[str] = field(default_factory=list)

    def join(self, t: Transport, task_id: str, round_number: int, **over: Any) -> dict[str, Any]:
        body = {
            "device_id": self.device_id,
            "round": round_number,
            "conditions": {"charging": True, "wifi": True, "idle": True},
            "num_samples": len(self.y),
            "base_version": 1,
            **over,
        }
        answer: dict[str, Any] = t.join(task_id, body)
        self.client_id = int(answer["client_id"])
        return answer

    def fetch(self, t: Transport, task_id: str, round_number: int) -> dict[str, Any]:
        body, key_id, signature = t.document(task_id, round_number, self.device_id)
        verify_signature(self.public_keys[key_id], ROUND_SIGNATURE_CONTEXT + body, signature)
        document: dict[str, Any] = json.loads(body)
        weights = base64.b64decode(document["weights"])
        assert hashlib.sha256(weights).hexdigest() == document["weights_sha256"]
        self.document = document
        return document

    def train(self) -> np.ndarray:
        assert self.document is not None
        d = self.document
        vector = np.frombuffer(base64.b64decode(d["weights"]), dtype="<f4").astype(np.float64)
        dim, classes = d["head"]["dim"], d["head"]["classes"]
        head = Head(np.zeros((dim, classes)), np.zeros(classes)).with_vector(vector)
        delta = train_head(head, embed(self.x), self.y, LocalRecipe(**d["recipe"]), seed=7)
        self.clipped = clip_update(delta, d["clip_norm"])[0]
        return self.clipped

    def upload(
        self,
        t: Transport,
        task_id: str,
        round_number: int,
        body: bytes | None = None,
        key: str | None = None,
    ) -> Any:
        if body is None:
            assert self.clipped is not None
            body = self.clipped.astype("<f4").tobytes()
        return t.upload(
            task_id,
            round_number,
            self.device_id,
            body,
            key or f"up-{self.device_id}-{round_number}",
            num_samples=len(self.y),
        )

    def participate(self, t: Transport, task_id: str, round_number: int) -> Any:
        self.join(t, task_id, round_number)
        self.fetch(t, task_id, round_number)
        self.train()
        return self.upload(t, task_id, round_number)

    # -- SecAgg -------------------------------------------------------------------------------

    def secagg_config(self, state: Mapping[str, Any]) -> SecAggConfig:
        c = state["config"]
        return SecAggConfig(
            round_id=c["secagg_round_id"],
            client_ids=tuple(c["client_ids"]),
            threshold=c["threshold"],
            encoding=FixedPoint(c["bits"], c["clip_norm"], c["max_clients"]),
            n_values=c["n_values"],
            neighbours=c["neighbours"],
            graph_seed=base64.b64decode(c["graph_seed"]),
        )

    def advertise(self, t: Transport, task_id: str, rnd: int) -> None:
        state = t.secagg_state(task_id, rnd, self.device_id)
        assert state["phase"] == "advertise", state["phase"]
        assert self.client_id is not None
        self.secagg = SecAggClient(self.client_id, self.secagg_config(state))
        advert = self.secagg.advertise_keys()
        t.secagg_post(
            task_id,
            rnd,
            "keys",
            {
                "device_id": self.device_id,
                "cipher_public": _b64(advert.cipher_public),
                "mask_public": _b64(advert.mask_public),
                "seed_commitment": _b64(advert.seed_commitment),
            },
        )

    def share(self, t: Transport, task_id: str, rnd: int) -> None:
        state = t.secagg_state(task_id, rnd, self.device_id)
        assert state["phase"] == "share", state["phase"]
        roster = {
            int(k): KeyAdvertisement(
                int(k),
                base64.b64decode(v["cipher_public"]),
                base64.b64decode(v["mask_public"]),
                base64.b64decode(v["seed_commitment"]),
            )
            for k, v in state["roster"].items()
        }
        assert self.secagg is not None
        shares = self.secagg.share_keys(roster)
        t.secagg_post(
            task_id,
            rnd,
            "shares",
            {
                "device_id": self.device_id,
                "shares": {str(k): _b64(v) for k, v in shares.items()},
            },
        )

    def masked_upload(self, t: Transport, task_id: str, rnd: int) -> Any:
        state = t.secagg_state(task_id, rnd, self.device_id)
        assert state["phase"] == "masked_input", state["phase"]
        assert self.secagg is not None and self.clipped is not None
        encoded = self.secagg.config.encoding.encode(self.clipped)
        inbox = {int(k): base64.b64decode(v) for k, v in state["inbox"].items()}
        masked = self.secagg.mask_update(encoded, inbox)
        return self.upload(t, task_id, rnd, masked.to_bytes(self.secagg.config.encoding))

    def unmask(self, t: Transport, task_id: str, rnd: int) -> None:
        state = t.secagg_state(task_id, rnd, self.device_id)
        assert state["phase"] == "unmask", state["phase"]
        assert self.secagg is not None
        answer = self.secagg.unmask(state["survivors"], state["dropped"])
        t.secagg_post(
            task_id,
            rnd,
            "unmask",
            {
                "device_id": self.device_id,
                "self_mask_shares": {
                    str(k): _b64(s.y.to_bytes(33, "big"))
                    for k, s in answer.self_mask_shares.items()
                },
                "mask_key_shares": {
                    str(k): _b64(s.y.to_bytes(33, "big")) for k, s in answer.mask_key_shares.items()
                },
            },
        )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class ServiceTransport:
    """The wire calls straight on a ``FederatedService`` (service-level tests)."""

    def __init__(self, service: Any, app_id: str) -> None:
        self.service = service
        self.app_id = app_id

    def join(self, task_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        answer = self.service.join(
            self.app_id,
            task_id,
            device_id=body["device_id"],
            round_number=body["round"],
            conditions=body["conditions"],
            num_samples=body["num_samples"],
            base_version=body["base_version"],
        )
        result: dict[str, Any] = answer.to_dict()
        return result

    def document(self, task_id: str, rnd: int, device_id: str) -> tuple[bytes, str, bytes]:
        signed = self.service.round_document(self.app_id, task_id, rnd, device_id)
        return signed.body, signed.key_id, signed.signature

    def upload(
        self, task_id: str, rnd: int, device_id: str, body: bytes, key: str, num_samples: int
    ) -> Any:
        return self.service.upload(
            self.app_id,
            task_id,
            rnd,
            device_id=device_id,
            num_samples=num_samples,
            idempotency_key=key,
            body=body,
        ).to_dict()

    def secagg_state(self, task_id: str, rnd: int, device_id: str) -> dict[str, Any]:
        state: dict[str, Any] = self.service.secagg_state(
            self.app_id, task_id, rnd, device_id
        ).to_dict()
        return state

    def secagg_post(self, task_id: str, rnd: int, step: str, body: Mapping[str, Any]) -> Any:
        method: Callable[..., Any] = getattr(self.service, f"secagg_{step}")
        return method(self.app_id, task_id, rnd, body["device_id"], body)


class WireError(Exception):
    """An error answer of the server: status, code, message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class HttpTransport:
    """The wire calls over HTTP with the app's device key (route tests)."""

    def __init__(self, http: Any) -> None:
        self.http = http

    @staticmethod
    def _check(response: Any) -> Any:
        if response.status_code >= 400:
            error = response.json()["error"]
            raise WireError(response.status_code, error["code"], error["message"])
        return response

    def join(self, task_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        response = self._check(self.http.post(f"/v1/federated/tasks/{task_id}/join", json=body))
        assert response.status_code == 200
        result: dict[str, Any] = response.json()
        return result

    def document(self, task_id: str, rnd: int, device_id: str) -> tuple[bytes, str, bytes]:
        response = self._check(
            self.http.get(
                f"/v1/federated/tasks/{task_id}/rounds/{rnd}", params={"device_id": device_id}
            )
        )
        signature = base64.b64decode(response.headers["Pocketml-Signature"])
        return response.content, response.headers["Pocketml-Signature-Key"], signature

    def upload(
        self, task_id: str, rnd: int, device_id: str, body: bytes, key: str, num_samples: int
    ) -> Any:
        response = self._check(
            self.http.put(
                f"/v1/federated/tasks/{task_id}/rounds/{rnd}/update",
                params={"device_id": device_id, "num_samples": num_samples},
                content=body,
                headers={"Content-Type": "application/octet-stream", "Idempotency-Key": key},
            )
        )
        assert response.status_code in (200, 202)
        return response.json()

    def secagg_state(self, task_id: str, rnd: int, device_id: str) -> dict[str, Any]:
        response = self._check(
            self.http.get(
                f"/v1/federated/tasks/{task_id}/rounds/{rnd}/secagg",
                params={"device_id": device_id},
            )
        )
        state: dict[str, Any] = response.json()
        return state

    def secagg_post(self, task_id: str, rnd: int, step: str, body: Mapping[str, Any]) -> Any:
        url = f"/v1/federated/tasks/{task_id}/rounds/{rnd}/secagg/{step}"
        return self._check(self.http.post(url, json=body)).json()

    def leave(self, task_id: str, rnd: int, device_id: str, reason: str = "battery_low") -> Any:
        url = f"/v1/federated/tasks/{task_id}/rounds/{rnd}/leave"
        return self._check(self.http.post(url, json={"device_id": device_id, "reason": reason}))
