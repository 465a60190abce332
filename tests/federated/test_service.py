"""FederatedService on SQLite and PostgreSQL with a hand-driven clock: rounds, DP, SecAgg,
bad input, retries, the result version, and a restart (a second service on the database)."""

from __future__ import annotations

import base64
import functools
import math
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from federated.fl_kit import (
    FED_PARAMS,
    SCHEMA,
    MiniDevice,
    ServiceTransport,
    device_data,
    embed,
    federatable_onnx,
    variant_entry,
)
from pocketml.errors import Conflict, InvalidInput
from pocketml.federated import FederatedService
from pocketml.fl import Head
from pocketml.protect import MasterKey
from pocketml.protocol import (
    FlAlreadyReported,
    FlNormTooLarge,
    FlNotEligible,
    FlNotFinite,
    FlNotSelected,
    FlRoundClosed,
    FlTaskClosed,
    FlWrongPhase,
    FlWrongRound,
    FlWrongShape,
)
from pocketml.registry import LocalArtifactStore, ModelCreate, Registry, VersionCreate
from pocketml.server._federated import make_signer
from pocketml.server._loop import make_pusher
from pocketml.serving import extract_variant
from shared_server import DATABASES, postgres_test_database, unique_app_name

T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    registry: Registry
    app_id: str
    clock: Clock
    tmp: Path

    def service(self) -> FederatedService:
        from pocketml.delivery import parse_targeting

        return FederatedService(
            self.registry.store.engine,
            self.registry,
            signer=make_signer(self.registry),
            pusher=make_pusher(self.registry),
            extract=functools.partial(extract_variant, self.registry),
            work_dir=self.tmp / "fl",
            clock=self.clock,
            owner="replica-a",
            check_targeting=parse_targeting,
        )

    def devices(self, n: int, prefix: str = "device") -> list[MiniDevice]:
        app = self.registry.get_app(self.app_id)
        keys = {k: _raw(v) for k, v in app.public_keys.items()}
        out = []
        for i in range(n):
            x, y = device_data(i)
            out.append(MiniDevice(f"{prefix}-{i:04d}", x, y, keys))
        return out


def _raw(value: Any) -> bytes:
    return value if isinstance(value, bytes) else base64.b64decode(value)


@pytest.fixture(scope="module", params=DATABASES)
def registry(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Registry]:
    """One registry per database for the module (a database costs seconds on PostgreSQL);
    every test works in an app of its own."""
    tmp = tmp_path_factory.mktemp("fl-registry")
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp / 'registry.db'}"
        else:
            url = stack.enter_context(postgres_test_database())
        registry = Registry(
            url,
            LocalArtifactStore(tmp / "artifacts"),
            MasterKey.from_b64(base64.b64encode(bytes(range(32))).decode()),
            tmp_dir=tmp,
        )
        registry.open()
        stack.callback(registry.close)
        yield registry


@pytest.fixture
def world(registry: Registry, tmp_path: Path) -> World:
    app_id = registry.create_app(unique_app_name("fl")).app.id
    registry.create_model(app_id, ModelCreate(name="digits", schema=SCHEMA))
    path = federatable_onnx(tmp_path / "model.onnx")
    body = VersionCreate.model_validate(
        {"params": FED_PARAMS, "card": "base", "variants": [variant_entry(path)]}
    )
    registry.push_version(app_id, "digits", body, {"fed-onnx": path})
    return World(registry, app_id, Clock(), tmp_path)


def _spec(**over: Any) -> dict[str, Any]:
    base = {
        "version": 1,
        "rounds": 2,
        "clients_per_round": 3,
        "min_reports": 2,
        "round_timeout_s": 600,
        "recipe": {"epochs": 2, "batch_size": 8, "learning_rate": 0.5},
        "clip_norm": 5.0,
    }
    return {**base, **over}


