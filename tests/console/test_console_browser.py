"""The console in a real browser (Debian's Chromium through Playwright), issue 15 item 5.

One world (console_world.py: a rollout with guardrails, an experiment, telemetry, drift,
a firing alert, a loop job) on one live server; one browser; one logged-in page. The pages
are discovered from the app's routes under /ui, so a new page is visited, screenshotted
and checked for console errors without editing this file. Screenshots of every page at
desktop (1280x800) and phone (390x844) width land in tests/artifacts/console/.

The actions come last in the file: each is performed by clicking through its confirmation
step, and the API then shows the new state and the audit entry. No test depends on the
order: the crawl (every page, before any action) is a fixture the action tests use too, and
the CSRF tests post to the action path the crawl saw and compare the state before and after.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from browser_kit import (
    DESKTOP,
    PHONE,
    Crawl,
    Route,
    console_routes,
    crawl,
    find_form,
    page_text,
    post_forms,
    submit_confirmed,
)
from console_world import ConsoleWorld
from playwright.sync_api import Browser, BrowserContext, Page

from pocketml.server.app import create_app
from pocketml.server.client import AdminClient
from pocketml.server.console._format import count, duration, num, pct, pvalue

ONE, ID = "^/ui/", r"/\{[^}]+\}$"  # a route of the console: /ui/<family>[/{id}]

# -- the crawl -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def routes(world: ConsoleWorld) -> tuple[list[Route], list[Route]]:
    """The console's GET pages and POST actions, from the app's own routes."""
    return console_routes(create_app(world.server.settings))


@pytest.fixture(scope="module")
def visited(console: Page, world: ConsoleWorld, routes: tuple[list[Route], list[Route]]) -> Crawl:
    """Every console page, visited once (with screenshots) before any action runs."""
    prefer = [world.rollout_id, world.experiment_id, world.alert_id, world.job_id, world.task_id]
    prefer.append("digits")
    return crawl(console, world.url, routes[0], prefer)


def test_logging_in_through_the_form_opens_the_page_asked_for(
    browser: Browser, world: ConsoleWorld, artifacts: Path
) -> None:
    context = browser.new_context(base_url=world.url, viewport=DESKTOP)
    page = context.new_page()
    try:
        page.goto("/ui/models")
        asked = page.url
        page.screenshot(path=artifacts / "login-desktop.png")
        page.set_viewport_size(PHONE)
        page.screenshot(path=artifacts / "login-phone.png")
        page.get_by_label("Admin token").fill(world.app.device_key)
        with page.expect_navigation() as refused:
            page.get_by_role("button", name="Log in").click()
        refusal = page.get_by_role("alert").inner_text()
        page.get_by_label("Admin token").fill(world.app.admin_token)
        with page.expect_navigation():
            page.get_by_role("button", name="Log in").click()
        landed = page.url
        logout = page.get_by_role("button", name="Log out").count()
    finally:
        context.close()

    assert asked.endswith("/ui?next=/ui/models")
    assert refused.value is not None and refused.value.status == 401
    assert "admin token" in refusal
    assert landed == f"{world.url}/ui/models"
    assert logout == 1


def test_every_console_route_is_reached_from_the_pages(visited: Crawl) -> None:
    unreached = [r.template for r in visited.unreached]
    assert unreached == [], f"no console page links to {unreached}"


def test_every_page_answers_200_as_html(visited: Crawl) -> None:
    bad = [(v.url, v.status, v.content_type) for v in visited.visits if v.status != 200]
    assert bad == []
    assert all(v.content_type.startswith("text/html") for v in visited.visits)


def test_no_page_logs_a_javascript_error(visited: Crawl) -> None:
    assert visited.visits
    assert visited.console_errors == []


KNOWN_TOO_WIDE: dict[str, str] = {}
"""Pages known to overflow a phone screen, with why: the test expects them to fail (xfail)
and fails when a new page overflows. Remove an entry once its page is fixed."""


def test_every_page_has_both_screenshots(visited: Crawl) -> None:
    for visit in visited.visits:
        assert [p.exists() and p.stat().st_size > 0 for p in visit.screenshots] == [True, True]


def test_every_page_fits_a_phone_screen(visited: Crawl) -> None:
    too_wide = {
        v.route.template: v.phone_width for v in visited.visits if v.phone_width > PHONE["width"]
    }
    new = {t: w for t, w in too_wide.items() if t not in KNOWN_TOO_WIDE}
    assert not new, f"wide content must scroll inside .scroll, not the page: {new}"
    if too_wide:
        pytest.xfail("; ".join(f"{t}: {KNOWN_TOO_WIDE[t]}" for t in too_wide))


# -- the numbers -------------------------------------------------------------------------------


def _metrics_total(client: AdminClient, model: str) -> tuple[int, int]:
    groups = client.model_metrics(model)["groups"]
    return sum(g["count"] for g in groups), sum(g["errors"] for g in groups)


def _expect_overview(client: AdminClient, world: ConsoleWorld, url: str) -> list[str]:
    inferences, errors = _metrics_total(client, "digits")
    firing = client.list_alerts(states=["firing"]).items
    return ["digits", count(inferences), pct(errors / (inferences + errors)), count(len(firing))]


def _expect_models(client: AdminClient, world: ConsoleWorld, url: str) -> list[str]:
    return [m.name for m in client.list_models().items]


def _expect_model(client: AdminClient, world: ConsoleWorld, url: str) -> list[str]:
    name = url.rstrip("/").split("/")[-1]
    versions = client.list_versions(name).items
    expected = [f"v{v.version}" for v in versions]
    if name == "digits":
        rollout = client.show_rollout(world.rollout_id)
        expected.append(pct(rollout.percent / 100))
    return expected


def _expect_version(client: AdminClient, world: ConsoleWorld, url: str) -> list[str]:
    name, version = re.findall(r"/models/([^/]+)/versions/(\d+)", url)[0]
    shown = client.show_version(name, int(version))
    return [v.name for v in shown.variants] + [num(v) for v in shown.metrics.values()]


def _expect_rollout(client: AdminClient, world: ConsoleWorld, url: str) -> list[str]:
    rollout = client.show_rollout(world.rollout_id)
    values = [pct(rollout.percent / 100)]
    for metric in rollout.metrics:
        values += [metric.metric.replace("_", " "), num(metric.candidate), num(metric.control)]
        if metric.p_value is not None:
            values.append(pvalue(metric.p_value))
    return values


def _expect_rollouts(client: AdminClient, world: ConsoleWorld, url: str) -> list[str]:
    return [pct(r.percent / 100) for r in client.list_rollouts().items]


def _expect_experiment(client: AdminClient, world: ConsoleWorld, url: str) -> list[str]:
    experiment = client.show_experiment(world.experiment_id)
    values = []
    _control, *treatments = experiment.arms
    for arm in experiment.arms:
        values += [arm.name, count(arm.n), num(arm.value)]
    for arm in treatments:  # the interval of the difference, whatever its sign's style
        values += [num(abs(x)) for x in (arm.difference, arm.ci_low, arm.ci_high) if x is not None]
    return values


def _expect_alerts(client: AdminClient, world: ConsoleWorld, url: str) -> list[str]:
    alert = client.show_alert(world.alert_id)
    return [alert.rule, num(alert.value), num(alert.threshold)]


def _expect_fleet(client: AdminClient, world: ConsoleWorld, url: str) -> list[str]:
    return [count(world.devices)]


def _expect_telemetry(client: AdminClient, world: ConsoleWorld, url: str) -> list[str]:
    values = []
    for group in client.model_metrics("digits")["groups"]:
        values += [count(group["count"]), duration(group["latency_p95_ms"])]
        values.append(pct(group["error_rate"]))
    return values


def _expect_drift(client: AdminClient, world: ConsoleWorld, url: str) -> list[str]:
    fleet = client.drift("digits").fleet
    top = fleet.features[0]
    return [top.name, num(top.score)]


def _expect_accuracy(client: AdminClient, world: ConsoleWorld, url: str) -> list[str]:
    estimated = client.accuracy("digits").fleet.estimated
    assert estimated is not None, "the world's sketches must give an accuracy estimate"
    return [pct(estimated.value)]


def _expect_loop(client: AdminClient, world: ConsoleWorld, url: str) -> list[str]:
    job = client.show_loop_job(world.job_id)
    return [job.state, job.trigger]


def _expect_audit(client: AdminClient, world: ConsoleWorld, url: str) -> list[str]:
    return [e.action for e in client.audit(subject=world.rollout_id).items]


def _expect_federated(client: AdminClient, world: ConsoleWorld, url: str) -> list[str]:
    task = client.show_federated_task(world.task_id)
    return [task.model, task.state, f"{task.rounds_done} / {task.spec['rounds']}"]


Expect = Callable[[AdminClient, ConsoleWorld, str], list[str]]
NUMBERS: list[tuple[str, Expect]] = [
    (r"/overview$", _expect_overview),
    (r"/models$", _expect_models),
    (r"/models/\{[^}]+\}$", _expect_model),
    (r"/versions/\{[^}]+\}$", _expect_version),
    (r"/rollouts$", _expect_rollouts),
    (r"/rollouts/\{[^}]+\}$", _expect_rollout),
    (r"/experiments/\{[^}]+\}$", _expect_experiment),
    (r"/alerts$", _expect_alerts),
    (r"/fleet$", _expect_fleet),
    (r"/telemetry$", _expect_telemetry),
    (r"/drift$", _expect_drift),
    (r"/accuracy$", _expect_accuracy),
    (r"/loop$", _expect_loop),
    (r"/audit$", _expect_audit),
    (r"/federated/\{[^}]+\}$", _expect_federated),
]
"""Page (a regex on its route) -> what it must show, formatted by the console's own
filters from the API's answer. A page not built yet is not checked; the pages of the
skeleton (models, model, version) always are."""


def test_the_key_numbers_on_each_page_equal_the_apis(
    console: Page, world: ConsoleWorld, visited: Crawl
) -> None:
    checked, missing = [], []
    with world.admin() as client:
        for visit in visited.visits:
            for pattern, expect in NUMBERS:
                if not re.search(pattern, visit.route.template):
                    continue
                expected = expect(client, world, visit.url)
                console.goto(visit.url)
                text = page_text(console).lower()  # headers may be text-transformed
                missing += [(visit.url, v) for v in expected if v.lower() not in text]
                checked.append(visit.route.template)
    assert not missing, "\n".join(f"{url} does not show {value!r}" for url, value in missing)
    assert {"/ui/models", "/ui/models/{name}"} <= set(checked)


# -- keyboard, CSRF ------------------------------------------------------------------------


_FOCUSED = """() => { const e = document.activeElement; const f = e.closest('form');
    const post = f && (f.getAttribute('method') || '').toLowerCase() === 'post'
                 && !f.action.endsWith('/ui/logout');
    return {href: e.getAttribute('href'), nav: !!e.closest('nav'),
            button: !!post && (e.tagName === 'BUTTON' || e.type === 'submit'),
            summary: e.tagName === 'SUMMARY' && !!e.parentElement.querySelector(
                'form[method=post i]')}; }"""


def _tab_until(
    page: Page, done: Callable[[list[dict[str, Any]]], bool], presses: int = 120
) -> list[dict[str, Any]]:
    """Press Tab until ``done(stops)`` (or ``presses`` times); the focused elements."""
    stops: list[dict[str, Any]] = []
    for _ in range(presses):
        page.keyboard.press("Tab")
        stops.append(page.evaluate(_FOCUSED))
        if done(stops):
            break
    return stops


def test_tab_reaches_every_nav_link(console: Page, visited: Crawl) -> None:
    console.goto(visited.visits[0].url)
    nav = set(console.eval_on_selector_all("nav a", "as => as.map(a => a.getAttribute('href'))"))
    stops = _tab_until(console, lambda s: nav <= {x["href"] for x in s if x["nav"]})
    assert nav and nav <= {s["href"] for s in stops if s["nav"]}


def test_the_keyboard_opens_each_pages_first_action_and_reaches_its_confirm_button(
    console: Page, visited: Crawl
) -> None:
    unreachable, checked = [], 0
    for visit in visited.visits:
        console.goto(visit.url)
        if not post_forms(console):  # none, or its actions were taken by a test already
            continue
        checked += 1
        stops = _tab_until(console, lambda s: s[-1]["summary"] or s[-1]["button"])
        if stops[-1]["summary"]:  # a confirmation behind <details>: open it, go on
            console.keyboard.press("Enter")
            stops = _tab_until(console, lambda s: s[-1]["button"], presses=10)
        if not stops[-1]["button"]:
            unreachable.append(visit.url)
    assert unreachable == []
    assert checked or not any(v.forms for v in visited.visits)


def _rollout_action(
    console: Page, visited: Crawl, world: ConsoleWorld, word: str
) -> dict[str, Any]:
    url = visited.url_of(ONE + "rollouts" + ID) or visited.url_of(ONE + "rollouts$")
    assert url is not None, "the console has no rollout page (issue 15 asks for one)"
    console.goto(url)
    form = find_form(console, word, world.rollout_id)
    assert form is not None, f"{url} has no {word} form for rollout {world.rollout_id}"
    return form


def _forged_target(visited: Crawl, world: ConsoleWorld) -> str:
    """The rollout's pause action as the crawl saw it (so it exists in any test order)."""
    path = visited.action_path("pause", world.rollout_id)
    assert path is not None, "the crawl saw no pause form for the world's rollout"
    return path


