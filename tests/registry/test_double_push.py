"""A double push: the same model files pushed again are refused unless forced.

Identity is the set of the variants' model-file sha256s: a push whose files are exactly an
existing version's would only copy it (the usual cause is running ``pocketml push`` twice).
Run on SQLite and PostgreSQL through ``database_url``.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from pocketml.registry import DuplicateBuild, Registry, VersionInfo
from pocketml.testing import Variant, model_variant, push_to_registry


def _row_counts(registry: Registry) -> tuple[int, int]:
    import sqlalchemy as sa

    with registry.store.engine.connect() as conn:
        versions = conn.execute(sa.text("SELECT count(*) FROM model_versions")).scalar_one()
        variants = conn.execute(sa.text("SELECT count(*) FROM variants")).scalar_one()
    return int(versions), int(variants)


def _build(tmp_path: Path, seed: int = 0, names: tuple[str, ...] = ("onnx-fp32",)) -> list[Variant]:
    return [
        model_variant(tmp_path / f"build-{seed}", name, seed=seed * 10 + i, size=3000)
        for i, name in enumerate(names)
    ]


def test_pushing_the_same_build_twice_is_refused_naming_the_version_and_the_flag(
    registry: Registry, app_id: str, tmp_path: Path
) -> None:
    build = _build(tmp_path)
    push_to_registry(registry, app_id, "digits", build)
    with pytest.raises(
        DuplicateBuild, match=r"digits v1 has exactly the same model files.*--force"
    ):
        push_to_registry(registry, app_id, "digits", build, card="another card")
    assert _row_counts(registry) == (1, 1)


def test_a_forced_push_of_the_same_build_is_a_new_version(
    registry: Registry, app_id: str, tmp_path: Path
) -> None:
    build = _build(tmp_path)
    push_to_registry(registry, app_id, "digits", build)
    again = push_to_registry(registry, app_id, "digits", build, force=True)
    assert again.version == 2
    assert _row_counts(registry) == (2, 2)


def test_the_same_files_under_other_variant_names_are_the_same_build(
    registry: Registry, app_id: str, tmp_path: Path
) -> None:
    ((entry, path),) = _build(tmp_path)
    push_to_registry(registry, app_id, "digits", [(entry, path)])
    with pytest.raises(DuplicateBuild):
        push_to_registry(registry, app_id, "digits", [({**entry, "name": "renamed"}, path)])


def test_a_build_that_shares_only_some_files_is_a_new_version(
    registry: Registry, app_id: str, tmp_path: Path
) -> None:
    first = _build(tmp_path, names=("onnx-fp32",))
    both = _build(tmp_path, names=("onnx-fp32", "onnx-int8"))  # the same first file + one
    push_to_registry(registry, app_id, "digits", first)
    assert push_to_registry(registry, app_id, "digits", both).version == 2
    with pytest.raises(DuplicateBuild, match="v2"):
        push_to_registry(registry, app_id, "digits", both)


def test_the_same_build_in_another_app_is_not_a_duplicate(
    registry: Registry, app_id: str, other_app_id: str, tmp_path: Path
) -> None:
    build = _build(tmp_path)
    push_to_registry(registry, app_id, "digits", build)
    assert push_to_registry(registry, other_app_id, "digits", build).version == 1


def test_the_insert_refuses_a_duplicate_that_passed_the_early_check(
    registry: Registry, app_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What two identical pushes at once see: both pass the early (unlocked) check; the
    # check under the model row's lock, in the insert's transaction, must catch the second.
    monkeypatch.setattr(registry.store, "find_identical_version", lambda *args: None)
    build = _build(tmp_path)
    push_to_registry(registry, app_id, "digits", build)
    with pytest.raises(DuplicateBuild, match="v1"):
        push_to_registry(registry, app_id, "digits", build)
    assert _row_counts(registry) == (1, 1)


@pytest.mark.parametrize("force", [False, True])
def test_identical_pushes_at_once_leave_one_version_unless_forced(
    registry: Registry, app_id: str, tmp_path: Path, force: bool
) -> None:
    build = _build(tmp_path)
    stored: list[VersionInfo] = []
    refused: list[DuplicateBuild] = []
    failed: list[BaseException] = []
    barrier = threading.Barrier(3)

    def worker() -> None:
        barrier.wait()
        try:
            stored.append(push_to_registry(registry, app_id, "digits", build, force=force))
        except DuplicateBuild as exc:
            refused.append(exc)
        except BaseException as exc:
            failed.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failed == []
    if force:
        assert sorted(v.version for v in stored) == [1, 2, 3]
        assert refused == []
    else:
        assert [v.version for v in stored] == [1]
        assert [exc.version for exc in refused] == [1, 1]
    assert _row_counts(registry)[0] == len(stored)
