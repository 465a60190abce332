"""Federated participation of the device SDK against a real server (uvicorn, SQLite).

Every test gets its own app with a federatable digits model (tests/device/federated_kit.py)
in production, starts a task through the admin route and drives real ``Device`` objects:
eligibility, a plain round, a SecAgg+ round, giving up, a kill mid-round and an upload
whose answer is lost. Faults come only from ``FaultTransport`` (conftest).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from pocketml.data import load_digits
from pocketml.device import Device, DeviceFacts, DeviceState, FederatedReport

from .conftest import FaultTransport, Shipped, ship
from .federated_kit import write_federatable_build

_ids = itertools.count()
FACTS = DeviceFacts(
    platform="linux",
    os_version="6.1",
    app_version="1.0.0",
    formats=("onnx",),
    device_class="edge-linux",
)


@pytest.fixture(scope="module")
def fed_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The federatable digits build."""
    return write_federatable_build(tmp_path_factory.mktemp("fed-build"))


@pytest.fixture
def app(server_url: str, fed_build: Path) -> Shipped:
    """A fresh app with the federatable model v1 in production."""
    return ship(server_url, fed_build)


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """Raw digits pixels (N, 64) and labels."""
    data = load_digits()
    return np.asarray(data.features, np.float32).reshape(len(data), -1), np.asarray(data.labels)


class Phone:
    """A device and the conditions the test flips."""

    def __init__(self, device: Device) -> None:
        self.device = device
        self.wifi = True
        self.plugged = True

    def step(self) -> FederatedReport:
        return self.device.federated_step()


PhoneFactory = Callable[..., Phone]


@pytest.fixture
def make_phone(
    app: Shipped, tmp_path: Path, digits: tuple[np.ndarray, np.ndarray]
) -> Iterator[PhoneFactory]:
    """Phones on the app: consenting, ``examples`` photos of 3 digits, synced."""
    made: list[Device] = []

    def factory(
        examples: int = 30,
        *,
        consent: bool = True,
        cache: str | None = None,
        transport: httpx.BaseTransport | None = None,
        sync: bool = True,
    ) -> Phone:
        n = next(_ids)
        holder: list[Phone] = []
        state = DeviceState(
            network_type=lambda: "wifi" if holder[0].wifi else "cellular",
            is_charging=lambda: holder[0].plugged,
        )
        device = Device(
            app.url,
            app.device_key,
            FACTS,
            tmp_path / (cache or f"phone-{n}"),
            trusted_keys=app.public_keys,
            state=state,
            transport=transport,
            seed=n,
        )
        made.append(device)
        phone = Phone(device)
        holder.append(phone)
        x, y = digits
        rows = np.flatnonzero(np.isin(y, [n % 10, (n + 3) % 10, (n + 6) % 10]))[:examples]
        device.set_federated_consent(True)
        for row in rows:
            device.add_training_example("digits", x[row], str(y[row]))
        if not consent:
            device.set_federated_consent(False)
        if sync:
            device.sync()
        return phone

    yield factory
    for device in made:
        device.close()


def start_task(app: Shipped, **settings: Any) -> dict[str, Any]:
    """Start a federated task on v1 of digits; return the task."""
    body = {
        "model": "digits",
        "version": app.version,
        "rounds": 1,
        "clients_per_round": 3,
        "min_reports": 2,
        "requires": {"charging": True, "wifi": True, "idle": False, "min_samples": 10},
        "recipe": {"epochs": 2, "batch_size": 8, "learning_rate": 0.1},
        **settings,
    }
    with app.admin() as admin:
        return dict(admin.request("POST", "/v1/admin/federated/tasks", json=body).json())


def task_of(app: Shipped, task_id: str) -> dict[str, Any]:
    """The task as the operator sees it (with its rounds)."""
    with app.admin() as admin:
        return dict(admin.request("GET", f"/v1/admin/federated/tasks/{task_id}").json())


def run_until_settled(phones: list[Phone], limit: int = 40) -> list[FederatedReport]:
    """Step every phone round-robin until none is waiting; the last report of each."""
    last: list[FederatedReport] = [phone.step() for phone in phones]
    for _ in range(limit):
        waiting = [i for i, r in enumerate(last) if r.status == "waiting"]
        if not waiting:
            return last
        for i in waiting:
            last[i] = phones[i].step()
    raise AssertionError(f"phones still waiting after {limit} passes: {last}")


# -- eligibility ------------------------------------------------------------------------------