def test_a_plain_task_runs_its_rounds_and_pushes_a_candidate_with_lineage(world: World) -> None:
    service = world.service()
    t = ServiceTransport(service, world.app_id)
    task = service.create_task(world.app_id, "digits", _spec(), actor="admin:test")
    devices = world.devices(3)
    for rnd in (1, 2):
        for d in devices:
            d.participate(t, task.id, rnd)
    retry = devices[0].upload(t, task.id, 2)  # a lost answer, retried after the end
    assert retry["duplicate"] is True
    done = service.get_task(world.app_id, task.id)
    assert done.state == "succeeded", done.log
    assert [r.state for r in done.rounds] == ["aggregated", "aggregated"]
    assert done.rounds_done == 2 and done.clients_total == 6
    version = world.registry.get_version(world.app_id, "digits", done.result_version or 0)
    lineage = version.run_record["federated"]
    assert lineage["task_id"] == task.id and lineage["rounds"] == 2 and lineage["clients"] == 6
    assert lineage["aggregator"] == "fedavg" and lineage["epsilon"] is None
    assert version.parent_version == 1 and version.stage == "candidate"
    # the result package verifies and its head is the task's final head: it classifies
    # the devices' data better than the zero head it started from
    variant = version.variants[0]
    path = extract_variant(world.registry, world.app_id, variant, world.tmp / "check")
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.concatenate([d.x for d in devices])
    y = np.concatenate([d.y for d in devices])
    probs, emb = session.run(["probabilities", "embedding"], {"pixels": x})
    assert np.allclose(emb, embed(x), atol=1e-5)
    assert float(np.mean(probs.argmax(1) == y)) > 0.6
    # nothing a device sent is kept once its round is over
    with world.registry.store.engine.connect() as conn:
        kept = conn.exec_driver_sql(
            "SELECT count(*) FROM federated_participants WHERE payload IS NOT NULL "
            f"AND task_id = '{task.id}'"
        ).scalar()
    assert kept == 0


def test_the_round_document_is_signed_by_the_apps_package_key(world: World) -> None:
    service = world.service()
    task = service.create_task(world.app_id, "digits", _spec(), actor="a")
    device = world.devices(1)[0]
    t = ServiceTransport(service, world.app_id)
    device.join(t, task.id, 1)
    document = device.fetch(t, task.id, 1)  # verifies the signature and the weights hash
    assert document["n_values"] == 16 * 10 + 10 and document["upload"] == "float32"
    signed = service.round_document(world.app_id, task.id, 1, device.device_id)
    from pocketml.protect import SignatureInvalid, verify_signature
    from pocketml.protocol import ROUND_SIGNATURE_CONTEXT

    key = device.public_keys[signed.key_id]
    with pytest.raises(SignatureInvalid):
        verify_signature(key, ROUND_SIGNATURE_CONTEXT + signed.body + b" ", signed.signature)
    with pytest.raises(SignatureInvalid):  # the context keeps it from passing as another's
        verify_signature(key, signed.body, signed.signature)


def test_bad_updates_are_refused_with_the_field_and_never_aggregated(world: World) -> None:
    service = world.service()
    t = ServiceTransport(service, world.app_id)
    task = service.create_task(world.app_id, "digits", _spec(rounds=1), actor="a")
    a, b, c = world.devices(3)
    for d in (a, b):
        d.join(t, task.id, 1)
        d.fetch(t, task.id, 1)
        d.train()
    good = a.clipped.astype("<f4").tobytes()  # type: ignore[union-attr]
    bad = {
        FlWrongShape: good[:-4],
        FlNotFinite: np.full(170, np.nan, "<f4").tobytes(),
        FlNormTooLarge: (np.ones(170, "<f4") * 10).tobytes(),
    }
    for error, body in bad.items():
        with pytest.raises(error, match="field 'update'"):
            a.upload(t, task.id, 1, body)
    with pytest.raises(FlNotSelected, match="device_id"):
        c.upload(t, task.id, 1, good)
    with pytest.raises(FlWrongRound, match="round"):
        a.upload(t, task.id, 2, good)
    assert a.upload(t, task.id, 1, good)["duplicate"] is False
    assert a.upload(t, task.id, 1, good)["duplicate"] is True  # the same key: a retry
    with pytest.raises(FlAlreadyReported):
        a.upload(t, task.id, 1, good, key="another-key-1")
    assert service.get_task(world.app_id, task.id).rounds[0].reports == 1


def test_joins_check_conditions_samples_version_and_the_window(world: World) -> None:
    service = world.service()
    t = ServiceTransport(service, world.app_id)
    spec = _spec(requires={"charging": True, "wifi": True, "min_samples": 10}, join_window_s=60)
    task = service.create_task(world.app_id, "digits", spec, actor="a")
    d = world.devices(5)
    with pytest.raises(FlNotEligible, match=r"conditions\.charging"):
        d[0].join(t, task.id, 1, conditions={"charging": False, "wifi": True, "idle": True})
    with pytest.raises(FlNotEligible, match="num_samples"):
        d[0].join(t, task.id, 1, num_samples=3)
    with pytest.raises(FlNotEligible, match="base_version"):
        d[0].join(t, task.id, 1, base_version=7)
    with pytest.raises(FlWrongRound):
        d[0].join(t, task.id, 2)
    first = d[0].join(t, task.id, 1)
    assert d[0].join(t, task.id, 1) == first  # idempotent
    d[1].join(t, task.id, 1)
    d[2].join(t, task.id, 1)
    with pytest.raises(FlRoundClosed):  # the cohort is full
        d[3].join(t, task.id, 1)
    with pytest.raises(FlNotSelected):
        service.round_document(world.app_id, task.id, 1, d[3].device_id)


