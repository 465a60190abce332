"""Registry versions contract (push, numbering, stages, deletion, packages, isolation),
run on SQLite and PostgreSQL through the ``database_url`` fixture."""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import ValidationError

from pocketml.errors import Conflict, IntegrityError, InvalidInput, NotFound, Unavailable
from pocketml.protect import MasterKey, extract_model, verify_package
from pocketml.registry import Registry, VariantUpload, VersionCreate, VersionInfo

Push = Callable[..., VersionInfo]


def _download(registry: Registry, app_id: str, package_id: str, where: Path) -> Path:
    ref = registry.get_package(app_id, package_id)
    path = where / f"{package_id}.zip"
    path.write_bytes(b"".join(registry.artifacts.iter_range(ref.key)))
    return path


def _trusted(registry: Registry, app_id: str) -> dict[str, bytes]:
    keys = registry.get_app(app_id).public_keys
    return {key_id: base64.b64decode(value) for key_id, value in keys.items()}


def _row_counts(registry: Registry) -> tuple[int, int]:
    import sqlalchemy as sa

    with registry.store.engine.connect() as conn:
        versions = conn.execute(sa.text("SELECT count(*) FROM model_versions")).scalar_one()
        variants = conn.execute(sa.text("SELECT count(*) FROM variants")).scalar_one()
    return int(versions), int(variants)


