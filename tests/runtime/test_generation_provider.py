"""A generative model runs on the provider its setting names (``MODELFN_EXECUTION_PROVIDER``),
whatever its folder's genai_config says, and a CUDA request that cannot be met fails the start
with the reason instead of running on the CPU unnoticed (layers/generation/provider.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from layers import names
from layers.generation import provider
from layers.manifest import ManifestError


class FakeConfig:
    """og.Config's provider calls, recorded."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def clear_providers(self) -> None:
        self.calls.append(("clear",))

    def append_provider(self, name: str) -> None:
        self.calls.append(("append", name))


class FakeOg:
    """onnxruntime-genai as far as open_model uses it: a CUDA build in ``package`` whose Model
    reports ``device`` (or raises ``error``)."""

    __version__ = "0.18.0"

    def __init__(self, package: Path, *, device: str = "CUDA", error: Exception | None = None,
                 cuda_library: bool = True) -> None:
        package.mkdir(parents=True, exist_ok=True)
        self.__file__ = str(package / "__init__.py")
        if cuda_library:
            (package / provider.CUDA_LIBRARY).write_bytes(b"")
        self.device, self.error = device, error

    def Model(self, config):  # onnxruntime-genai's name
        if self.error is not None:
            raise self.error
        return type("Model", (), {"device_type": self.device})()


@pytest.fixture
def cuda_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    """onnxruntime as the GPU image has it (CUDAExecutionProvider, its libraries preloaded)."""
    from layers import providers

    monkeypatch.setattr(providers, "execution_providers", lambda: [providers.CUDA, providers.CPU])


@pytest.mark.parametrize(("raw", "expected"), [(None, "cpu"), ("", "cpu"), ("cpu", "cpu"), ("CUDA", "cuda")])
def test_the_setting_names_the_provider_and_unset_is_the_cpu(monkeypatch, raw, expected) -> None:
    if raw is None:
        monkeypatch.delenv(names.ENV_EXECUTION_PROVIDER, raising=False)
    else:
        monkeypatch.setenv(names.ENV_EXECUTION_PROVIDER, raw)
    assert provider.requested() == expected


def test_an_unknown_provider_is_refused_naming_the_values(monkeypatch) -> None:
    monkeypatch.setenv(names.ENV_EXECUTION_PROVIDER, "gpu")
    with pytest.raises(ManifestError, match="'gpu' is not one of cpu, cuda"):
        provider.requested()


def test_cpu_clears_the_folders_providers_so_a_cuda_build_runs_on_the_cpu(tmp_path) -> None:
    config, og = FakeConfig(), FakeOg(tmp_path / "og", device="CPU")
    assert provider.open_model(og, config, "cpu", tmp_path).device_type == "CPU"
    assert config.calls == [("clear",)]


def test_cuda_appends_cuda_after_clearing_and_opens_on_the_gpu(tmp_path, cuda_runtime) -> None:
    config, og = FakeConfig(), FakeOg(tmp_path / "og", device="CUDA")
    assert provider.open_model(og, config, "cuda", tmp_path).device_type == "CUDA"
    assert config.calls == [("clear",), ("append", "cuda")]


def test_cuda_that_lands_on_the_cpu_is_an_error_not_a_silent_fallback(tmp_path, cuda_runtime) -> None:
    og = FakeOg(tmp_path / "og", device="CPU")
    with pytest.raises(provider.ProviderUnavailable, match="opened the model on CPU"):
        provider.open_model(og, FakeConfig(), "cuda", tmp_path)


def test_cuda_without_a_gpu_or_driver_says_so_with_genais_own_reason(tmp_path, cuda_runtime) -> None:
    og = FakeOg(tmp_path / "og", error=RuntimeError("CUDA failure 100: no CUDA-capable device is detected"))
    with pytest.raises(provider.ProviderUnavailable, match="no CUDA-capable device") as err:
        provider.open_model(og, FakeConfig(), "cuda", tmp_path)
    assert f"{names.ENV_EXECUTION_PROVIDER}=cpu" in str(err.value)  # and how to run on the CPU instead


def test_cuda_needs_onnxruntime_gpu_beside_genai_cuda(tmp_path, monkeypatch) -> None:
    from layers import providers

    monkeypatch.setattr(providers, "execution_providers", lambda: [providers.CPU])
    with pytest.raises(provider.ProviderUnavailable, match="installs onnxruntime-gpu"):
        provider.open_model(FakeOg(tmp_path / "og"), FakeConfig(), "cuda", tmp_path)


def test_cuda_on_this_hosts_cpu_build_of_genai_names_the_gpu_package() -> None:
    import onnxruntime_genai as og

    if (Path(og.__file__).parent / provider.CUDA_LIBRARY).is_file():
        pytest.skip("this host has onnxruntime-genai-cuda")
    with pytest.raises(provider.ProviderUnavailable, match="CPU build .*onnxruntime-genai-cuda"):
        provider.prepare_cuda(og)


def test_the_folder_says_what_it_was_built_for(tmp_path) -> None:
    options = {"cpu": [], "cuda": [{"cuda": {"enable_cuda_graph": "0"}}]}
    for built, opts in options.items():
        folder = tmp_path / built
        folder.mkdir()
        (folder / "genai_config.json").write_text(json.dumps(
            {"model": {"decoder": {"session_options": {"provider_options": opts}}}}))
        assert provider.built_for(folder, {}) == built
        assert provider.built_for(folder, {"execution_provider": "cuda"}) == "cuda"  # the manifest first
