"""Installing a package: verify it, fetch its content key, extract the model, check its hash.

The device SDK (after a download) and the cloud serving cache (after a copy from the
artifact store) do the same four steps on a package file; this is the one place they are
written. What differs is passed in: where the content key comes from (``GET /v1/keys`` on
a device, the registry on the server) and what else the signed manifest must agree with
(the device binds it to its check-in entry).

A package that fails verification (its file hash, its signature or member hashes, or the
caller's ``check``) is deleted: no retry can make those bytes valid. A failure after
verification (the key, decryption, the disk) leaves the package file in place, so it can
be retried without another download.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pocketml.errors import IntegrityError, PocketMLError
from pocketml.protect._extract import extract_model
from pocketml.protect._keys import ContentKey
from pocketml.protect._verify import VerifiedPackage, verify_package
from pocketml.protocol import file_sha256

__all__ = ["InstalledPackage", "install_package"]


@dataclass(frozen=True)
class InstalledPackage:
    """A package whose model was extracted.

    Attributes:
        verified: the verified package (its signed manifest, the key that signed it).
        model_path: the plaintext model file.
        model_sha256: its sha256 (checked against the signed manifest while extracting).
    """

    verified: VerifiedPackage
    model_path: Path
    model_sha256: str


def install_package(
    package: Path,
    model_path: Path,
    *,
    trusted_keys: Mapping[str, bytes],
    app_id: str,
    content_key: Callable[[str], bytes | ContentKey],
    package_sha256: str | None = None,
    model_sha256: str | None = None,
    check: Callable[[Mapping[str, Any]], None] | None = None,
) -> InstalledPackage:
    """Verify ``package``, fetch its content key if encrypted, and extract its model.

    Args:
        package: the package file.
        model_path: where the plaintext model goes (written through a temporary file).
        trusted_keys: ``{key_id: raw Ed25519 public key}`` the signature must come from.
        app_id: the app the package must belong to.
        content_key: returns the content key of a key id (called only when encrypted).
        package_sha256: the sha256 the package file must have (a manifest's promise).
        model_sha256: the sha256 the model must have (a registry record), if known.
        check: more checks of the signed manifest (raise a ``PocketMLError`` to refuse).

    Returns:
        The InstalledPackage.

    Raises:
        IntegrityError: the file hash, the signature, a member hash, the model hash or
            ``check`` failed (the package file was deleted), or decryption failed.
        NotFound: ``package`` does not exist.
        OSError: the model could not be written.
        Whatever ``content_key`` raises, unchanged.
    """
    package = Path(package)
    try:
        if package_sha256 is not None:
            _check_sha256(package, package_sha256)
        verified = verify_package(package, trusted_keys=trusted_keys, app_id=app_id)
        signed_model = str(verified.manifest["model_sha256"])
        if model_sha256 is not None and signed_model != model_sha256:
            raise IntegrityError(
                f"the model in package {package.name} has sha256 {signed_model[:16]}..., "
                f"expected {model_sha256[:16]}...; re-push the version."
            )
        if check is not None:
            check(verified.manifest)
    except PocketMLError:
        package.unlink(missing_ok=True)
        raise
    key = None if verified.content_key_id is None else content_key(verified.content_key_id)
    extract_model(verified, model_path, content_key=key)
    return InstalledPackage(verified, Path(model_path), signed_model)


def _check_sha256(package: Path, expected: str) -> None:
    digest = file_sha256(package)
    if digest != expected:
        raise IntegrityError(
            f"package {package.name} has sha256 {digest[:16]}..., expected "
            f"{expected[:16]}...; it was corrupted in transit or on disk. It was deleted; "
            "fetch it again."
        )