def _rollout_state(world: ConsoleWorld) -> tuple[str, float]:
    with world.admin() as client:
        rollout = client.show_rollout(world.rollout_id)
    return rollout.state, rollout.percent


def test_a_forged_cross_site_form_post_is_refused(
    context: BrowserContext, console: Page, visited: Crawl, world: ConsoleWorld
) -> None:
    target = _forged_target(visited, world)
    forged = (
        f'<form id="f" method="post" action="{world.url}{target}">'
        '<input name="csrf" value="forged"><input name="confirm" value="yes"></form>'
        "<script>document.getElementById('f').submit()</script>"
    )
    before = _rollout_state(world)
    evil = context.new_page()  # the admin's browser, logged in to the console
    evil.route(
        "http://evil.test/**", lambda route: route.fulfill(body=forged, content_type="text/html")
    )
    try:
        with evil.expect_navigation(url=re.compile(re.escape(world.url))) as answer:
            evil.goto("http://evil.test/")
        status = answer.value.status if answer.value is not None else 0
        landed = evil.url
    finally:
        evil.close()

    assert _rollout_state(world) == before
    assert status == 403 or "/ui?next=" in landed, (status, landed)


def test_a_post_without_the_sessions_csrf_token_is_a_403_page(
    console: Page, visited: Crawl, world: ConsoleWorld
) -> None:
    target = _forged_target(visited, world)
    before = _rollout_state(world)
    console.goto(visited.visits[0].url)
    with console.expect_navigation() as answer:
        console.evaluate(
            """action => { const f = document.createElement('form'); f.method = 'post';
            f.action = action; for (const [k, v] of [['csrf', 'not-the-token'],
            ['confirm', 'yes']]) { const i = document.createElement('input'); i.name = k;
            i.value = v; f.appendChild(i); } document.body.appendChild(f); f.submit(); }""",
            target,
        )

    assert answer.value is not None and answer.value.status == 403
    assert console.get_by_role("alert").count() == 1
    assert _rollout_state(world) == before


