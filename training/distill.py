"""Knowledge distillation from a trained network: its class probabilities join the labels as targets.

The supernet's paths share weights and end at a training-loss floor below what one path trained alone reaches
(``docs/supernet.md``). A teacher trained alone gives every path the same soft targets, which carry how
confusable the classes of each image are. At temperature 1 the distillation loss is the cross-entropy with the
teacher's probabilities, so ``(1 - w) * CE(labels) + w * CE(teacher)`` is one cross-entropy against the mixed
targets :func:`mix_targets` makes: the training step keeps its one loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mxnet as mx
import numpy as np

from spos_deploy.errors import BadInputError
from spos_deploy.model_spec import load_spec
from spos_deploy.nets.weights import load_subnet
from spos_deploy.space import SearchSpace


def mix_targets(labels: np.ndarray, teacher: np.ndarray, weight: float) -> np.ndarray:
    """``(1 - weight) * labels + weight * teacher``: both rows of probabilities, so the result is one too."""
    if labels.shape != teacher.shape:
        raise ValueError(f"targets {labels.shape} and teacher probabilities {teacher.shape} differ")
    return ((1.0 - weight) * labels + weight * teacher).astype(np.float32)


@dataclass
class Teacher:
    """A trained fixed network, run in inference mode on each training batch."""

    net: Any
    ctx: mx.Context

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities for a batch (NCHW float32), BN with its running statistics."""
        return mx.nd.softmax(self.net(mx.nd.array(x, ctx=self.ctx)), axis=1).asnumpy()


def teacher_files(path: str | Path) -> tuple[Path, Path]:
    """The model.json and model.params of ``path``: a ``spos-train subnet`` run folder, or its model.json."""
    p = Path(path)
    if not p.exists():
        raise BadInputError(f"--teacher {path}: no such folder (give the run folder of a spos-train subnet run)")
    model_json = p / "model.json" if p.is_dir() else p
    params = model_json.with_name("model.params")
    for f in (model_json, params):
        if not f.is_file():
            raise BadInputError(
                f"--teacher {path}: {f} is missing (give the run folder of a finished spos-train subnet run)"
            )
    return model_json, params


def load_teacher(path: str | Path, space: SearchSpace, ctx: mx.Context) -> Teacher:
    """The teacher network of ``path``, refused when its images or classes are not the student's."""
    model_json, params = teacher_files(path)
    spec = load_spec(model_json)
    mine, theirs = (space.input_size, space.num_classes), (spec.space.input_size, spec.space.num_classes)
    if mine != theirs:
        raise BadInputError(
            f"--teacher {path}: made for {theirs[0]} px images and {theirs[1]} classes, the supernet has "
            f"{mine[0]} px and {mine[1]} classes"
        )
    net = load_subnet(spec, params, ctx)
    net.hybridize(static_alloc=True, static_shape=True)
    return Teacher(net, ctx)
