"""Helpers of the browser tests: the console's routes, a crawl of its pages, its forms.

- ``console_routes(app)``: the GET pages and POST actions under ``/ui``, read from the
  app's routes, so a page added tomorrow is visited without touching these tests.
- ``crawl(page, ...)``: visits every page without path parameters, then follows links to
  reach every page with them (one URL per route, preferring links naming the world's
  objects), taking a screenshot of each at desktop and phone width.
- ``post_forms`` / ``submit_confirmed``: find an action's form and submit it the way a
  person does, through its confirmation step.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from playwright.sync_api import Page, ViewportSize

__all__ = [
    "ARTIFACTS",
    "DESKTOP",
    "PHONE",
    "Crawl",
    "Route",
    "console_routes",
    "crawl",
    "page_text",
    "post_forms",
    "submit_confirmed",
]

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "console"
"""Where the screenshots go (gitignored; docs/development.md names it)."""

DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}
NOT_PAGES = {"/ui"}  # the login form: visited by the login test, before a session exists


@dataclass(frozen=True)
class Route:
    """One console route: its template (``/ui/models/{name}``) and a regex of its URLs."""

    template: str
    pattern: re.Pattern[str]

    @property
    def has_params(self) -> bool:
        """Whether the path has parameters (reached by following links)."""
        return "{" in self.template

    @property
    def slug(self) -> str:
        """A file name for its screenshots: ``models-name-versions-version``."""
        parts = self.template.removeprefix("/ui/").replace("{", "").replace("}", "")
        return re.sub(r"[^A-Za-z0-9]+", "-", parts.split(":")[0]).strip("-") or "root"


def _route(template: str) -> Route:
    regex = ""
    for piece in re.split(r"(\{[^}]+\})", template):
        if piece.startswith("{"):
            regex += ".+" if piece.endswith(":path}") else "[^/]+"
        else:
            regex += re.escape(piece)
    return Route(template, re.compile(f"^{regex}$"))


def console_routes(app: FastAPI) -> tuple[list[Route], list[Route]]:
    """The console's GET pages and POST actions, as the app registers them."""
    pages: list[Route] = []
    actions: list[Route] = []
    for route in iter_route_contexts(app.routes):  # through included routers
        path, methods = route.path or "", route.methods or set()
        if not path.startswith("/ui"):
            continue
        if "GET" in methods and path not in NOT_PAGES:
            pages.append(_route(path))
        if "POST" in methods and path not in {"/ui/login", "/ui/logout"}:
            actions.append(_route(path))
    return pages, actions


def match(routes: Iterable[Route], path: str) -> Route | None:
    """The route a path belongs to (a literal route wins over a parametrised one)."""
    found = [r for r in routes if r.pattern.match(path)]
    found.sort(key=lambda r: r.has_params)
    return found[0] if found else None


def page_text(page: Page) -> str:
    """The page's visible text, with no-break spaces as spaces."""
    text = page.inner_text("body")
    return re.sub(r"[\u00a0\u202f]", " ", text)


@dataclass
class Visit:
    """One page as the crawl saw it."""

    route: Route
    url: str
    status: int
    content_type: str
    phone_width: int = 0
    screenshots: list[Path] = field(default_factory=list)
    forms: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Crawl:
    """Every console page the crawl reached, and what went wrong on the way."""

    visits: list[Visit]
    unreached: list[Route]
    console_errors: list[str]

    def action_path(self, word: str, token: str) -> str | None:
        """The path an action form posted to when the crawl saw it (before any action
        ran), for the action ``word`` on the object ``token``."""
        for visit in self.visits:
            for form in visit.forms:
                if _is_action(form, word, token):
                    return str(form["action"])
        return None

    def url_of(self, pattern: str) -> str | None:
        """The URL visited for the first route whose template matches ``pattern`` (a
        regex searched in it, e.g. ``r"/rollouts/{[^}]+}$"``)."""
        for visit in self.visits:
            if re.search(pattern, visit.route.template):
                return visit.url
        return None


def _links(page: Page, origin: str) -> list[str]:
    hrefs: list[str] = page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
    paths = []
    for href in hrefs:
        parts = urlsplit(href)
        if f"{parts.scheme}://{parts.netloc}" == origin and parts.path.startswith("/ui/"):
            paths.append(parts.path + (f"?{parts.query}" if parts.query else ""))
    return paths


def _visit(page: Page, route: Route, url: str, shots: Path) -> Visit:
    response = page.goto(url)
    assert response is not None, f"no response for {url}"
    visit = Visit(route, url, response.status, response.headers.get("content-type", ""))
    if not visit.content_type.startswith("text/html"):
        return visit
    visit.forms = post_forms(page)
    name = route.slug + ("-query" if "?" in url else "")
    desktop = shots / f"{name}-desktop.png"
    page.screenshot(path=desktop, full_page=True)
    page.set_viewport_size(PHONE)
    visit.phone_width = page.evaluate("document.documentElement.scrollWidth")
    phone = shots / f"{name}-phone.png"
    page.screenshot(path=phone, full_page=True)
    page.set_viewport_size(DESKTOP)
    visit.screenshots = [desktop, phone]
    return visit