# -- the actions (they change the world: they run last) -------------------------------------


TESTED_ACTIONS = [
    r"/rollouts/\{[^}]+\}/(\{[^}]+\}|pause|resume|advance|rollback)$",
    r"/experiments/\{[^}]+\}/stop$",
    r"/alerts/\{[^}]+\}/ack$",
    r"/versions/\{[^}]+\}/(stage|promote)$",
    r"/federated/\{[^}]+\}/cancel$",
]
"""The POST routes the action tests below perform (a regex on the route)."""


def test_every_console_action_has_a_browser_test(routes: tuple[list[Route], list[Route]]) -> None:
    untested = [
        r.template for r in routes[1] if not any(re.search(p, r.template) for p in TESTED_ACTIONS)
    ]
    assert untested == [], "add these actions to test_console_browser.py"


def test_an_operator_moves_the_rollout_through_confirmed_steps(
    console: Page, visited: Crawl, world: ConsoleWorld
) -> None:
    steps = ("pause", "resume", "advance", "rollback")
    after = {
        "pause": "paused",
        "resume": "running",
        "advance": "running",
        "rollback": "rolled_back",
    }
    with world.admin() as client:

        def state() -> tuple[str, float]:
            rollout = client.show_rollout(world.rollout_id)
            return rollout.state, rollout.percent

        for word in steps:
            form = _rollout_action(console, visited, world, word)
            before = state()
            status, confirmed = submit_confirmed(console, form, state)
            assert (status, confirmed) == (200, True), word
            assert console.locator(".notice").count() == 1, f"{word}: no notice on the page"
            moved = state()
            assert moved[0] == after[word] and moved != before, word
        audit = [e.action for e in client.audit(subject=world.rollout_id).items]
    assert audit[: len(steps)] == list(reversed(steps))


