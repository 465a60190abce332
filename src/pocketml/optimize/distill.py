"""Knowledge distillation: a large teacher trains a small student with softened targets.

The student learns from the labels and from the teacher's class probabilities softened
by a temperature ``T`` (Hinton et al., 2015)::

    loss = alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, labels)

where ``student_T = softmax(student_logits / T)`` (likewise for the teacher). ``T^2``
keeps the soft term's gradients on the scale of the hard term's.

The schedule is what makes it work ("consistent teaching", Beyer et al., 2022). With
``consistent=True`` (the default) every epoch shows the student every training row twice:
as it is and as a fresh augmented copy (when the config has augmentations), and the
teacher labels the exact view the student sees; the schedule is long ("patient": twice
the config's epochs unless ``epochs`` is given) and keeps the epoch with the lowest
distillation loss on the validation split, the objective the student is trained on, not
the lowest validation cross-entropy (a student matching softened targets is less
confident, so its cross-entropy stops improving long before it stops learning from the
teacher), without stopping early. The trainer's own schedule (half of each epoch
augmented, early stopping on the validation cross-entropy) is ``consistent=False``; on
the demo task it made the student *worse* than the student alone (docs/compression.md).
With ``baseline=True`` the same student is also trained alone with the same seed and
config, which is the comparison that matters.

>>> teacher = train(splits, "cnn-large", config=config).model  # doctest: +SKIP
>>> result = Distiller(teacher, temperature=4, alpha=0.7).train("cnn-small", splits, config)
>>> result.metrics["accuracy"], result.alone_metrics["accuracy"]  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import time
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

from pocketml.data import Dataset, Splits
from pocketml.data.augment import augment_dataset
from pocketml.errors import InvalidInput, MissingDependencyError
from pocketml.train.architectures import TORCH_ARCHITECTURES, build_torch_model
from pocketml.train.model import TrainedModel
from pocketml.train.record import RunRecord, git_state
from pocketml.train.trainer import (
    TrainConfig,
    TrainResult,
    evaluate,
    fit_normalization,
    model_inputs,
    train,
)

__all__ = ["DistillResult", "Distiller", "student_cnn"]


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise MissingDependencyError("torch", "build", "for knowledge distillation") from exc
    return torch


def student_cnn(sample_shape: tuple[int, ...], num_classes: int, *, width: int = 8) -> Any:
    """A ``cnn-small``-shaped CNN with a configurable width (``cnn-small`` is width 16).

    Three Conv-BN-ReLU blocks of ``width``, ``2 * width`` and ``2 * width`` filters, a max
    pool after the first, global average pooling and a linear classifier: the same plain
    layers every mobile converter supports.

    Args:
        sample_shape: one image's shape (C, H, W).
        num_classes: number of output logits.
        width: filters of the first block, >= 1.

    Returns:
        A freshly initialised ``torch.nn.Sequential`` returning logits.

    Raises:
        InvalidInput: ``width`` < 1 or the samples are not images.
    """
    if not isinstance(width, int) or width < 1:
        raise InvalidInput(f"width must be an int >= 1; got {width!r}. Try width=8.")
    if len(sample_shape) != 3:
        raise InvalidInput(
            f"student_cnn needs image samples (C, H, W); got shape {sample_shape}. "
            "Use the 'mlp' architecture as the student for tables."
        )
    nn = _torch().nn

    def block(c_in: int, c_out: int) -> list[Any]:
        return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]

    return nn.Sequential(
        *block(sample_shape[0], width),
        nn.MaxPool2d(2),
        *block(width, 2 * width),
        *block(2 * width, 2 * width),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2 * width, num_classes),
    )


@dataclass(frozen=True)
class DistillResult:
    """A distilled student and the numbers that judge it.

    Attributes:
        model: the distilled student.
        metrics: the distilled student's metrics on the test set.
        teacher_metrics: the teacher's metrics on the same test set.
        alone_metrics: the same student trained alone (same seed, epochs, data), or None
            when no baseline was asked for.
        alone_model: that baseline student, or None.
        temperature: the softening temperature T.
        alpha: the weight of the soft (teacher) term.
        test_set: name of the dataset the metrics were measured on.
        record: the distilled student's run record.
    """

    model: TrainedModel
    metrics: dict[str, Any]
    teacher_metrics: dict[str, Any]
    alone_metrics: dict[str, Any] | None
    alone_model: TrainedModel | None
    temperature: float
    alpha: float
    test_set: str
    record: RunRecord

    @property
    def gap_closed(self) -> float | None:
        """Share of the teacher-vs-student-alone accuracy gap the distillation closed.

        Returns:
            ``(distilled - alone) / (teacher - alone)``; None without a baseline or when
            the teacher is not more accurate than the student alone (no gap to close).
        """
        if self.alone_metrics is None:
            return None
        alone = float(self.alone_metrics["accuracy"])
        gap = float(self.teacher_metrics["accuracy"]) - alone
        if gap <= 0:
            return None
        return (float(self.metrics["accuracy"]) - alone) / gap

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (accuracies, macro-F1, parameter counts, settings)."""

        def brief(metrics: dict[str, Any] | None) -> dict[str, Any] | None:
            if metrics is None:
                return None
            return {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"]}

        return {
            "temperature": self.temperature,
            "alpha": self.alpha,
            "test_set": self.test_set,
            "student_parameters": self.model.num_parameters(),
            "distilled": brief(self.metrics),
            "alone": brief(self.alone_metrics),
            "teacher": brief(self.teacher_metrics),
            "gap_closed": self.gap_closed,
        }


class Distiller:
    """Trains students from a fixed teacher.

    Args:
        teacher: a trained PyTorch model (e.g. ``cnn-large``); it is never updated.
        temperature: softening temperature T > 0 (typical: 2-8).
        alpha: weight of the soft term in [0, 1]; 0 is plain cross-entropy training (the
            student is then trained by ``pocketml.train.train``, bit for bit).
        consistent: the consistent-teaching schedule (every row clean and freshly
            augmented each epoch, early stopping on the validation distillation loss);
            False uses the trainer's schedule (kept to measure the difference).
        epochs: the consistent schedule's epochs (default: twice ``config.epochs``).

    Raises:
        InvalidInput: a non-PyTorch teacher, or parameters out of range.
    """

    def __init__(
        self,
        teacher: TrainedModel,
        *,
        temperature: float = 4.0,
        alpha: float = 0.7,
        consistent: bool = True,
        epochs: int | None = None,
    ):
        if teacher.framework != "pytorch":
            raise InvalidInput(
                f"the teacher must be a PyTorch model; got a {teacher.framework} "
                f"{teacher.architecture}. Train one with train(data, 'cnn-large')."
            )
        if not temperature > 0:
            raise InvalidInput(f"temperature must be > 0; got {temperature}. Try 4.")
        if not 0.0 <= alpha <= 1.0:
            raise InvalidInput(f"alpha must be in [0, 1]; got {alpha}. Try 0.7.")
        if epochs is not None and (
            isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1
        ):
            raise InvalidInput(f"epochs must be an int >= 1 or None; got {epochs!r}. Try 60.")
        self.teacher = teacher
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        self.consistent = bool(consistent)
        self.epochs = epochs

    def loss(self, student_logits: Any, targets: Any, x_batch: Any) -> Any:
        """The distillation loss of one batch (a ``pocketml.train.trainer.LossFn``).

        Args:
            student_logits: the student's logits for ``x_batch``, shape (N, classes).
            targets: class ids, shape (N,).
            x_batch: the normalized (and augmented) inputs both models see.

        Returns:
            A scalar tensor: ``alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE``.
        """
        torch = _torch()
        functional = torch.nn.functional
        teacher = self.teacher.estimator.eval()
        with torch.no_grad():
            teacher_logits = teacher(x_batch)
        t = self.temperature
        soft = functional.kl_div(
            functional.log_softmax(student_logits / t, dim=-1),
            functional.log_softmax(teacher_logits / t, dim=-1),
            reduction="batchmean",
            log_target=True,
        )
        hard = functional.cross_entropy(student_logits, targets)
        return self.alpha * t * t * soft + (1.0 - self.alpha) * hard

    def train(
        self,
        student: str | Any,
        splits: Splits,
        config: TrainConfig | None = None,
        *,
        baseline: bool = True,
        test: Dataset | None = None,
    ) -> DistillResult:
        """Train ``student`` from the teacher (and, with ``baseline``, alone too).

        Args:
            student: a PyTorch architecture name ("cnn-small", "mlp") or an untrained
                ``torch.nn.Module`` returning logits (e.g. :func:`student_cnn`); a module
                is copied, never trained in place.
            splits: the data; the teacher's normalization must match these splits'.
            config: hyper-parameters, seed and augmentations (shared by both students).
            baseline: also train the student alone, with the same seed and epochs.
            test: the dataset to report metrics on (default ``splits.test``), e.g. an
                augmented copy of it built with a fixed seed.

        Returns:
            A DistillResult.

        Raises:
            InvalidInput: unknown architecture, or a teacher that does not fit the data.
        """
        config = config or TrainConfig()
        self._check_teacher(splits)
        if isinstance(student, str) and student not in TORCH_ARCHITECTURES:
            raise InvalidInput(
                f"student must be one of {', '.join(TORCH_ARCHITECTURES)} or a torch module; "
                f"got {student!r}. Use student_cnn(...) for a narrower CNN."
            )
        test_set = test if test is not None else splits.test

        name = self.teacher.schema.name  # the consistent schedule reuses the teacher's schema

        def fit(loss_fn: Any) -> TrainResult:
            if isinstance(student, str):
                return train(splits, student, config=config, loss_fn=loss_fn, model_name=name)
            module = copy.deepcopy(student)
            return train(splits, model=module, config=config, loss_fn=loss_fn, model_name=name)

        if self.alpha == 0.0 or not self.consistent:
            distilled = fit(self.loss if self.alpha > 0 else None)
        else:
            distilled = self._train_consistent(student, splits, config)
        settings = {
            "distilled_from": self.teacher.architecture,
            "temperature": self.temperature,
            "alpha": self.alpha,
            "consistent": self.consistent,
        }
        distilled.model.params.update(settings)
        distilled.record.params.update(settings)
        alone = fit(None).model if baseline else None
        return DistillResult(
            model=distilled.model,
            metrics=evaluate(distilled.model, test_set),
            teacher_metrics=evaluate(self.teacher, test_set),
            alone_metrics=evaluate(alone, test_set) if alone is not None else None,
            alone_model=alone,
            temperature=self.temperature,
            alpha=self.alpha,
            test_set=test_set.name,
            record=distilled.record,
        )

    def _train_consistent(
        self, student: str | Any, splits: Splits, config: TrainConfig
    ) -> TrainResult:
        """Train the student on clean + freshly augmented rows; keep the best val KD loss."""
        torch = _torch()
        started, t0 = RunRecord.now(), time.perf_counter()
        schema = self.teacher.schema  # same data, same normalization (checked)
        shape, classes = splits.train.sample_shape, splits.train.num_classes
        torch.manual_seed(config.seed)
        if isinstance(student, str):
            module = build_torch_model(student, shape, classes)
        else:
            module = copy.deepcopy(student)
        architecture = student if isinstance(student, str) else "custom"
        model = TrainedModel("pytorch", architecture, module, schema)
        x_clean = model_inputs(model, splits.train)
        y_clean = splits.train.labels
        x_val = torch.from_numpy(model_inputs(model, splits.validation))
        y_val = torch.from_numpy(splits.validation.labels)
        rng = np.random.default_rng(config.seed)
        optimizer = torch.optim.AdamW(
            module.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )
        epochs = self.epochs or 2 * config.epochs
        best_loss, best_state, best_epoch, epoch = float("inf"), None, 0, 0
        for epoch in range(1, epochs + 1):
            module.train()
            x_epoch, y_epoch = x_clean, y_clean
            if config.augmentations:
                seed = int(rng.integers(2**31))
                augmented = augment_dataset(splits.train, config.augmentations, seed=seed)
                x_aug = model_inputs(model, augmented)
                x_epoch = np.concatenate([x_clean, x_aug])
                y_epoch = np.concatenate([y_clean, y_clean])
            order = rng.permutation(len(x_epoch))
            for start in range(0, len(order), config.batch_size):
                idx = order[start : start + config.batch_size]
                if len(idx) < 2:  # BatchNorm needs two samples
                    continue
                optimizer.zero_grad()
                x_batch = torch.from_numpy(x_epoch[idx])
                loss = self.loss(module(x_batch), torch.from_numpy(y_epoch[idx]), x_batch)
                loss.backward()
                optimizer.step()
            module.eval()
            with torch.no_grad():
                val_loss = float(self.loss(module(x_val), y_val, x_val))
            if val_loss < best_loss - 1e-4:  # no early stop: a KD student learns for long
                best_loss, best_epoch = val_loss, epoch
                best_state = copy.deepcopy(module.state_dict())
        if best_state is not None:
            module.load_state_dict(best_state)
        module.eval()
        model.params = {
            **config.to_dict(),
            "epochs": epochs,
            "epochs_run": epoch,
            "best_epoch": best_epoch,
            "best_val_distill_loss": best_loss,
        }
        test_metrics = evaluate(model, splits.test)
        val_metrics = evaluate(model, splits.validation)
        parts = (splits.train, splits.validation, splits.test)
        record = RunRecord(
            run_id=uuid.uuid4().hex[:12],
            model=schema.name,
            architecture=architecture,
            framework="pytorch",
            params=model.params | {"num_parameters": model.num_parameters()},
            metrics=test_metrics,
            validation_metrics=val_metrics,
            dataset={
                "name": splits.train.name.split(":")[0],
                "fingerprint": "splits:" + ",".join(part.fingerprint for part in parts),
                "split_seed": splits.seed,
                "sizes": splits.sizes(),
            },
            started_at=started,
            duration_s=round(time.perf_counter() - t0, 3),
            git=git_state(),
        )
        return TrainResult(model, test_metrics, val_metrics, splits, record)

    def _check_teacher(self, splits: Splits) -> None:
        teacher = self.teacher
        expected = fit_normalization(splits.train)
        if teacher.sample_shape != splits.train.sample_shape:
            raise InvalidInput(
                f"the teacher takes samples of shape {teacher.sample_shape}; the data has "
                f"{splits.train.sample_shape}. Train the teacher on the same data."
            )
        if len(teacher.schema.labels) != splits.train.num_classes:
            raise InvalidInput(
                f"the teacher predicts {len(teacher.schema.labels)} classes; the data has "
                f"{splits.train.num_classes}. Train the teacher on the same data."
            )
        if teacher.schema.input.normalization != expected:
            raise InvalidInput(
                "the teacher normalizes inputs differently from a student trained on these "
                f"splits (teacher {teacher.schema.input.normalization}, student {expected}); "
                "train the teacher on the same training split."
            )
