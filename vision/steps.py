"""Analysis as steps, so that the pose model runs once per round for a whole inference batch.

An analysis that may need pose (the conflict rule's observer) is a generator:
it yields a ``PoseRequest`` where it needs pose and is sent the answer. ``drive``
answers each request at once (one camera: training, tests, ``analyse``);
``drive_all`` advances the analyses of a whole inference batch side by side and
answers each round's requests with one batched call per pose model, so at 492
cameras pose costs a few batched calls per batch, not one call per camera.
Code that never needs pose is a generator that asks nothing (``return x`` then
a bare ``yield``) and runs unchanged under both.
"""
from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np

PoseResults = list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # per window: boxes, keypoints, confidences


class PoseModel(Protocol):
    """What answers pose requests (``vision.conflict.observe.CropPose``)."""

    def run(self, image: np.ndarray, windows: list[tuple[int, int, int, int]]) -> PoseResults: ...

    def run_many(self, requests: list[PoseRequest]) -> list[PoseResults]: ...


@dataclass(frozen=True, slots=True)
class PoseRequest:
    """An observer's need for pose: crop windows (frame pixels, fastest first) of one frame, for this pose model."""

    pose: PoseModel
    image: np.ndarray
    windows: list[tuple[int, int, int, int]]


R = TypeVar("R")
Steps = Generator[PoseRequest, PoseResults, R]  # yields pose requests, is sent their results, returns R


def drive(steps: Steps[R]) -> R:
    """Run ``steps`` to the end, answering each pose request at once."""
    try:
        request = next(steps)
        while True:
            request = steps.send(request.pose.run(request.image, request.windows))
    except StopIteration as done:
        return done.value


def drive_all(all_steps: list[Steps[Any]]) -> list[Any]:
    """Run many ``steps`` side by side; each round's pose requests go to their pose model as one batched call.

    Each generator sees its own requests answered in order, so a camera's analysis is the same as with ``drive``.
    One that raises gets its exception as its result and the others go on (one camera must not stop the rest).
    """
    results: list[Any] = [None] * len(all_steps)
    pending: dict[int, PoseRequest] = {}

    def advance(i: int, answer: PoseResults | None) -> None:
        try:
            pending[i] = next(all_steps[i]) if answer is None else all_steps[i].send(answer)
        except StopIteration as done:
            results[i] = done.value
        except Exception as err:  # noqa: BLE001  (handed to the caller, per generator)
            results[i] = err

    for i in range(len(all_steps)):
        advance(i, None)
    while pending:
        by_model: dict[int, list[int]] = {}
        for i, req in pending.items():
            by_model.setdefault(id(req.pose), []).append(i)
        asked, answers = dict(pending), {}
        pending.clear()
        for idx in by_model.values():
            pose = asked[idx[0]].pose
            answers.update(zip(idx, pose.run_many([asked[i] for i in idx])))
        for i in sorted(answers):
            advance(i, answers[i])
    return results