def test_a_failed_action_shows_why_on_the_page_and_changes_nothing(
    console: Page, visited: Crawl, world: ConsoleWorld
) -> None:
    url = visited.url_of(ONE + "rollouts" + ID)
    assert url is not None
    console.goto(url.replace(world.rollout_id, world.spare_rollout_id))
    form = find_form(console, "advance", world.spare_rollout_id)
    assert form is not None
    with world.admin() as client:
        client.move_rollout(world.spare_rollout_id, "rollback", reason="someone else was first")

        def state() -> str:
            return client.show_rollout(world.spare_rollout_id).state

        status, confirmed = submit_confirmed(console, form, state)  # the page is stale now
        after = state()
    shown = console.locator(".error, [role=alert]")
    assert confirmed and status in (409, 422)
    assert shown.count() >= 1 and shown.first.inner_text().strip()
    assert after == "rolled_back"


def test_stopping_the_experiment_is_confirmed_and_audited(
    console: Page, visited: Crawl, world: ConsoleWorld
) -> None:
    url = visited.url_of(ONE + "experiments" + ID) or visited.url_of(ONE + "experiments$")
    assert url is not None, "the console has no experiment page (issue 15 asks for one)"
    console.goto(url)
    form = find_form(console, "stop", world.experiment_id)
    assert form is not None
    with world.admin() as client:
        status, confirmed = submit_confirmed(
            console, form, lambda: client.show_experiment(world.experiment_id).state
        )
        stopped = client.show_experiment(world.experiment_id).state
        audit = [e.action for e in client.audit(subject=world.experiment_id).items]
    assert (status, confirmed) == (200, True)
    assert stopped == "stopped"
    assert audit[0] == "experiment.stop"


