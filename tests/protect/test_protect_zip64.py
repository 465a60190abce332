"""A ZIP64 package (more than 65,535 members) is refused as MalformedPackage, never struct.error.

Packages never need ZIP64 records (format version 1), but a hostile server can send one;
the layout check used to pack the member count into a 16-bit field and leaked
``struct.error``, which stopped a device's whole sync.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from protect_helpers import Kit, make_kit, read_members, write_members

from pocketml.protect import MalformedPackage
from pocketml.protect._verify import MAX_MEMBERS
from pocketml.protect._zipio import check_layout, make_zip_info

EXTRA_MEMBERS = 65_536


@pytest.fixture(scope="module")
def zip64_kit(tmp_path_factory: pytest.TempPathFactory) -> tuple[Kit, Path]:
    """A signed package's members plus 65,536 one-byte members, all canonical (built once)."""
    kit = make_kit(tmp_path_factory.mktemp("zip64"))
    path = kit.tmp / "zip64.pkg"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in read_members(kit.plain.path).items():
            archive.writestr(make_zip_info(name, len(data)), data)
        for index in range(EXTRA_MEMBERS):
            archive.writestr(make_zip_info(f"m{index}", 1), b"x")
    return kit, path


def test_a_zip64_package_fails_verification_as_malformed(zip64_kit: tuple[Kit, Path]) -> None:
    kit, path = zip64_kit

    with pytest.raises(MalformedPackage, match=f"at most {MAX_MEMBERS}"):
        kit.verify(path)


def test_the_layout_check_refuses_zip64_records_with_a_typed_error(
    zip64_kit: tuple[Kit, Path],
) -> None:
    _, path = zip64_kit
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()

    with path.open("rb") as handle, pytest.raises(MalformedPackage, match="ZIP64"):
        check_layout(handle, path.stat().st_size, infos)


def test_a_package_with_one_member_too_many_is_refused(tmp_path: Path) -> None:
    kit = make_kit(tmp_path / "kit")
    members = read_members(kit.plain.path)
    extra = {f"m{index}": b"x" for index in range(MAX_MEMBERS + 1 - len(members))}
    path = write_members(tmp_path / "many.pkg", {**members, **extra})

    with pytest.raises(MalformedPackage, match=f"{MAX_MEMBERS + 1} members"):
        kit.verify(path)
