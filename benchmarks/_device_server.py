"""Run one server for the device benchmarks in this process (started as a subprocess).

    python _device_server.py pocketml <home> '<ServerSettings JSON>'
    python _device_server.py baseline-predict <model.onnx>
    python _device_server.py baseline-checkin <manifest.json>

Prints ``READY http://127.0.0.1:<port>`` once uvicorn listens (one worker, port 0).
Options travel on the command line, not through private environment variables.
"""

# No "from __future__ import annotations": FastAPI must see the baseline's local models.
import socket
import sys
from pathlib import Path
from typing import Any

import uvicorn


def _pocketml_app(home: str, server_json: str) -> Any:
    from pydantic import SecretStr

    from pocketml.config import ServerSettings, Settings
    from pocketml.server.app import create_app

    settings = Settings(
        home=Path(home),
        operator_token=SecretStr("pml_op_benchmark-operator-token"),
        server=ServerSettings.model_validate_json(server_json),  # e.g. {"predict": {...}}
    )
    return create_app(settings)


def _baseline_predict_app(model_path: str) -> Any:
    """The baseline: a plain FastAPI endpoint, pydantic in and out, ONNX Runtime."""
    import numpy as np
    import onnxruntime as ort
    from fastapi import FastAPI
    from pydantic import BaseModel

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    class PredictIn(BaseModel):
        inputs: list[list[float]]
        prediction_id: str | None = None

    class Prediction(BaseModel):
        label: str
        index: int
        confidence: float
        probabilities: list[float]

    class PredictOut(BaseModel):
        predictions: list[Prediction]
        prediction_id: str | None

    app = FastAPI()

    @app.post("/v1/models/{name}/predict", response_model=PredictOut)
    def predict(name: str, body: PredictIn) -> PredictOut:
        x = np.asarray(body.inputs, dtype=np.float32)
        probs = session.run(None, {input_name: x})[0]
        out = [
            Prediction(
                label=str(int(p.argmax())),
                index=int(p.argmax()),
                confidence=float(p.max()),
                probabilities=p.tolist(),
            )
            for p in probs
        ]
        return PredictOut(predictions=out, prediction_id=body.prediction_id)

    return app


def _baseline_checkin_app(manifest_path: str) -> Any:
    """The baseline: a bare FastAPI endpoint returning a constant manifest."""
    from fastapi import FastAPI, Request, Response

    body = Path(manifest_path).read_bytes()
    app = FastAPI()

    @app.post("/v1/checkin")
    async def checkin(request: Request) -> Response:
        await request.body()
        return Response(body, media_type="application/json")

    return app


class _Server(uvicorn.Server):
    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        port = self.servers[0].sockets[0].getsockname()[1]
        print(f"READY http://127.0.0.1:{port}", flush=True)


def main() -> None:
    """Build the requested app and serve it until terminated."""
    kind, *args = sys.argv[1:]
    factories = {
        "pocketml": _pocketml_app,
        "baseline-predict": _baseline_predict_app,
        "baseline-checkin": _baseline_checkin_app,
    }
    app = factories[kind](*args)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        access_log=False,  # as `pocketml server --no-access-log`
        server_header=False,  # as `pocketml server`
        lifespan="on",
        http="httptools",
        loop="uvloop",
    )
    _Server(config).run()  # run(): uvicorn's loop factory, i.e. uvloop as configured


if __name__ == "__main__":
    main()