def test_a_phone_without_consent_never_joins(app: Shipped, make_phone: PhoneFactory) -> None:
    task = start_task(app)
    phone = make_phone(consent=False)

    report = phone.step()

    assert (report.status, report.reason) == ("skipped", "no consent")
    assert task_of(app, task["id"])["rounds"][0]["selected"] == 0


def test_a_phone_off_its_charger_does_not_join(app: Shipped, make_phone: PhoneFactory) -> None:
    task = start_task(app)
    phone = make_phone()
    phone.plugged = False

    report = phone.step()

    assert (report.status, report.reason) == ("skipped", "battery_low")
    assert task_of(app, task["id"])["rounds"][0]["selected"] == 0


def test_a_phone_with_too_few_samples_does_not_join(app: Shipped, make_phone: PhoneFactory) -> None:
    task = start_task(app)
    phone = make_phone(examples=4)

    report = phone.step()

    assert (report.status, report.reason) == ("skipped", "too few samples (4 < 10)")
    assert task_of(app, task["id"])["rounds"][0]["selected"] == 0


def test_without_an_announced_task_a_phone_has_nothing_to_do(make_phone: PhoneFactory) -> None:
    phone = make_phone()

    assert phone.step().reason == "no open task"


# -- rounds -----------------------------------------------------------------------------------


def test_phones_train_clip_and_upload_and_the_round_aggregates(
    app: Shipped, make_phone: PhoneFactory
) -> None:
    task = start_task(app, clip_norm=0.5)
    phones = [make_phone() for _ in range(3)]
    for phone in phones:  # the check-in after the task started announces it
        phone.device.sync()

    reports = [phone.step() for phone in phones]

    assert [r.status for r in reports] == ["uploaded"] * 3
    assert all(r.samples == 30 and r.update_norm is not None for r in reports)
    after = task_of(app, task["id"])
    assert after["rounds"][0]["reports"] == 3
    assert after["rounds"][0]["state"] == "aggregated"
    assert phones[0].step().reason == "round already joined"


def test_a_secagg_round_completes_over_http(app: Shipped, make_phone: PhoneFactory) -> None:
    task = start_task(app, secagg=True, clients_per_round=3)
    phones = [make_phone() for _ in range(3)]
    for phone in phones:
        phone.device.sync()

    reports = run_until_settled(phones)

    assert [r.status for r in reports] == ["done"] * 3
    round_ = task_of(app, task["id"])["rounds"][0]
    assert round_["state"] == "aggregated" and round_["reports"] == 3


@pytest.mark.parametrize(("clip_norm", "clipped"), [(1e-3, "true"), (1e6, "false")])
def test_a_plain_upload_says_whether_the_device_clipped_its_update(
    app: Shipped, make_phone: PhoneFactory, clip_norm: float, clipped: str
) -> None:
    # The server sees only the clipped update, whose norm is <= clip_norm either way;
    # adaptive clipping needs the device's word for it (review M2).
    task = start_task(app, clients_per_round=1, min_reports=1, clip_norm=clip_norm)
    transport = FaultTransport()
    phone = make_phone(transport=transport)

    report = phone.step()

    assert report.status == "uploaded" and report.clipped is (clipped == "true")
    [put] = [r for r in transport.requests if r.method == "PUT"]
    assert put.url.params.get("clipped") == clipped
    assert task_of(app, task["id"])["rounds"][0]["reports"] == 1


@pytest.mark.parametrize("secagg", [False, True], ids=["plain", "secagg"])
def test_a_task_with_local_noise_gets_every_phones_update(
    app: Shipped, make_phone: PhoneFactory, secagg: bool
) -> None:
    # The noise is added after clipping; without a second clipping every upload's norm
    # was above clip_norm, refused by the server (plain) or by FixedPoint.encode (SecAgg).
    task = start_task(app, secagg=secagg, clip_norm=0.5, local_noise_std=0.05)
    transports = [FaultTransport() for _ in range(3)]
    phones = [make_phone(transport=t) for t in transports]
    for phone in phones:
        phone.device.sync()

    reports = run_until_settled(phones)

    assert [r.status for r in reports] == ["done" if secagg else "uploaded"] * 3, reports
    round_ = task_of(app, task["id"])["rounds"][0]
    assert round_["state"] == "aggregated" and round_["reports"] == 3
    # the un-noised `clipped` bit is outside the local DP guarantee: never sent with noise
    puts = [r for t in transports for r in t.requests if r.method == "PUT"]
    assert len(puts) == 3 and not any("clipped" in r.url.params for r in puts)


