"""The ship pages of the console on a live server (SQLite and PostgreSQL).

Each test works in an app of its own on the module's server: models with versions,
telemetry posted by a device, a rollout evaluated by the real evaluator, an experiment.
Pages are read as a browser does (cookie session, forms); their key numbers are compared
with what the admin API answers, and every action with the API's state and audit log.
"""

from __future__ import annotations

import contextlib
import html
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from pocketml.server.client import AdminClient
from pocketml.server.console._common import csrf_token
from pocketml.server.console._format import duration, pct, pvalue, signed, size
from pocketml.testing import DIGITS_SCHEMA, LiveServer, model_variant, push_version
from shared_server import unique_app_name

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@dataclass(frozen=True)
class Shop:
    """An app on the module server with two models and the admin's browser."""

    server: LiveServer
    app_id: str
    admin_token: str
    device_key: str
    rollout_id: str
    experiment_id: str

    def api(self) -> AdminClient:
        return self.server.admin(self.admin_token)

    def browser(self) -> contextlib.AbstractContextManager[httpx.Client]:
        return logged_in(self.server, self.admin_token)


@contextlib.contextmanager
def logged_in(server: LiveServer, token: str) -> Iterator[httpx.Client]:
    """An httpx client holding the console's session cookie, like a browser after login."""
    with httpx.Client(base_url=server.url, timeout=30) as client:
        response = client.post("/ui/login", data={"token": token})
        assert response.status_code == 303, response.text
        yield client


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert match, "the page has no form with a CSRF token"
    return match.group(1)


def cell(page: str, key: str) -> str:
    """The text of the element marked ``data-k="key"`` (tags stripped, entities decoded)."""
    match = re.search(rf'data-k="{re.escape(key)}">(.*?)</(?:td|span|a)>', page, re.S)
    assert match, f"no element data-k={key!r} on the page"
    return html.unescape(re.sub(r"<[^>]+>", "", match.group(1))).strip()


def push(client: AdminClient, workdir: Path, model: str, seed: int, **meta: object) -> int:
    variants = [
        model_variant(
            workdir,
            "onnx-fp32",
            filename=f"{model}-fp32-{seed}.onnx",
            seed=f"{model}-{seed}",
            size=20_000 + seed,
            metrics={"accuracy": 0.95 + seed / 100},
            profiles=["android-mid"],
        ),
        model_variant(
            workdir,
            "onnx-int8",
            filename=f"{model}-int8-{seed}.onnx",
            precision="int8",
            seed=f"{model}-{seed}-q",
            size=7_000 + seed,
            metrics={"accuracy": 0.94 + seed / 100},
            profiles=["android-low"],
        ),
    ]
    meta = {
        "dataset_fingerprint": "sha256:whole-dataset",
        "source_framework": "pytorch",
        "metrics": {"accuracy": 0.9 + seed / 100, "macro_f1": 0.8912345678},
        "run_record": {"dataset": {"name": "digits", "fingerprint": "splits:a,b,c"}},
        "card": "# Card\n\n| class | recall |\n|---|---|\n| 7 | 0.93 |\n",
        **meta,
    }
    return push_version(
        client, model, variants, schema={**DIGITS_SCHEMA, "name": model}, **meta
    ).version


def events(model: str, version: int, n: int, *, latency: float, errors: int = 0) -> list[dict]:
    now = time.time()  # after the rollout's step and the experiment started
    rows: list[dict] = [
        {
            "type": "inference",
            "ts": now,
            "model": model,
            "version": version,
            "variant": "onnx-fp32",
            "source": "cloud" if i % 4 == 0 else "local",
            "latency_ms": latency + i,
            "confidence": 0.9,
            "label": "7",
            "prediction_id": f"{model}-{version}-{i}-{uuid.uuid4().hex[:6]}",
        }
        for i in range(n)
    ]
    rows += [
        {
            "type": "error",
            "ts": now,
            "model": model,
            "version": version,
            "stage": "inference",
            "message": "x",
        }
        for _ in range(errors)
    ]
    return rows