class TestPush:
    def test_push_stores_every_variant_with_a_signed_package(
        self, registry: Registry, app_id: str, push: Push, tmp_path: Path
    ) -> None:
        version = push(
            app_id,
            variants=("onnx-fp32", "onnx-int8", "tflite-fp16"),
            encrypted=("onnx-int8",),
            dataset_fingerprint="sha256:abc",
            source_framework="pytorch",
            params={"lr": 0.1},
            metrics={"accuracy": 0.97},
            card="# Digits\n",
        )
        assert (version.model, version.version, version.stage) == ("digits", 1, "candidate")
        assert (version.dataset_fingerprint, version.params, version.card) == (
            "sha256:abc",
            {"lr": 0.1},
            "# Digits\n",
        )
        assert [v.name for v in version.variants] == ["onnx-fp32", "onnx-int8", "tflite-fp16"]
        assert registry.get_version(app_id, "digits", 1) == version
        trusted = _trusted(registry, app_id)
        for variant in version.variants:
            package = _download(registry, app_id, variant.package_id, tmp_path)
            assert hashlib.sha256(package.read_bytes()).hexdigest() == variant.package_id
            assert package.stat().st_size == variant.package_size
            verified = verify_package(package, trusted_keys=trusted, app_id=app_id)
            assert verified.manifest["version"] == 1
            assert verified.manifest["variant"] == variant.name
            key = None
            if variant.content_key_id is not None:
                key = registry.get_content_key(app_id, variant.content_key_id)
            model = extract_model(verified, tmp_path / f"{variant.name}.onnx", content_key=key)
            assert hashlib.sha256(model.read_bytes()).hexdigest() == variant.sha256
            assert model.stat().st_size == variant.size
        encrypted = [v.content_key_id is not None for v in version.variants]
        assert encrypted == [False, True, False]

    def test_a_sha256_mismatch_names_the_variant_and_leaves_no_rows(
        self, registry: Registry, app_id: str, make_model: Callable[..., Path]
    ) -> None:
        good, bad = make_model("good", seed=1), make_model("bad", seed=2)
        meta = VersionCreate(
            variants=[
                VariantUpload(name="good", format="onnx", precision="fp32"),
                VariantUpload(name="bad", format="onnx", precision="fp32", sha256="ab" * 32),
            ]
        )
        actual = hashlib.sha256(bad.read_bytes()).hexdigest()
        with pytest.raises(IntegrityError) as caught:
            registry.push_version(app_id, "digits", meta, {"good": good, "bad": bad})
        assert str(caught.value).startswith(
            f"sha256 mismatch for variant bad: declared {'ab' * 32}, got {actual}"
        )
        assert _row_counts(registry) == (0, 0)
        assert registry.get_model(app_id, "digits").latest_version is None

    def test_a_failing_package_store_leaves_no_rows(
        self, registry: Registry, app_id: str, push: Push, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        real_put = registry.artifacts.put_file
        calls = []

        def put_file_failing_on_packages(path: Path, **kwargs: object) -> object:
            calls.append(path)
            if path.suffix == ".pmlpkg" and len(calls) > 3:
                raise OSError("disk full")  # injected fault: the second package fails
            return real_put(path, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(registry.artifacts, "put_file", put_file_failing_on_packages)
        with pytest.raises(OSError, match="disk full"):
            push(app_id, variants=("a", "b"))
        assert _row_counts(registry) == (0, 0)

    @pytest.mark.parametrize(
        ("files", "message"),
        [({}, "no file for \\['a'\\]"), ({"a": 1, "zzz": 1}, "undeclared variants \\['zzz'\\]")],
    )
    def test_files_and_variants_must_match_one_to_one(
        self,
        registry: Registry,
        app_id: str,
        make_model: Callable[..., Path],
        files: dict[str, int],
        message: str,
    ) -> None:
        paths = {name: make_model(name) for name in files}
        meta = VersionCreate(variants=[VariantUpload(name="a", format="onnx", precision="fp32")])
        with pytest.raises(InvalidInput, match=message):
            registry.push_version(app_id, "digits", meta, paths)

    def test_pushing_to_an_unknown_model_is_not_found(self, app_id: str, push: Push) -> None:
        with pytest.raises(NotFound):
            push(app_id, model="missing")

    @pytest.mark.parametrize(
        "bad",
        [
            {"variants": []},
            {"variants": [{"name": "a", "format": "onnx", "precision": "fp32"}] * 2},
            {"variants": [{"name": "a", "format": "pt", "precision": "fp32"}]},
            {"variants": [{"name": "a", "format": "onnx", "precision": "fp32", "x": 1}]},
            {"version": 0, "variants": [{"name": "a", "format": "onnx", "precision": "fp32"}]},
        ],
    )
    def test_malformed_version_metadata_is_rejected(self, bad: dict) -> None:
        with pytest.raises(ValidationError):
            VersionCreate.model_validate(bad)


class TestNumbering:
    def test_versions_are_numbered_latest_plus_one(self, app_id: str, push: Push) -> None:
        assert [push(app_id, seed=s).version for s in range(3)] == [1, 2, 3]

    def test_a_given_number_is_kept_and_auto_numbering_continues_after_it(
        self, registry: Registry, app_id: str, push: Push
    ) -> None:
        assert push(app_id, version=7).version == 7
        assert push(app_id, seed=1).version == 8
        assert registry.get_model(app_id, "digits").latest_version == 8

    def test_a_duplicate_version_is_a_conflict(
        self, registry: Registry, app_id: str, push: Push
    ) -> None:
        push(app_id, version=2)
        with pytest.raises(Conflict, match="v2 exists already"):
            push(app_id, version=2, seed=1)
        assert _row_counts(registry) == (1, 1)

    def test_concurrent_pushes_get_distinct_numbers(
        self, registry: Registry, app_id: str, push: Push
    ) -> None:
        results: list[int] = []
        errors: list[BaseException] = []
        barrier = threading.Barrier(4)

        def worker(seed: int) -> None:
            try:
                barrier.wait()
                for round_ in range(2):
                    results.append(push(app_id, seed=seed * 10 + round_).version)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert sorted(results) == list(range(1, 9))


class TestStagesAndDeletion:
    def test_promoting_a_version_archives_the_previous_production_one(
        self, registry: Registry, app_id: str, push: Push
    ) -> None:
        for seed in range(3):
            push(app_id, seed=seed)
        assert registry.set_stage(app_id, "digits", 1, "production").stage == "production"
        registry.set_stage(app_id, "digits", 2, "production")
        stages = {v.version: v.stage for v in registry.list_versions(app_id, "digits").items}
        assert stages == {1: "archived", 2: "production", 3: "candidate"}
        assert registry.get_model(app_id, "digits").production_version == 2

    def test_promoting_the_production_version_again_changes_nothing(
        self, registry: Registry, app_id: str, push: Push
    ) -> None:
        push(app_id)
        registry.set_stage(app_id, "digits", 1, "production")
        assert registry.set_stage(app_id, "digits", 1, "production").stage == "production"

    def test_unknown_stages_and_versions_are_rejected(
        self, registry: Registry, app_id: str, push: Push
    ) -> None:
        push(app_id)
        with pytest.raises(InvalidInput, match="stage must be one of"):
            registry.set_stage(app_id, "digits", 1, "live")
        with pytest.raises(NotFound, match="no version 9"):
            registry.set_stage(app_id, "digits", 9, "archived")

    def test_a_production_version_cannot_be_deleted(
        self, registry: Registry, app_id: str, push: Push
    ) -> None:
        push(app_id)
        registry.set_stage(app_id, "digits", 1, "production")
        with pytest.raises(Conflict, match="archive it instead"):
            registry.delete_version(app_id, "digits", 1)
        assert registry.get_version(app_id, "digits", 1).stage == "production"

    def test_deleting_a_version_removes_it_and_its_package(
        self, registry: Registry, app_id: str, push: Push
    ) -> None:
        version = push(app_id)
        registry.delete_version(app_id, "digits", 1)
        with pytest.raises(NotFound):
            registry.get_version(app_id, "digits", 1)
        with pytest.raises(NotFound):
            registry.get_package(app_id, version.variants[0].package_id)
        assert _row_counts(registry) == (0, 0)

    def test_list_versions_pages_newest_first_and_filters_by_stage(
        self, registry: Registry, app_id: str, push: Push
    ) -> None:
        for seed in range(5):
            push(app_id, seed=seed)
        registry.set_stage(app_id, "digits", 2, "archived")
        registry.set_stage(app_id, "digits", 4, "archived")
        page = registry.list_versions(app_id, "digits", limit=2, offset=1)
        assert ([v.version for v in page.items], page.total) == ([4, 3], 5)
        archived = registry.list_versions(app_id, "digits", stage="archived")
        assert [v.version for v in archived.items] == [4, 2]
        with pytest.raises(InvalidInput):
            registry.list_versions(app_id, "digits", stage="live")


class TestIsolation:
    def test_another_app_can_never_see_or_change_this_apps_objects(
        self, registry: Registry, app_id: str, other_app_id: str, push: Push
    ) -> None:
        version = push(app_id, encrypted=("onnx-fp32",))
        variant = version.variants[0]
        assert variant.content_key_id is not None
        other = other_app_id
        assert registry.list_versions(other, "digits").total == 0
        attempts: list[Callable[[], object]] = [
            lambda: registry.get_version(other, "digits", 1),
            lambda: registry.set_stage(other, "digits", 1, "production"),
            lambda: registry.delete_version(other, "digits", 1),
            lambda: registry.get_package(other, variant.package_id),
            lambda: registry.get_content_key(other, variant.content_key_id or ""),
        ]
        for attempt in attempts:
            with pytest.raises(NotFound):
                attempt()
        assert registry.get_version(app_id, "digits", 1) == version
        assert len(registry.get_content_key(app_id, variant.content_key_id)) == 32

    def test_a_signing_key_id_is_not_a_content_key(self, registry: Registry, app_id: str) -> None:
        with pytest.raises(NotFound):
            registry.get_content_key(app_id, registry.get_app(app_id).signing_key_id)


class TestMasterKey:
    def test_a_different_master_key_is_a_clear_server_error(
        self,
        registry: Registry,
        app_id: str,
        push: Push,
        make_model: Callable[..., Path],
    ) -> None:
        variant = push(app_id, encrypted=("onnx-fp32",)).variants[0]
        other_key = MasterKey.from_b64(base64.b64encode(b"\x07" * 32).decode("ascii"))
        with Registry(registry.database_url, registry.artifacts, other_key) as wrong:
            with pytest.raises(Unavailable, match="same POCKETML_MASTER_KEY"):
                wrong.get_content_key(app_id, variant.content_key_id or "")
            meta = VersionCreate(
                variants=[VariantUpload(name="a", format="onnx", precision="fp32")]
            )
            with pytest.raises(Unavailable, match="same POCKETML_MASTER_KEY"):
                wrong.push_version(app_id, "digits", meta, {"a": make_model("a")})
        assert registry.get_model(app_id, "digits").latest_version == 1