@pytest.mark.parametrize(("lost", "reason"), [("wifi", "wifi_lost"), ("plugged", "battery_low")])
def test_a_phone_that_loses_a_condition_mid_round_gives_up_and_secagg_recovers_it(
    app: Shipped, make_phone: PhoneFactory, lost: str, reason: str
) -> None:
    task = start_task(app, secagg=True, clients_per_round=4, min_reports=3, secagg_threshold=0.5)
    phones = [make_phone() for _ in range(4)]
    for phone in phones:
        phone.device.sync()
    first = [phone.step() for phone in phones]  # joined, trained, keys advertised
    assert all(r.status == "waiting" for r in first)
    setattr(phones[3], lost, False)  # Wi-Fi lost, or unplugged (the task needs charging)

    reports = run_until_settled(phones)

    assert (reports[3].status, reports[3].reason) == ("gave_up", reason)
    assert [r.status for r in reports[:3]] == ["done"] * 3, reports
    round_ = task_of(app, task["id"])["rounds"][0]
    assert round_["state"] == "aggregated" and round_["reports"] == 3
    stages = phones[3].device.federated.store.stage_counts()
    assert stages == {"abandoned": 1}


def test_a_phone_past_the_deadline_gives_up_and_leaves(
    app: Shipped, make_phone: PhoneFactory
) -> None:
    start_task(app, secagg=True, clients_per_round=3)
    phone = make_phone()
    phone.device.sync()
    assert phone.step().status == "waiting"  # joined; the round waits for two more
    phone.device.federated.wall_clock = lambda: 4e9  # long after the round's deadline

    report = phone.step()

    assert (report.status, report.reason) == ("gave_up", "timeout")
    assert phone.device.federated.store.stage_counts() == {"abandoned": 1}


# -- kills and cut connections ------------------------------------------------------------------


def _lose_first_update_answer() -> FaultTransport:
    lost: list[str] = []

    def lose(request: httpx.Request) -> bool:
        if request.method == "PUT" and request.url.path.endswith("/update") and not lost:
            lost.append(request.headers["idempotency-key"])
            return True
        return False

    transport = FaultTransport(lose_answer=lose)
    transport.lost = lost  # type: ignore[attr-defined]
    return transport


def test_an_upload_whose_answer_is_lost_is_retried_and_counted_once(
    app: Shipped, make_phone: PhoneFactory
) -> None:
    task = start_task(app, clients_per_round=2, min_reports=2)
    transport = _lose_first_update_answer()
    phone = make_phone(transport=transport)
    other = make_phone()
    for p in (phone, other):
        p.device.sync()

    first = phone.step()
    second = phone.step()

    assert first.status == "waiting" and first.reason is not None and "network" in first.reason
    assert second.status == "uploaded"
    keys = [r.headers["idempotency-key"] for r in transport.requests if r.method == "PUT"]
    assert keys == [transport.lost[0]] * 2  # type: ignore[attr-defined]
    assert task_of(app, task["id"])["rounds"][0]["reports"] == 1


def test_a_phone_killed_before_its_upload_resumes_with_the_same_update(
    app: Shipped, make_phone: PhoneFactory
) -> None:
    task = start_task(app, clients_per_round=2, min_reports=2)
    transport = _lose_first_update_answer()
    phone = make_phone(cache="killed", transport=transport)
    phone.device.sync()
    assert phone.step().status == "waiting"  # the upload went out; its answer was lost
    sent = next(r.content for r in transport.requests if r.method == "PUT")
    phone.device.close()  # the app is killed

    after_restart = FaultTransport()
    revived = make_phone(cache="killed", sync=False, transport=after_restart)
    report = revived.step()

    assert report.status == "uploaded"
    assert [r.content for r in after_restart.requests if r.method == "PUT"] == [sent]
    first_flag = next(r for r in transport.requests if r.method == "PUT").url.params["clipped"]
    resent = [r.url.params.get("clipped") for r in after_restart.requests if r.method == "PUT"]
    assert resent == [first_flag]  # stored with the update, not lost with the process
    assert task_of(app, task["id"])["rounds"][0]["reports"] == 1