def test_a_round_short_of_min_reports_closes_without_a_model_then_the_task_fails(
    world: World,
) -> None:
    service = world.service()
    t = ServiceTransport(service, world.app_id)
    task = service.create_task(world.app_id, "digits", _spec(max_retries=1), actor="a")
    d, late = world.devices(2)
    d.participate(t, task.id, 1)
    late.join(t, task.id, 1)
    late.fetch(t, task.id, 1)
    late.train()
    world.clock.now += 601  # past the deadline with 1 report of 2
    with pytest.raises(FlRoundClosed, match="deadline"):  # before the server's pass runs
        late.upload(t, task.id, 1)
    assert task.id in service.tick()
    after = service.get_task(world.app_id, task.id)
    assert after.rounds[0].state == "no_model" and after.round == 2 and after.state == "running"
    with pytest.raises(FlWrongRound):  # the old round is over
        late.upload(t, task.id, 1, key="late-key-01")
    world.clock.now += 601
    service.tick()
    failed = service.get_task(world.app_id, task.id)
    assert failed.state == "failed" and "max_retries 1" in (failed.error or "")
    assert [r.state for r in failed.rounds] == ["no_model", "no_model"]
    with pytest.raises(FlTaskClosed):
        d.join(t, task.id, 2)


def test_dp_reports_epsilon_after_every_round_from_the_accountant(world: World) -> None:
    from pocketml.federated import PrivacyAccountant

    service = world.service()
    t = ServiceTransport(service, world.app_id)
    spec = _spec(noise_multiplier=1.0, population=6, clip_norm=1.0, seed=3, clients_per_round=3)
    task = service.create_task(world.app_id, "digits", spec, actor="a")
    devices = world.devices(20)
    joined = 0
    for d in devices:  # Poisson sampling: each device is selected with q = 3 / 6
        try:
            d.participate(t, task.id, 1)
            joined += 1
        except FlNotSelected:
            continue
        except (FlRoundClosed, FlWrongRound):  # the cohort (at most 2 m) filled up
            break
    world.clock.now += 601
    service.tick()
    info = service.get_task(world.app_id, task.id)
    reference = PrivacyAccountant(1.0, 0.5, 1e-5).spend_round().epsilon
    assert joined >= 2 and info.rounds[0].state == "aggregated"
    assert info.epsilon == pytest.approx(reference) and info.rounds[0].outcome is not None
    assert info.rounds[0].outcome["epsilon"] == pytest.approx(reference)


def test_a_secagg_round_recovers_a_dropout_and_equals_the_plain_mean(world: World) -> None:
    service = world.service()
    t = ServiceTransport(service, world.app_id)
    spec = _spec(rounds=1, clients_per_round=6, min_reports=3, secagg=True, clip_norm=5.0)
    task = service.create_task(world.app_id, "digits", spec, actor="a")
    devices = world.devices(6)  # threshold 3 of 5 neighbours
    for d in devices:
        d.join(t, task.id, 1)  # the sixth fills the cohort: phase advertise
    for d in devices:
        d.fetch(t, task.id, 1)
        d.train()
        d.advertise(t, task.id, 1)
    for d in devices:
        d.share(t, task.id, 1)
    survivors = devices[:5]  # the sixth vanishes after sharing
    for d in survivors:
        d.masked_upload(t, task.id, 1)
    # the server holds masked values only: none equals an encoded update
    with world.registry.store.engine.connect() as conn:
        stored = [
            bytes(r[0])
            for r in conn.exec_driver_sql(
                "SELECT payload FROM federated_participants WHERE payload IS NOT NULL "
                f"AND task_id = '{task.id}'"
            )
        ]
    assert len(stored) == 5
    world.clock.now += 61  # the masked-input phase times out: device 6 is dropped
    service.tick()
    for d in survivors[:4]:
        d.unmask(t, task.id, 1)
    # the fifth survivor gives up in the unmask phase: its masked input stays in the sum
    # and the round no longer waits for its answer (each secret still has 3 shares)
    assert service.leave(
        world.app_id, task.id, 1, device_id=survivors[4].device_id, reason="battery_low"
    )
    info = service.get_task(world.app_id, task.id)
    assert info.state == "succeeded", info.log
    outcome = info.rounds[0].outcome or {}
    assert outcome["dropped"] == [devices[5].client_id] and outcome["reports"] == 5
    version = world.registry.get_version(world.app_id, "digits", info.result_version or 0)
    path = extract_variant(world.registry, world.app_id, version.variants[0], world.tmp / "c")
    import onnx
    from onnx import numpy_helper

    init = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}
    mean = np.mean([d.clipped for d in survivors], axis=0)  # type: ignore[misc]
    expected = Head(np.zeros((16, 10)), np.zeros(10)).with_vector(mean)
    assert np.allclose(init["head.weight"], expected.weights.T, atol=1e-5)
    assert np.allclose(init["head.bias"], expected.bias, atol=1e-5)