def send(server: LiveServer, device_key: str, device: str, rows: list[dict]) -> None:
    body = {
        "batch_id": f"b-{uuid.uuid4().hex[:16]}",
        "device_id": device,
        "device": {"platform": "android", "device_class": "android-mid", "app_version": "2.0"},
        "events": rows,
    }
    with server.http(device_key) as http:
        response = http.post("/v1/telemetry", json=body)
    assert response.status_code == 202, response.text


def evaluate(server: LiveServer) -> None:
    """One pass of the real rollout evaluator on the server's database, a minute on."""
    from pocketml.db._base import utcnow
    from pocketml.delivery import RolloutService, evaluate_rollouts
    from pocketml.protect import MasterKey
    from pocketml.registry import Registry, open_artifact_store

    settings = server.settings
    registry = Registry(
        settings.resolved_database_url,
        open_artifact_store(settings.resolved_artifact_url),
        MasterKey.load_or_create(settings.home / "master.key"),
    )
    registry.open()
    try:
        evaluate_rollouts(RolloutService(registry), now=utcnow() + timedelta(minutes=1))
    finally:
        registry.close()


def open_shop(server: LiveServer, workdir: Path) -> Shop:
    """A new app with "digits" (v1 in production, v2 in a 10 % rollout) and "faces"
    (v1 vs v2 in an experiment on the error rate), and telemetry of all four versions."""
    app = server.create_app(unique_app_name("shop"))
    with server.admin(app.admin_token) as client:
        push(client, workdir, "digits", 1)
        client.set_stage("digits", 1, "production")
        push(client, workdir, "digits", 2, parent_version=1)
        push(client, workdir, "faces", 1)
        client.set_stage("faces", 1, "production")
        push(client, workdir, "faces", 2)
        rollout = client.create_rollout("digits", 2, schedule=[10, 50, 100], min_samples=5)
        experiment = client.start_experiment(
            "faces",
            [
                {"name": "control", "version": 1, "weight": 1},
                {"name": "new", "version": 2, "weight": 1},
            ],
            metric="error_rate",
        )
    send(server, app.device_key, "device-1", events("digits", 1, 12, latency=10.0, errors=1))
    send(server, app.device_key, "device-2", events("digits", 2, 8, latency=10.0, errors=1))
    send(server, app.device_key, "device-3", events("faces", 1, 10, latency=5.0, errors=3))
    send(server, app.device_key, "device-4", events("faces", 2, 10, latency=5.0))
    return Shop(server, app.app_id, app.admin_token, app.device_key, rollout.id, experiment.id)


@pytest.fixture
def shop(module_live_server: LiveServer, tmp_path: Path) -> Shop:
    """A shop of its own, for a test that acts on it."""
    return open_shop(module_live_server, tmp_path)


