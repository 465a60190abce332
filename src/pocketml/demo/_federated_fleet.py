"""The phones of demo chapter 11 and the federatable version they train.

``make_federatable`` exposes a classifier's embedding (the input of its last ``Gemm``) as a
second ONNX output and names the head for ``params.federated``; ``push_federatable``
pushes that file as the production version; ``make_phones`` builds the fleet: real
``Device`` objects, each with photos of a few digits in its own light (non-IID data) kept
as federated training examples, and a charger the chapter can pull.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from pocketml.convert.build import BuildVariant, write_build
from pocketml.data import Dataset, Splits, augment_dataset, parse_augmentations
from pocketml.device import Device, DeviceFacts, DeviceState, FederatedReport
from pocketml.errors import InvalidInput
from pocketml.protocol import file_sha256
from pocketml.schema import ModelSchema
from pocketml.server.client import AdminClient

__all__ = ["MODEL", "FederatedDemo", "Phone", "make_federatable", "make_phones", "push_federatable"]

MODEL = "digits"
# Phones whose device classes run ONNX Runtime (federated training reads the embedding
# from an ONNX package; docs/federated-device.md).
_CLASSES = (("android-high", "android"), ("iphone", "ios"), ("edge-linux", "linux"))
_NOT_WATCHED = {"enabled": False}


@dataclass(frozen=True)
class FederatedDemo:
    """The chapter's knobs (the defaults are what ``pocketml demo`` runs).

    Attributes:
        phones: phones in the fleet.
        classes_per_phone: digits each phone has photos of (non-IID data).
        train_per_phone: labelled photos each phone trains on.
        rounds: federated rounds.
        clients_per_round: the cohort of a round.
        noise_multiplier, clip_norm, delta: DP-FedAvg.
        epochs, batch_size, learning_rate: the local recipe.
        unplugged_per_round: phones unplugged after sharing their keys (SecAgg+ dropouts).
        join_window_s: how long a round takes joins.
    """

    phones: int = 30
    classes_per_phone: int = 3
    train_per_phone: int = 40
    rounds: int = 5
    clients_per_round: int = 20
    noise_multiplier: float = 0.5
    clip_norm: float = 1.0
    delta: float = 1e-5
    epochs: int = 3
    batch_size: int = 16
    learning_rate: float = 0.2
    unplugged_per_round: int = 2
    join_window_s: float = 2.5

    @property
    def cohort(self) -> int:
        """The expected cohort: ``clients_per_round``, at most two thirds of the phones."""
        return min(self.clients_per_round, max(3, 2 * self.phones // 3))


def make_federatable(onnx_path: Path, out_path: Path) -> dict[str, str]:
    """Copy a classifier's ONNX file with its embedding as a second graph output.

    The embedding is the input of the last ``Gemm`` (the classifier head); it is exposed
    through an ``Identity`` node as output ``embedding``, after ``probabilities``.

    Returns:
        The ``params.federated`` naming the head (docs/federated.md, "Tasks").

    Raises:
        InvalidInput: the graph does not end in a ``Gemm`` head.
    """
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(onnx_path))
    gemms = [n for n in model.graph.node if n.op_type == "Gemm"]
    if not gemms:
        raise InvalidInput(f"{onnx_path.name} has no Gemm node: no linear head to train")
    head = gemms[-1]
    trans_b = next((a.i for a in head.attribute if a.name == "transB"), 0)
    initializers = {t.name: t for t in model.graph.initializer}
    weight = initializers.get(head.input[1])
    if weight is None or len(head.input) < 3 or head.input[2] not in initializers:
        raise InvalidInput(f"{onnx_path.name}: the last Gemm's weights are not initializers")
    dim = int(weight.dims[1] if trans_b else weight.dims[0])
    model.graph.node.append(helper.make_node("Identity", [head.input[0]], ["embedding"]))
    model.graph.output.append(
        helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", dim])
    )
    onnx.checker.check_model(model)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out_path))
    return {
        "embedding_output": "embedding",
        "weight": head.input[1],
        "bias": head.input[2],
        "weight_layout": "out_in" if trans_b else "in_out",
    }


def push_federatable(
    admin: AdminClient, onnx_path: Path, schema: ModelSchema, out_dir: Path
) -> int:
    """Push the federatable copy of ``onnx_path`` as the production version; its number."""
    path = out_dir / "cnn-small-federatable.onnx"
    spec = make_federatable(onnx_path, path)
    variant = BuildVariant(
        name="cnn-small-onnx-fp32-fed",
        path=path,
        format="onnx",
        precision="fp32",
        role="device",
        sha256=file_sha256(path),
        size=path.stat().st_size,
        profiles=[name for name, _ in _CLASSES],
    )
    write_build(
        out_dir,
        schema=schema,
        groups=[],
        extra_variants=[variant],
        params={"federated": spec},
        card="# digits, federatable\n\ncnn-small with its embedding exposed for on-device "
        "head training (demo chapter 11).\n",
    )
    version = admin.push_build(out_dir, stage="production")
    admin.set_policy(MODEL, version.version, hybrid={"mode": "local"}, monitor=_NOT_WATCHED)
    return version.version


class Phone:
    """One phone of the chapter: a real Device, its photos and its charger."""

    def __init__(
        self,
        index: int,
        url: str,
        device_key: str,
        work: Path,
        classes: tuple[int, ...],
        lighting: str,
        train: Dataset,
        test: Dataset,
        transport: httpx.BaseTransport,
    ) -> None:
        device_class, platform = _CLASSES[index % len(_CLASSES)]
        self.name = f"phone-{index:02d}"
        self.classes = classes
        self.lighting = lighting
        self.train = train
        self.test = test
        self.plugged = True
        self.device = Device(
            url,
            device_key,
            DeviceFacts(
                platform=platform,  # type: ignore[arg-type]
                os_version="1",
                app_version="3.0.0",
                formats=("onnx",),
                device_class=device_class,
                device_id=f"fl-demo-{index:04d}",
            ),
            work / self.name,
            state=DeviceState(
                network_type=lambda: "wifi",
                is_charging=lambda: self.plugged,
                is_idle=lambda: True,
                battery_level=lambda: 0.9 if self.plugged else 0.1,
            ),
            seed=index,
            transport=transport,
        )

    def accuracy(self) -> float:
        """Share of the phone's held-out photos its local model gets right (the SDK)."""
        model = self.device.model(MODEL)
        names = self.test.class_names
        hits = sum(
            model.predict(x).label == names[int(y)]
            for x, y in zip(self.test.features, self.test.labels, strict=True)
        )
        return hits / len(self.test)

    def step(self) -> FederatedReport:
        """One ``federated_step``."""
        return self.device.federated_step()