def test_a_secagg_round_below_its_threshold_fails_safely_and_retries(world: World) -> None:
    service = world.service()
    t = ServiceTransport(service, world.app_id)
    spec = _spec(rounds=1, clients_per_round=4, min_reports=2, secagg=True)
    task = service.create_task(world.app_id, "digits", spec, actor="a")
    devices = world.devices(4)
    for d in devices:
        d.join(t, task.id, 1)
        d.fetch(t, task.id, 1)
        d.train()
    for d in devices:
        d.advertise(t, task.id, 1)
    for d in devices:
        d.share(t, task.id, 1)
    devices[0].masked_upload(t, task.id, 1)  # 1 of 4: below the threshold (2 of 3)
    with pytest.raises(FlWrongPhase, match="masked_input"):
        service.secagg_unmask(world.app_id, task.id, 1, devices[0].device_id, {})
    world.clock.now += 61
    service.tick()
    info = service.get_task(world.app_id, task.id)
    assert info.rounds[0].state == "failed" and info.round == 2 and info.state == "running"
    with world.registry.store.engine.connect() as conn:
        left = conn.exec_driver_sql(
            f"SELECT count(*) FROM federated_shares WHERE task_id = '{task.id}'"
        ).scalar()
    assert left == 0


def test_a_restarted_service_resumes_the_open_round(world: World) -> None:
    first = world.service()
    task = first.create_task(world.app_id, "digits", _spec(rounds=1), actor="a")
    devices = world.devices(3)
    for d in devices[:2]:
        d.participate(ServiceTransport(first, world.app_id), task.id, 1)
    second = world.service()  # a new process: nothing in memory
    second.owner = "replica-b"
    devices[2].participate(ServiceTransport(second, world.app_id), task.id, 1)
    # replica-a holds the task's lease: replica-b stored the update but does not aggregate
    assert second.get_task(world.app_id, task.id).state == "running"
    world.clock.now += first.lease_ttl_s + 1  # replica-a died: its lease expires
    assert task.id in second.tick()
    assert second.get_task(world.app_id, task.id).state == "succeeded"


def test_task_settings_are_checked_with_the_field_named(world: World) -> None:
    service = world.service()
    cases = {
        "min_reports": _spec(min_reports=5),
        "population": _spec(noise_multiplier=1.0),
        "aggregator": _spec(aggregator="median", secagg=True),
        "clients_per_round": _spec(clients_per_round=0),
        "unknown": {**_spec(), "bogus": 1},
        "adaptive_clipping": _spec(noise_multiplier=0.3, population=9, adaptive_clipping=True),
        "fedbuff": _spec(fedbuff=True, secagg=True),
        "targeting": _spec(targeting=[{"field": "planet", "in": ["mars"]}]),
    }
    for word, spec in cases.items():
        with pytest.raises(InvalidInput) as info:
            service.create_task(world.app_id, "digits", spec, actor="a")
        assert word in str(info.value) or word == "targeting", (word, str(info.value))
    world.registry.push_version(
        world.app_id,
        "digits",
        VersionCreate.model_validate(
            {"variants": [variant_entry(federatable_onnx(world.tmp / "b.onnx", seed=1), "x")]}
        ),
        {"x": world.tmp / "b.onnx"},
    )
    with pytest.raises(InvalidInput, match="not federatable"):
        service.create_task(world.app_id, "digits", _spec(version=2), actor="a")
    service.max_update_bytes = 4 * 169  # one value short of the 16 x 10 + 10 head
    with pytest.raises(InvalidInput, match="MAX_DEVICE_BODY_KB"):
        service.create_task(world.app_id, "digits", _spec(), actor="a")
    service.max_update_bytes = 4 * 170
    service.create_task(world.app_id, "digits", _spec(), actor="a")
    with pytest.raises(Conflict, match="running federated task"):
        service.create_task(world.app_id, "digits", _spec(), actor="a")


