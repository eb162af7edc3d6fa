"""Execution providers: CPU images ask for CPU; a GPU build asks for CUDA and says so when
the session falls back to the CPU."""

from __future__ import annotations

import logging
from pathlib import Path

import onnxruntime as ort
import pytest

from layers import providers
from layers.model import load_model


def test_cpu_build_asks_for_the_cpu_provider_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ort, "get_available_providers", lambda: [providers.CPU])
    assert providers.execution_providers() == [providers.CPU]


def test_gpu_build_asks_for_cuda_first_and_preloads_its_libraries(monkeypatch: pytest.MonkeyPatch) -> None:
    # given an onnxruntime-gpu build (the GPU SageMaker image)
    loaded = []
    monkeypatch.setattr(ort, "get_available_providers", lambda: [providers.CUDA, providers.CPU])
    monkeypatch.setattr(ort, "preload_dlls", lambda: loaded.append(True), raising=False)
    # then CUDA comes first, with the CUDA/cuDNN wheels' libraries loaded
    assert providers.execution_providers() == [providers.CUDA, providers.CPU]
    assert loaded == [True]


def test_fallback_to_cpu_is_logged(monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path,
                                   caplog: pytest.LogCaptureFixture) -> None:
    # given CUDA requested where no GPU serves it (onnxruntime runs the session on the CPU)
    monkeypatch.setattr(providers, "execution_providers", lambda: [providers.CUDA, providers.CPU])
    monkeypatch.setattr("layers.model.execution_providers", providers.execution_providers)
    real = ort.InferenceSession

    def cpu_session(path, sess_options=None, providers=None):
        return real(path, sess_options=sess_options, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(ort, "InferenceSession", cpu_session)
    # when the model loads
    with caplog.at_level(logging.WARNING, logger="modelfn.providers"):
        model = load_model(tiny_model_dir)
    # then it serves, and the log says it runs on the CPU
    assert model.session.get_providers() == ["CPUExecutionProvider"]
    assert "CUDAExecutionProvider was requested but is not usable" in caplog.text


def test_cpu_session_does_not_warn(tiny_model_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="modelfn.providers"):
        load_model(tiny_model_dir)
    assert "CUDAExecutionProvider" not in caplog.text