def test_a_phone_killed_mid_secagg_round_is_a_dropout_and_never_resumes(
    app: Shipped, make_phone: PhoneFactory
) -> None:
    task = start_task(app, secagg=True, clients_per_round=4, min_reports=3, secagg_threshold=0.5)
    phones = [make_phone(cache=f"sa-{i}") for i in range(4)]
    for phone in phones:
        phone.device.sync()
    assert all(phone.step().status == "waiting" for phone in phones)
    phones[3].device.close()  # killed with the round's keys in memory

    revived = make_phone(cache="sa-3", sync=False)
    dropped = revived.step()
    reports = run_until_settled(phones[:3])

    assert (dropped.status, dropped.reason) == ("gave_up", "restarted mid-round (SecAgg keys lost)")
    assert [r.status for r in reports] == ["done"] * 3
    assert task_of(app, task["id"])["rounds"][0]["state"] == "aggregated"
    assert revived.step().status == "skipped"  # never joined twice


def test_a_tampered_round_document_is_refused_and_nothing_is_uploaded(
    app: Shipped, make_phone: PhoneFactory
) -> None:
    def tamper(request: httpx.Request, body: bytes) -> bytes:
        if (
            request.method == "GET"
            and "/rounds/" in request.url.path
            and "secagg" not in request.url.path
        ):
            return body.replace(b'"clip_norm":', b'"clip_norm":1')
        return body

    task = start_task(app, clients_per_round=2)
    transport = FaultTransport(mangle=tamper)
    phone = make_phone(transport=transport)

    report = phone.step()

    assert report.status == "failed" and report.reason is not None
    assert "signature" in report.reason
    assert not any(r.method == "PUT" for r in transport.requests)
    assert task_of(app, task["id"])["rounds"][0]["reports"] == 0


def test_a_masked_input_whose_answer_is_lost_still_counts_when_the_round_moves_on(
    app: Shipped, make_phone: PhoneFactory
) -> None:
    task = start_task(app, secagg=True, clients_per_round=3)
    transport = _lose_first_update_answer()
    lossy = make_phone(transport=transport)
    phones = [make_phone(), make_phone(), lossy]  # the lossy phone masks last: its
    for phone in phones:  # upload completes the phase before its answer is lost
        phone.device.sync()

    reports = run_until_settled(phones)

    assert [r.status for r in reports] == ["done"] * 3
    assert sum(r.method == "PUT" for r in transport.requests) == 1  # never sent twice
    round_ = task_of(app, task["id"])["rounds"][0]
    assert round_["state"] == "aggregated" and round_["reports"] == 3


def test_shares_whose_answer_is_lost_still_count_when_the_round_moves_on(
    app: Shipped, make_phone: PhoneFactory
) -> None:
    # The state cannot show that a device's shares arrived (its inbox holds the shares sent
    # to it); the device tries its masked input, which the server takes only from sharers.
    task = start_task(app, secagg=True, clients_per_round=3)
    lost: list[bool] = []

    def lose_shares_answer(request: httpx.Request) -> bool:
        if request.url.path.endswith("/secagg/shares") and not lost:
            lost.append(True)
            return True
        return False

    transport = FaultTransport(lose_answer=lose_shares_answer)
    lossy = make_phone(transport=transport)
    phones = [make_phone(), make_phone(), lossy]  # the lossy phone shares last: its shares
    for phone in phones:  # complete the phase before its answer is lost
        phone.device.sync()

    reports = run_until_settled(phones)

    assert lost and [r.status for r in reports] == ["done"] * 3, reports
    assert sum(r.url.path.endswith("/secagg/shares") for r in transport.requests) == 1
    round_ = task_of(app, task["id"])["rounds"][0]
    assert round_["state"] == "aggregated" and round_["reports"] == 3


def test_a_slow_phone_of_a_fedbuff_task_still_contributes_after_the_round_moved_on(
    app: Shipped, make_phone: PhoneFactory
) -> None:
    task = start_task(app, rounds=2, clients_per_round=3, fedbuff=True, fedbuff_buffer=2)
    cut: list[bool] = []

    def first_upload_fails(request: httpx.Request) -> Exception | None:
        if request.method == "PUT" and not cut:
            cut.append(True)
            return httpx.ConnectError("Wi-Fi hiccup (test fault)", request=request)
        return None

    slow = make_phone(transport=FaultTransport(fail=first_upload_fails))
    fast = [make_phone(), make_phone()]
    assert slow.step().status == "waiting"  # joined round 1, trained; the upload failed
    assert [p.step().status for p in fast] == ["uploaded", "uploaded"]  # round 1 steps

    late = slow.step()  # the stored round-1 update, one round stale

    assert (late.status, late.round) == ("uploaded", 1)
    first, second = task_of(app, task["id"])["rounds"]
    assert first["outcome"]["staleness"] == [0, 0]  # round 1 stepped on the fast two
    assert (second["selected"], second["reports"]) == (0, 1)  # the stale one is buffered