def test_acknowledging_the_alert_is_confirmed_and_audited(
    console: Page, visited: Crawl, world: ConsoleWorld
) -> None:
    url = visited.url_of(ONE + "alerts" + ID) or visited.url_of(ONE + "alerts$")
    assert url is not None, "the console has no alerts page (issue 15 asks for one)"
    console.goto(url)
    form = find_form(console, "ack", world.alert_id)
    assert form is not None
    with world.admin() as client:
        status, confirmed = submit_confirmed(
            console, form, lambda: client.show_alert(world.alert_id).acked_at
        )
        acked = client.show_alert(world.alert_id)
        audit = [e.action for e in client.audit(subject=world.alert_id).items]
    assert (status, confirmed) == (200, True)
    assert acked.acked_by == f"admin:{world.app.app_id}"
    assert audit[0] == "alert.ack"


def test_cancelling_the_federated_task_is_confirmed(
    console: Page, visited: Crawl, world: ConsoleWorld
) -> None:
    url = visited.url_of(ONE + "federated" + ID) or visited.url_of(ONE + "federated$")
    assert url is not None, "the console has no federated page"
    console.goto(url)
    form = find_form(console, "cancel", world.task_id)
    assert form is not None
    with world.admin() as client:
        status, confirmed = submit_confirmed(
            console, form, lambda: client.show_federated_task(world.task_id).state
        )
        cancelled = client.show_federated_task(world.task_id).state
    assert (status, confirmed) == (200, True)
    assert cancelled == "cancelled"
    assert console.locator(".notice").count() == 1


def test_promoting_a_version_is_confirmed_and_audited(
    console: Page, visited: Crawl, world: ConsoleWorld
) -> None:
    version_page = next(
        (
            v.route.template
            for v in visited.visits
            if re.search(r"/versions/\{[^}]+\}$", v.route.template)
        ),
        None,
    )
    assert version_page is not None, "the console has no version page"
    values = iter(["keyboard", "2"])  # the route's parameters: the model, the version
    console.goto(re.sub(r"\{[^}]+\}", lambda _: next(values), version_page))
    form = find_form(console, "promote", "keyboard")
    assert form is not None, "the page of keyboard v2 does not offer to promote it"
    with world.admin() as client:
        status, confirmed = submit_confirmed(
            console, form, lambda: client.show_model("keyboard").production_version
        )
        production = client.show_model("keyboard").production_version
        audit = [
            (e.action, e.to_state, e.actor)
            for e in client.audit(limit=100).items
            if e.details.get("model") == "keyboard"
        ]
    assert (status, confirmed) == (200, True)
    assert production == 2
    assert audit[0] == ("version.stage", "production", f"admin:{world.app.app_id}")
