"""pocketml.protect: signed, optionally encrypted model packages.

A package is one zip file a device downloads for a model variant: the model (or its
AES-256-GCM ciphertext), ``schema.json``, ``card.md``, the optional ``profile.json`` (the
version's reference profile for drift monitoring), ``manifest.json`` (every member's
sha256) and ``manifest.sig`` (Ed25519 over the manifest bytes). ``docs/packages.md``
describes the format and the device-side checks.

Typical use (a workstation builds, a device verifies then extracts)::

    key = SigningKey.generate()
    build_package(Path("m.onnx"), Path("m.pkg"), app_id="app", model="digits", version=1,
                  variant="onnx-fp32", model_format="onnx", precision="fp32",
                  schema=schema_dict, card="# digits", signing_key=key)
    pkg = verify(Path("m.pkg"), trusted_keys={key.key_id: key.public_bytes()}, app_id="app")
    extract_model(pkg, Path("cache/m.onnx"))

A receiver that installs packages (a device, the cloud serving cache) calls
``install_package``: verify, fetch the content key, extract and check the model, once.

This package imports only the standard library, ``cryptography`` and pocketml's errors:
the device SDK depends on it and must install without torch, FastAPI or SQLAlchemy.
"""

from pocketml.protect._errors import (
    ContentKeyRequired,
    DecryptionFailed,
    MalformedPackage,
    MemberHashMismatch,
    MissingMember,
    SignatureInvalid,
    UnexpectedMember,
    UnsignedPackage,
    UntrustedKey,
    WrongApp,
)
from pocketml.protect._extract import extract_model, read_member
from pocketml.protect._install import InstalledPackage, install_package
from pocketml.protect._keys import (
    ContentKey,
    MasterKey,
    SigningKey,
    signing_key_id,
    verify_signature,
)
from pocketml.protect._manifest import PROFILE_MEMBER, canonical_json
from pocketml.protect._package import PackageInfo, build_package
from pocketml.protect._verify import VerifiedPackage, verify_package
from pocketml.protect.keyring import (
    Keyring,
    KeyringInvalid,
    KeyringStale,
    accept_keyring,
    follow_keyrings,
)

verify = verify_package

__all__ = [
    "PROFILE_MEMBER",
    "ContentKey",
    "ContentKeyRequired",
    "DecryptionFailed",
    "InstalledPackage",
    "Keyring",
    "KeyringInvalid",
    "KeyringStale",
    "MalformedPackage",
    "MasterKey",
    "MemberHashMismatch",
    "MissingMember",
    "PackageInfo",
    "SignatureInvalid",
    "SigningKey",
    "UnexpectedMember",
    "UnsignedPackage",
    "UntrustedKey",
    "VerifiedPackage",
    "WrongApp",
    "accept_keyring",
    "build_package",
    "canonical_json",
    "extract_model",
    "follow_keyrings",
    "install_package",
    "read_member",
    "signing_key_id",
    "verify",
    "verify_package",
    "verify_signature",
]
