"""Who may fetch an app's packages: its devices only, or anyone holding the package id.

A package id is the sha256 of the package file: 256 bits nobody can guess, announced only
to the app's authenticated devices at check-in. An app whose packages are **public**
(the default) lets a request without a device key download a package by that id, and
the server marks the answer cacheable by shared caches, so a CDN can serve it. An app
that keeps its packages **private** answers only requests carrying its device key (or
admin token). The trade-off is written down once, in docs/packages.md ("Serving packages
from a CDN").
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import sqlalchemy as sa
from sqlalchemy.orm import Session

from pocketml.db import utcnow
from pocketml.errors import NotFound
from pocketml.registry._keystore import write_audit
from pocketml.registry._orm import App, Variant
from pocketml.registry._types import StoredPackage

__all__ = ["PackageAccessStore"]


class PackageAccessStore:
    """Mixin of ``RegistryStore``; ``_session`` is the store's transaction helper."""

    def _session(self, action: str, *, write: bool = False) -> AbstractContextManager[Session]:
        raise NotImplementedError  # provided by RegistryStore

    def packages_public(self, app_id: str) -> bool:
        """Whether the app's packages may be fetched without a key. Raises NotFound."""
        with self._session("read package access") as s:
            public = s.scalar(sa.select(App.packages_public).where(App.id == app_id))
            if public is None:
                raise NotFound(f"no app with id {app_id!r}.")
            return bool(public)

    def set_packages_public(self, app_id: str, public: bool, *, actor: str, reason: str) -> None:
        """Make the app's packages public or private, audited, in one transaction.

        Raises:
            NotFound: no such app.
        """
        with self._session("change package access", write=True) as s:
            app = s.scalars(sa.select(App).where(App.id == app_id).with_for_update()).first()
            if app is None:
                raise NotFound(f"no app with id {app_id!r}.")
            before = "public" if app.packages_public else "private"
            app.packages_public = public
            write_audit(
                s,
                app_id,
                "packages",
                "package_access_changed",
                before,
                "public" if public else "private",
                utcnow(),
                actor=actor,
                reason=reason,
                details={},
            )

    def find_public_package(self, package_id: str) -> StoredPackage:
        """A package of any app whose packages are public, by its id.

        Raises:
            NotFound: no public package has this id (a private app's package included).
        """
        with self._session("read package") as s:
            row = s.execute(
                sa.select(Variant.package_key, Variant.package_size, Variant.package_id)
                .join(App, App.id == Variant.app_id)
                .where(Variant.package_id == package_id, App.packages_public.is_(True))
                .limit(1)
            ).first()
            if row is None:
                raise NotFound(
                    f"no public package {package_id!r}; a package of an app that keeps its "
                    "packages private needs the app's device key (Authorization: Bearer)."
                )
            return StoredPackage(key=row[0], size=int(row[1]), sha256=row[2])