def make_phones(
    splits: Splits,
    url: str,
    device_key: str,
    work: Path,
    config: FederatedDemo,
    seed: int,
    transport: httpx.BaseTransport,
) -> list[Phone]:
    """Phones with non-IID photos: a few digits each, their own light, a soft-focus lens."""
    rng = np.random.default_rng(seed + 110)
    train_y = np.asarray(splits.train.labels)
    test_y = np.asarray(splits.test.labels)
    phones = []
    for i in range(config.phones):
        classes = tuple(sorted(int(c) for c in rng.choice(10, config.classes_per_phone, False)))
        lighting = (
            f"dim={rng.uniform(0.1, 0.3):.2f},noise={rng.uniform(0.3, 0.5):.2f},"
            f"blur={rng.uniform(0.2, 0.35):.2f}"
        )
        augmentations = parse_augmentations(lighting)
        rows = rng.choice(
            np.flatnonzero(np.isin(train_y, classes)), config.train_per_phone, replace=False
        )
        train = augment_dataset(splits.train.subset(rows), augmentations, seed=seed + 200 + i)
        held = np.flatnonzero(np.isin(test_y, classes))
        test = augment_dataset(splits.test.subset(held), augmentations, seed=seed + 300 + i)
        phone = Phone(i, url, device_key, work, classes, lighting, train, test, transport)
        phone.device.set_federated_consent(True)
        for x, y in zip(train.features, train.labels, strict=True):
            phone.device.add_training_example(MODEL, x, train.class_names[int(y)])
        phones.append(phone)
    return phones
