"""The errors a package check can raise: one class per way a package can be bad.

Every class is an :class:`pocketml.errors.IntegrityError`, so a device that only wants to
"keep the previous model when the new one is bad" catches that one base class, while tests
and logs still see exactly which check failed::

    IntegrityError (pocketml.errors)
    ├── MalformedPackage      not a zip, unsafe or unexpected zip layout, bad manifest fields
    ├── UnsignedPackage       no manifest.sig: a downgrade to an unsigned package
    ├── UntrustedKey          signed by a key id the caller does not trust
    ├── SignatureInvalid      the Ed25519 signature does not match the manifest bytes
    ├── WrongApp              a valid package, but built for another app
    ├── MissingMember         the manifest lists a member the zip does not hold
    ├── UnexpectedMember      the zip holds a member the manifest does not list
    ├── MemberHashMismatch    a member's size or sha256 differs from the manifest
    └── DecryptionFailed      wrong content key, or ciphertext / tag modified

    InvalidInput (pocketml.errors)
    └── ContentKeyRequired    an encrypted package was extracted without its content key
"""

from __future__ import annotations

from pocketml.errors import IntegrityError, InvalidInput

__all__ = [
    "ContentKeyRequired",
    "DecryptionFailed",
    "MalformedPackage",
    "MemberHashMismatch",
    "MissingMember",
    "SignatureInvalid",
    "UnexpectedMember",
    "UnsignedPackage",
    "UntrustedKey",
    "WrongApp",
]


class MalformedPackage(IntegrityError):
    """The file is not a well-formed package: not a zip, unsafe names, bad manifest."""

    code = "package_malformed"


class UnsignedPackage(IntegrityError):
    """The package has no ``manifest.sig``; unsigned packages are never trusted."""

    code = "package_unsigned"


class UntrustedKey(IntegrityError):
    """The manifest names a signing key id that is not in the trusted key mapping."""

    code = "package_untrusted_key"


class SignatureInvalid(IntegrityError):
    """The Ed25519 signature does not verify over the manifest bytes."""

    code = "package_signature_invalid"


class WrongApp(IntegrityError):
    """The package is authentic but was built for a different app."""

    code = "package_wrong_app"


class MissingMember(IntegrityError):
    """The manifest lists a member that the zip file does not contain."""

    code = "package_missing_member"


class UnexpectedMember(IntegrityError):
    """The zip file contains a member that the manifest does not list."""

    code = "package_unexpected_member"


class MemberHashMismatch(IntegrityError):
    """A member's bytes differ (size or sha256) from what the signed manifest records."""

    code = "package_hash_mismatch"


class DecryptionFailed(IntegrityError):
    """AES-256-GCM refused the ciphertext: wrong key, or ciphertext/tag were modified."""

    code = "decryption_failed"


class ContentKeyRequired(InvalidInput):
    """The package is encrypted and no content key was given to decrypt it."""

    code = "content_key_required"