@pytest.fixture(scope="module")
def seen(module_live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Shop:
    """One shop shared by the tests that change nothing: they read, or they check that a
    refused form left everything as it was (its rollout evaluated once)."""
    shop = open_shop(module_live_server, tmp_path_factory.mktemp("seen"))
    evaluate(module_live_server)
    return shop


def pages(shop: Shop) -> list[str]:
    return [
        "/ui/overview",
        "/ui/models",
        "/ui/models?prefix=dig",
        "/ui/models/digits",
        "/ui/models/digits/versions/1",
        "/ui/models/digits/versions/2",
        "/ui/models/digits/compare?a=1&b=2",
        "/ui/rollouts",
        f"/ui/rollouts/{shop.rollout_id}",
        "/ui/experiments",
        f"/ui/experiments/{shop.experiment_id}",
        "/ui/audit",
        f"/ui/audit?subject={shop.rollout_id}",
    ]


def test_every_page_answers_200_for_the_admin(seen: Shop) -> None:
    with seen.browser() as browser:
        answers = {path: browser.get(path) for path in pages(seen)}
    for path, response in answers.items():
        assert response.status_code == 200, (path, response.text[:2000])
        assert response.headers["content-type"].startswith("text/html")
        assert "Traceback" not in response.text
        assert "{'" not in response.text, path  # no dict reprs
        assert "nan" not in re.sub(r"<[^>]+>", " ", response.text).split(), path


def test_without_a_session_pages_and_actions_go_to_the_login_page(seen: Shop) -> None:
    with httpx.Client(base_url=seen.server.url, timeout=30) as anonymous:
        answers = [anonymous.get(path) for path in pages(seen)]
        forged = anonymous.post(f"/ui/rollouts/{seen.rollout_id}/pause", data={"csrf": "x"})
        anonymous.cookies.set("pocketml_admin", seen.device_key, path="/ui")
        device = anonymous.get("/ui/overview")
    for response in [*answers, forged, device]:
        assert response.status_code == 303
        assert response.headers["location"].startswith("/ui?next=/ui/")
    with seen.api() as api:
        assert api.show_rollout(seen.rollout_id).state == "running"


EMPTY_PAGES = ["/ui/overview", "/ui/models", "/ui/rollouts", "/ui/experiments", "/ui/audit"]


def test_another_apps_objects_answer_a_404_page_and_its_forms_change_nothing(seen: Shop) -> None:
    other = seen.server.create_app(unique_app_name("other"))
    token = csrf_token(other.admin_token)  # the other admin's own, valid CSRF token
    objects = [p for p in pages(seen) if p.count("/") > 2 and "?prefix" not in p]
    objects = [p for p in objects if not p.startswith("/ui/audit")]
    with logged_in(seen.server, other.admin_token) as browser:
        answers = {path: browser.get(path) for path in objects}
        actions = [
            browser.post(f"/ui/rollouts/{seen.rollout_id}/rollback", data={"csrf": token}),
            browser.post(f"/ui/experiments/{seen.experiment_id}/stop", data={"csrf": token}),
            browser.post(
                "/ui/models/digits/versions/2/stage", data={"csrf": token, "stage": "archived"}
            ),
        ]
        audit = browser.get(f"/ui/audit?subject={seen.rollout_id}")
        empty = {p: browser.get(p) for p in EMPTY_PAGES}
    for path, response in [*answers.items(), *(("POST", a) for a in actions)]:
        assert response.status_code == 404, path
        assert response.headers["content-type"].startswith("text/html")
        assert "Not found" in response.text
    assert audit.status_code == 200
    assert "no entries yet" in audit.text  # the other app's log has none of this app's
    for path, response in empty.items():  # an app with nothing yet: each page says so
        assert response.status_code == 200, path
        assert 'class="empty"' in response.text, path
        assert "<table" not in response.text.split("Signing keys")[0], path
    with seen.api() as api:
        assert api.show_rollout(seen.rollout_id).state == "running"
        assert api.show_experiment(seen.experiment_id).state == "running"
        assert api.show_version("digits", 2).stage == "candidate"


def test_key_numbers_equal_what_the_api_answers(seen: Shop) -> None:
    with seen.api() as api:
        metrics = {
            m: api.model_metrics(m, since=time.time() - 86_400)["groups"]
            for m in ("digits", "faces")
        }
        rollout = api.show_rollout(seen.rollout_id)
        experiment = api.show_experiment(seen.experiment_id)
        audit = api.audit(limit=200).items
    with seen.browser() as browser:
        overview = browser.get("/ui/overview").text
        model = browser.get("/ui/models/digits").text
        rollout_page = browser.get(f"/ui/rollouts/{seen.rollout_id}").text
        experiment_page = browser.get(f"/ui/experiments/{seen.experiment_id}").text
        audit_page = browser.get("/ui/audit").text
        compare = browser.get("/ui/models/digits/compare?a=1&b=2&days=1").text

    for name, groups in metrics.items():
        count = sum(g["count"] for g in groups)
        errors = sum(g["errors"] for g in groups)
        cloud = sum((g["cloud_share"] or 0) * g["count"] for g in groups)
        assert cell(overview, f"inferences:{name}") == f"{count:,}"
        assert cell(overview, f"error-rate:{name}") == pct(errors / (count + errors))
        assert cell(overview, f"cloud:{name}") == pct(cloud / count)
        assert cell(overview, f"p95:{name}") == duration(max(g["latency_p95_ms"] for g in groups))
        assert cell(overview, f"firing:{name}") == "0"
    assert sum(g["count"] for g in metrics["digits"]) == 20  # the test's own events, all counted

    for g in metrics["digits"]:  # the comparison's per device class numbers are the API's
        key = f"{g['device_class']}:{g['version']}"
        assert cell(compare, f"count:{key}") == f"{g['count']:,}"
        assert cell(compare, f"p95:{key}") == duration(g["latency_p95_ms"])
        assert cell(compare, f"error-rate:{key}") == pct(g["error_rate"])

    assert cell(model, "share:2") == f"{rollout.percent:g} %"
    assert cell(model, "share:1") == f"{100 - rollout.percent:g} %"
    assert cell(rollout_page, "percent") == f"{rollout.percent:g} %"
    assert rollout.metrics, "the evaluator recorded guardrails"
    for g in rollout.metrics:
        assert cell(rollout_page, f"status:{g.metric}") == g.status
        assert cell(rollout_page, f"n:{g.metric}") == f"{g.n_candidate:,} / {g.n_control:,}"
        assert cell(rollout_page, f"p:{g.metric}") == pvalue(g.p_value)
    assert any(g.n_candidate > 0 and g.p_value is not None for g in rollout.metrics)

    for arm in experiment.arms:
        assert cell(experiment_page, f"n:{arm.version}") == f"{arm.n:,}"
    new = experiment.arms[1]
    assert new.n == 10 and new.difference is not None
    assert cell(experiment_page, f"difference:{new.version}") == signed(new.difference)
    assert cell(experiment_page, f"ci:{new.version}") == (
        f"[{signed(new.ci_low)}, {signed(new.ci_high)}]"
    )

    assert audit
    for entry in audit:
        assert entry.subject in audit_page
    assert audit_page.count("<tr>") - 1 == len(audit)  # one row per entry (+ the header)


FOREIGN = {"Origin": "https://evil.example"}


def post_form(browser: httpx.Client, page_path: str, action: str, **fields: str) -> httpx.Response:
    """Submit a form of ``page_path`` as the browser would: with the page's CSRF token."""
    token = csrf_of(browser.get(page_path).text)
    return browser.post(action, data={"csrf": token, **fields})


def newest_audit(shop: Shop, subject: str) -> tuple[str, str, str]:
    with shop.api() as api:
        entry = api.audit(subject=subject, limit=1).items[0]
    return entry.action, entry.actor, entry.reason


def test_each_rollout_action_moves_the_rollout_and_is_audited_as_the_apis(shop: Shop) -> None:
    page_path = f"/ui/rollouts/{shop.rollout_id}"
    with shop.browser() as browser:
        for action, state, percent in [
            ("pause", "paused", 10.0),
            ("resume", "running", 10.0),
            ("advance", "running", 50.0),
            ("rollback", "rolled_back", 0.0),
        ]:
            response = post_form(
                browser, page_path, f"{page_path}/{action}", reason=f"console {action}"
            )
            assert response.status_code == 303, response.text
            assert response.headers["location"] == f"{page_path}?notice={action}"
            with shop.api() as api:
                rollout = api.show_rollout(shop.rollout_id)
            assert (rollout.state, rollout.percent) == (state, percent)
            assert newest_audit(shop, shop.rollout_id) == (
                action,
                f"admin:{shop.app_id}",
                f"console {action}",
            )
        shown = browser.get(response.headers["location"]).text
    assert "The rollout was rolled back" in shown
    assert shown.count("reached 20") == 2  # step 1 at creation, step 2 at the advance
    assert "Confirm:" not in shown  # a rolled-back rollout offers no action


def test_promote_and_stop_change_state_through_the_apis_calls(shop: Shop) -> None:
    with shop.browser() as browser:
        stopped = post_form(
            browser,
            f"/ui/experiments/{shop.experiment_id}",
            f"/ui/experiments/{shop.experiment_id}/stop",
            promote="2",
            reason="v2 is better",
        )
        archived = post_form(
            browser,
            "/ui/models/faces/versions/1",
            "/ui/models/faces/versions/1/stage",
            stage="archived",
        )
        promoted = post_form(
            browser,
            "/ui/models/faces/versions/1",
            "/ui/models/faces/versions/1/stage",
            stage="production",
        )
        shown = browser.get(promoted.headers["location"]).text
    assert [r.status_code for r in (stopped, archived, promoted)] == [303, 303, 303]
    assert "The stage was changed." in shown
    with shop.api() as api:
        experiment = api.show_experiment(shop.experiment_id)
        faces = api.show_model("faces")
        audit = api.audit(subject=shop.experiment_id, limit=1).items[0]
        staged = [
            e
            for e in api.audit(limit=100).items
            if e.action == "version.stage" and e.details["model"] == "faces"
        ]
    assert (experiment.state, experiment.winner) == ("stopped", 2)
    assert faces.production_version == 1  # v2 by the stop, then v1 again by the promote
    # newest first: the console's promote (v1 was archived already by the stop: no change,
    # no entry), then the API's promote when the shop was set up; same actor, same shape
    actor = f"admin:{shop.app_id}"
    assert [(e.from_state, e.to_state, e.actor, e.details) for e in staged] == [
        ("archived", "production", actor, {"model": "faces", "version": 1}),
        ("candidate", "production", actor, {"model": "faces", "version": 1}),
    ]
    assert (audit.action, audit.actor, audit.reason) == (
        "experiment.stop",
        f"admin:{shop.app_id}",
        "v2 is better",
    )
    assert audit.details["promoted"] == 2


def test_a_refused_action_shows_the_page_with_the_reason(seen: Shop) -> None:
    rollout_path = f"/ui/rollouts/{seen.rollout_id}"
    with seen.browser() as browser:
        resume = post_form(browser, rollout_path, f"{rollout_path}/resume")
        promote = post_form(
            browser,
            "/ui/models/digits/versions/2",
            "/ui/models/digits/versions/2/stage",
            stage="production",
        )
        bad_arm = post_form(
            browser,
            f"/ui/experiments/{seen.experiment_id}",
            f"/ui/experiments/{seen.experiment_id}/stop",
            promote="99",
        )
    assert resume.status_code == 409
    assert "it is running" in resume.text and "<h1>digits v2" in resume.text
    assert promote.status_code == 409
    assert 'role="alert"' in promote.text and "rollout" in promote.text
    assert bad_arm.status_code == 422
    assert "promote must be" in html.unescape(bad_arm.text)
    with seen.api() as api:
        assert api.show_rollout(seen.rollout_id).state == "running"
        assert api.show_version("digits", 2).stage == "candidate"
        assert api.show_experiment(seen.experiment_id).state == "running"


def test_a_form_without_this_sessions_token_or_from_another_site_is_refused(
    seen: Shop,
) -> None:
    with seen.api() as api:
        before = len(api.audit(limit=200).items)
    answers = []
    with seen.browser() as browser:
        token = csrf_of(browser.get(f"/ui/rollouts/{seen.rollout_id}").text)
        faults = [({}, {}), ({"csrf": "0" * 64}, {}), ({"csrf": token}, FOREIGN)]
        for fields, headers in faults:  # missing, wrong, right token from another site
            answers += [
                browser.post(
                    f"/ui/rollouts/{seen.rollout_id}/rollback", data=fields, headers=headers
                ),
                browser.post(
                    f"/ui/experiments/{seen.experiment_id}/stop",
                    data={**fields, "promote": "2"},
                    headers=headers,
                ),
                browser.post(
                    "/ui/models/digits/versions/1/stage",
                    data={**fields, "stage": "archived"},
                    headers=headers,
                ),
            ]
    for response in answers:
        assert response.status_code == 403
        assert response.headers["content-type"].startswith("text/html")
        assert "Nothing was changed" in response.text
    with seen.api() as api:
        assert api.show_rollout(seen.rollout_id).state == "running"
        assert api.show_experiment(seen.experiment_id).state == "running"
        assert api.show_version("digits", 1).stage == "production"
        assert len(api.audit(limit=200).items) == before


def test_numbers_are_formatted_for_people_and_the_card_renders_its_tables(seen: Shop) -> None:
    with seen.api() as api:
        sizes = [{v.name: v.size for v in api.show_version("digits", n).variants} for n in (1, 2)]
    with seen.browser() as browser:
        version = browser.get("/ui/models/digits/versions/2").text
        compare = browser.get("/ui/models/digits/compare?a=1&b=2").text
    assert "0.891" in version and "0.8912345678" not in version
    fp32 = sizes[1]["onnx-fp32"]
    assert size(fp32) in version and str(fp32) not in version and f"{fp32:,}" not in version
    assert "97 %" in version  # the fp32 variant's accuracy 0.97
    assert "<table>" in version.split("Model card")[1]
    assert "<td>0.93</td>" in version
    assert "+0.01" in compare  # accuracy 0.92 - 0.91
    grown = sizes[1]["onnx-fp32"] - sizes[0]["onnx-fp32"]
    assert ("+" if grown > 0 else "\u2212") + size(abs(grown)) in compare


def test_the_version_page_names_both_dataset_fingerprints(seen: Shop) -> None:
    with seen.browser() as browser:
        version = browser.get("/ui/models/digits/versions/2").text
    assert "sha256:whole-dataset" in version  # lineage (build.json)
    assert "splits:a,b,c" in version  # the run record, which the model card prints
    assert "lineage: the whole dataset the build loaded" in version
    assert "run record: what training read" in version


def test_versions_are_paged_newest_first(seen: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    from pocketml.server.console import ship

    monkeypatch.setattr(ship, "VERSIONS_PER_PAGE", 1)  # the server runs in this process
    with seen.browser() as browser:
        first = browser.get("/ui/models/digits").text
        older = browser.get("/ui/models/digits?offset=1").text
    assert ">v2</a>" in first and ">v1</a>" not in first.split("Variants of")[0]
    assert "offset=1" in first and "older" in first
    assert ">v1</a>" in older.split("Variants of")[0] and "newer" in older


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/ui/models/digits/compare?a=1&b=x", 422),
        ("/ui/models/digits/compare?a=1", 422),
        ("/ui/models/digits/compare?a=1&b=2&days=91", 422),
        ("/ui/models/digits/compare?a=1&b=9", 404),
        ("/ui/models/digits/versions/0", 422),
        ("/ui/overview?offset=-1", 422),
        ("/ui/rollouts/%00", 422),
        ("/ui/rollouts/" + "r" * 41, 422),
        ("/ui/audit?subject=" + "s" * 41, 422),
        ("/ui/experiments/nope", 404),
    ],
)
def test_hostile_input_answers_a_clear_4xx_page(seen: Shop, path: str, status: int) -> None:
    with seen.browser() as browser:
        response = browser.get(path)
        action = browser.post(f"/ui/rollouts/{seen.rollout_id}/explode", data={"csrf": "x"})
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"].startswith("text/html")
    assert 'role="alert"' in response.text
    assert action.status_code == 422  # not an action of a rollout