# -- the user withdraws: forget_me, consent off -------------------------------------------------


def _sent_since(transport: FaultTransport, start: int) -> list[tuple[str, str]]:
    """(method, last path segment) of the requests sent from index ``start`` on."""
    return [(r.method, r.url.path.rsplit("/", 1)[-1]) for r in transport.requests[start:]]


def _leave_reasons(transport: FaultTransport) -> list[str]:
    return [
        json.loads(r.content)["reason"] for r in transport.requests if r.url.path.endswith("/leave")
    ]


@pytest.mark.parametrize("withdraw", ["forget_me", "consent_off_and_on"])
def test_a_phone_whose_user_withdraws_mid_secagg_round_stops_and_leaves(
    app: Shipped, make_phone: PhoneFactory, withdraw: str
) -> None:
    task = start_task(app, secagg=True, clients_per_round=4, min_reports=3, secagg_threshold=0.5)
    transport = FaultTransport()
    phones = [make_phone() for _ in range(3)] + [make_phone(transport=transport)]
    for phone in phones:
        phone.device.sync()
    assert all(phone.step().status == "waiting" for phone in phones)  # keys advertised
    quitter = phones[3].device
    start = len(transport.requests)
    if withdraw == "forget_me":
        quitter.forget_me()
    else:  # consent on again resumes nothing: the session and the round are gone
        quitter.set_federated_consent(False)
        quitter.set_federated_consent(True)

    reports = run_until_settled(phones)

    assert [r.status for r in reports[:3]] == ["done"] * 3, reports
    assert (reports[3].status, reports[3].reason) == ("skipped", "round already joined")
    sent = _sent_since(transport, start)
    assert ("POST", "leave") in sent
    assert not {("POST", "shares"), ("PUT", "update"), ("POST", "unmask")} & set(sent)
    assert _leave_reasons(transport) == ["user"]
    assert quitter.federated.store.stage_counts() == {"abandoned": 1}
    round_ = task_of(app, task["id"])["rounds"][0]
    assert round_["state"] == "aggregated" and round_["reports"] == 3


def test_withdrawing_consent_deletes_an_owed_update_and_leaves_the_round(
    app: Shipped, make_phone: PhoneFactory
) -> None:
    task = start_task(app, clients_per_round=2, min_reports=2)
    cut: list[bool] = []

    def first_upload_fails(request: httpx.Request) -> Exception | None:
        if request.method == "PUT" and not cut:
            cut.append(True)
            return httpx.ConnectError("Wi-Fi hiccup (test fault)", request=request)
        return None

    transport = FaultTransport(fail=first_upload_fails)
    phone = make_phone(transport=transport)
    store = phone.device.federated.store
    assert phone.step().status == "waiting"  # trained; the upload failed: the update is owed
    [owed] = store.open_rounds()
    assert owed.stage == "ready" and owed.payload is not None

    phone.device.set_federated_consent(False)
    phone.device.set_federated_consent(True)
    report = phone.step()

    stored = store.round(owed.task_id, owed.round_id)
    assert stored is not None
    assert (stored.stage, stored.payload, stored.detail) == (
        "abandoned",
        None,
        "consent withdrawn",
    )
    assert report.status == "skipped"
    assert sum(r.method == "PUT" for r in transport.requests) == 1  # the failed attempt
    assert _leave_reasons(transport) == ["user"]
    assert task_of(app, task["id"])["rounds"][0]["reports"] == 0


@pytest.mark.parametrize("secagg", [False, True], ids=["plain", "secagg"])
def test_forget_me_while_the_phone_trains_sends_nothing(
    app: Shipped, make_phone: PhoneFactory, monkeypatch: pytest.MonkeyPatch, secagg: bool
) -> None:
    start_task(app, secagg=secagg, clients_per_round=3)
    transport = FaultTransport()
    phone = make_phone(transport=transport)
    store = phone.device.federated.store
    read = store.examples

    def read_then_forget(model: str) -> tuple[np.ndarray, list[str]]:
        found = read(model)
        phone.device.forget_me()  # the user taps "forget me" while the phone trains
        return found

    monkeypatch.setattr(store, "examples", read_then_forget)
    start = len(transport.requests)

    report = phone.step()

    assert (report.status, report.reason) == ("gave_up", "forget_me")
    sent = [s for s in _sent_since(transport, start) if s[0] in ("POST", "PUT")]
    assert sent == [("POST", "join"), ("POST", "leave")]  # no update, no keys
    assert store.stage_counts() == {"abandoned": 1}