def crawl(
    page: Page, origin: str, routes: list[Route], prefer: Iterable[str], shots: Path = ARTIFACTS
) -> Crawl:
    """Visit every page: the literal ones, then each parametrised one through a link.

    Args:
        page: a logged-in page (desktop viewport).
        origin: the server's URL.
        routes: the GET pages (``console_routes``).
        prefer: words a link should name to be chosen (the world's ids and model), so a
            route's page is the one with the world's data.
        shots: the screenshot directory.
    """
    shots.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    page.on(
        "console", lambda m: errors.append(f"{page.url}: {m.text}") if m.type == "error" else None
    )
    page.on("pageerror", lambda e: errors.append(f"{page.url}: {e}"))
    words = list(prefer)
    visits: list[Visit] = []
    seen: set[str] = set()
    seen_query: set[str] = set()
    links: list[str] = []

    def go(route: Route, url: str) -> None:
        visits.append(_visit(page, route, origin + url, shots))
        links.extend(_links(page, origin))

    for route in routes:
        if not route.has_params:
            seen.add(route.template)
            go(route, route.template)
    while True:
        candidates = []
        for link in dict.fromkeys(links):
            path, _, query = link.partition("?")
            linked = match(routes, path)
            if linked is None:
                continue
            new = linked.template not in seen or (query and linked.template not in seen_query)
            if new:
                score = sum(word in link for word in words)
                candidates.append((-score, link, linked))
        if not candidates:
            break
        _, link, route = min(candidates, key=lambda c: c[0])
        if route.template in seen:
            seen_query.add(route.template)
        seen.add(route.template)
        go(route, link)
    unreached = [r for r in routes if r.template not in seen]
    return Crawl(visits, unreached, errors)


# -- forms -------------------------------------------------------------------------------

_FORMS_JS = """forms => forms.map((f, i) => ({
    index: i,
    action: new URL(f.getAttribute('action') || location.href, location.href).pathname,
    words: Array.from(f.querySelectorAll('input, button')).map(
        e => [e.name || '', e.value || '', e.textContent || ''].join(' ')).join(' '),
    in_details: !!f.closest('details'),
}))"""


def post_forms(page: Page) -> list[dict[str, Any]]:
    """The page's POST forms but logout: index, action path, words, inside <details>."""
    forms: list[dict[str, Any]] = page.eval_on_selector_all("form", _FORMS_JS)
    methods: list[str] = page.eval_on_selector_all(
        "form", "fs => fs.map(f => (f.getAttribute('method') || 'get').toLowerCase())"
    )
    return [
        f
        for f, m in zip(forms, methods, strict=True)
        if m == "post" and f["action"] != "/ui/logout"
    ]


def _is_action(form: dict[str, Any], word: str, token: str) -> bool:
    action = form["action"]
    names_object = token in action or token in form["words"]
    does_word = action.rstrip("/").endswith(f"/{word}") or re.search(
        rf"\b{re.escape(word)}\b", form["words"], re.IGNORECASE
    )
    return bool(names_object and does_word)


def find_form(page: Page, word: str, token: str) -> dict[str, Any] | None:
    """The POST form for action ``word`` on the object ``token`` (id or name), if any."""
    for form in post_forms(page):
        if _is_action(form, word, token):
            return form
    return None


def _submit(page: Page, index: int) -> int:
    form = page.locator("form").nth(index)
    button = form.locator("button:not([type=button]):not([type=reset]), input[type=submit]")
    with page.expect_navigation() as navigation:
        button.first.click()
    response = navigation.value
    return response.status if response is not None else 0


def submit_confirmed(
    page: Page, form: dict[str, Any], state_of: Callable[[], object]
) -> tuple[int, bool]:
    """Submit an action's form through its confirmation step, as a person would.

    A confirmation is either a closed ``<details>`` around the form (first gesture: open
    it) or a confirm page the first submit leads to (second gesture: submit its form).
    Either way the state must not change after the first gesture.

    Returns:
        The final response's status, and whether the state was unchanged after the first
        gesture (False: the action had no confirmation step).
    """
    before = state_of()
    locator = page.locator("form").nth(form["index"])
    if form["in_details"]:
        details = locator.locator("xpath=ancestor::details[1]")
        if details.get_attribute("open") is None:
            details.locator("summary").first.click()
        confirmed = state_of() == before
        return _submit(page, form["index"]), confirmed
    status = _submit(page, form["index"])
    confirmed = state_of() == before
    if not confirmed:
        return status, False
    confirms = [f for f in post_forms(page) if f["action"] == form["action"]]
    if not confirms:
        confirms = post_forms(page)
    assert confirms, f"after {form['action']} the page has neither a confirm form nor a change"
    return _submit(page, confirms[0]["index"]), True
