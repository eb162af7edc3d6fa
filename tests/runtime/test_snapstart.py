"""SnapStart hooks: priming pays the first inference before the snapshot and never fails it;
a restored environment gets its own random state and reports its cold start."""

from __future__ import annotations

import random
import sys

import numpy as np

from layers import snapstart
from layers.model import load_model


class _Log:
    def __init__(self) -> None:
        self.records: list[tuple[str, str]] = []

    def info(self, msg, **_):
        self.records.append(("info", msg))

    def warning(self, msg, **_):
        self.records.append(("warning", msg))


def test_primer_follows_the_shapes_the_build_measured_with(tiny_model_dir):
    model = load_model(tiny_model_dir)
    assert snapstart.primer_inputs(model)["x"].shape == (1, 4)
    object.__setattr__(model.manifest, "extra", {snapstart.EXAMPLE_SHAPES_KEY: {"x": [2, 4]}})
    assert snapstart.primer_inputs(model)["x"].shape == (2, 4)


def test_prime_runs_the_model_once(tiny_model_dir):
    log = _Log()
    assert snapstart.prime(load_model(tiny_model_dir), log) is True
    assert log.records[0] == ("info", "snapstart: primed before snapshot")


def test_a_model_that_refuses_the_primer_is_logged_not_fatal(tiny_model_dir):
    # given a manifest whose recorded example shape the model rejects
    model = load_model(tiny_model_dir)
    object.__setattr__(model.manifest, "extra", {snapstart.EXAMPLE_SHAPES_KEY: {"x": [1, 7]}})
    log = _Log()
    # when / then: priming reports it and the snapshot goes on
    assert snapstart.prime(model, log) is False
    assert log.records[0][0] == "warning"


def test_restore_reseeds_randomness_and_resets_cold_start_flags():
    from aws_lambda_powertools.metrics.provider import cold_start

    random.seed(7)
    np.random.seed(7)
    snapshot_state = (random.random(), np.random.random())
    random.seed(7)
    np.random.seed(7)
    cold_start.is_cold_start = False
    sys.modules["aws_lambda_powertools.logging.logger"].is_cold_start = False
    called = []
    snapstart.on_restore(lambda: called.append(True))
    try:
        snapstart.reset_after_restore()
    finally:
        snapstart._restore_callbacks.clear()
    assert (random.random(), np.random.random()) != snapshot_state
    assert cold_start.is_cold_start is True
    assert sys.modules["aws_lambda_powertools.logging.logger"].is_cold_start is True
    assert called == [True]