def test_cancel_closes_the_round_and_forgets_the_updates(world: World) -> None:
    service = world.service()
    t = ServiceTransport(service, world.app_id)
    task = service.create_task(world.app_id, "digits", _spec(), actor="a")
    world.devices(1)[0].participate(t, task.id, 1)
    cancelled = service.cancel_task(world.app_id, task.id, actor="a")
    assert cancelled.state == "cancelled" and cancelled.rounds[0].state == "cancelled"
    assert service.announcements(world.app_id) == []
    with pytest.raises(Conflict):
        service.cancel_task(world.app_id, task.id, actor="a")
    assert math.isfinite(cancelled.clip_norm)


def test_the_announcement_models_are_the_declared_fields(world: World) -> None:
    from pocketml import protocol
    from pocketml.server.schemas_device import (
        FederatedAnnouncementPublic,
        FederatedRequiresPublic,
    )

    service = world.service()
    service.create_task(world.app_id, "digits", _spec(), actor="a")
    [item] = service.announcements(world.app_id)
    entry = item.to_dict()
    declared = [f.name for f in protocol.FEDERATED_ANNOUNCEMENT_FIELDS]
    assert list(entry) == declared == list(FederatedAnnouncementPublic.model_fields)
    requires = [f.name for f in protocol.FEDERATED_REQUIRES_FIELDS]
    assert list(entry["requires"]) == requires == list(FederatedRequiresPublic.model_fields)
    FederatedAnnouncementPublic.model_validate(entry)


def test_fedbuff_steps_on_k_updates_and_takes_a_stale_one_weighted(world: World) -> None:
    from pocketml.federated import FedBuff
    from pocketml.fl import clip_update

    service = world.service()
    t = ServiceTransport(service, world.app_id)
    spec = _spec(
        fedbuff=True,
        fedbuff_buffer=2,
        fedbuff_max_staleness=1,
        clients_per_round=4,
        min_reports=1,
        rounds=3,
    )
    task = service.create_task(world.app_id, "digits", spec, actor="a")
    a, b, slow, late, d, e, f = world.devices(7)
    for device in (a, b, slow, late):
        device.join(t, task.id, 1)
        device.fetch(t, task.id, 1)
        device.train()
    a.upload(t, task.id, 1)
    assert service.get_task(world.app_id, task.id).round == 1  # 1 of K = 2 buffered
    b.upload(t, task.id, 1)  # K reached: step 1, round 2 opens
    assert service.get_task(world.app_id, task.id).round == 2
    d.participate(t, task.id, 2)
    slow.upload(t, task.id, 1)  # one round stale: accepted, weighted (1 + 1)^-0.5
    assert service.get_task(world.app_id, task.id).round == 3
    with pytest.raises(FlWrongRound):  # two rounds stale: refused, never buffered
        late.upload(t, task.id, 1)
    e.participate(t, task.id, 3)
    f.participate(t, task.id, 3)
    done = service.get_task(world.app_id, task.id)
    assert done.state == "succeeded", done.log
    assert done.rounds[1].outcome["staleness"] == [1, 0]  # type: ignore[index]
    # the same steps in memory give the same head
    reference = FedBuff(np.zeros(170), buffer_size=2, max_staleness=1)
    for device, version in ((a, 0), (b, 0), (slow, 0), (d, 1), (e, 2), (f, 2)):
        reference.submit(clip_update(device.clipped, 5.0)[0], version)  # type: ignore[arg-type]
    version = world.registry.get_version(world.app_id, "digits", done.result_version or 0)
    assert version.run_record["federated"]["aggregator"] == "fedbuff"
    path = extract_variant(world.registry, world.app_id, version.variants[0], world.tmp / "fb")
    import onnx
    from onnx import numpy_helper

    init = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}
    expected = Head(np.zeros((16, 10)), np.zeros(10)).with_vector(reference.model)
    assert np.allclose(init["head.weight"], expected.weights.T, atol=1e-5)
    assert np.allclose(init["head.bias"], expected.bias, atol=1e-5)
