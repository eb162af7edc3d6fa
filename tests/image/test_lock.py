"""The locked image closure: current, complete, binary-only for both architectures."""

from __future__ import annotations

import socket

import pytest

from infra.image import lock

pytestmark = pytest.mark.image


def _pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        return True
    except OSError:
        return False


needs_pypi = pytest.mark.skipif(not _pypi_reachable(),
                                reason="pypi.org:443 is unreachable; the lock checks need PyPI")


def test_lock_leaves_out_what_the_base_image_provides() -> None:
    # given the committed locks / then nothing shadows the base's boto3 closure
    for path in (lock.LOCK, lock.GPU_LOCK, lock.GENERATION_LOCK, lock.GPU_GENERATION_LOCK):
        pins = lock.parse_lock(path.read_text())
        assert not lock.BASE_PROVIDED & set(pins), path.name
        assert all(version and hashes for version, hashes in pins.values()), path.name


def test_lock_pins_every_requirement_at_its_version() -> None:
    # the lock follows requirements.txt (run `make lock` after changing it); the GPU lock
    # carries the same pins with onnxruntime-gpu in place of onnxruntime
    cpu, gpu = (lock.parse_lock(p.read_text()) for p in (lock.LOCK, lock.GPU_LOCK))
    for line in lock.requirement_lines() + lock.requirement_lines(lock.NODEPS_REQUIREMENTS):
        name, version = line.split("==")
        name = lock.normalize(name.split("[")[0])
        assert cpu[name][0] == version, f"{name}: lock is stale, run `make lock`"
        assert gpu["onnxruntime-gpu" if name == "onnxruntime" else name][0] == version


@needs_pypi
@pytest.mark.parametrize("path", [lock.LOCK, lock.GENERATION_LOCK], ids=["runtime", "generation"])
@pytest.mark.parametrize("arch", lock.ARCHES)
def test_every_pin_resolves_to_a_binary_wheel_with_a_locked_hash(arch: str, path) -> None:
    # when pip downloads the lock as the image installs it (binary only, hashes required)
    proc = lock.pip_download(["--no-deps", "--require-hashes", "-r", str(path)],
                             arch=arch, dest=lock.wheelhouse(arch))
    # then every pin has a cp313 manylinux_2_34-compatible wheel for this architecture
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheels = {lock.normalize(p.name.split("-")[0]) for p in lock.wheelhouse(arch).glob("*.whl")}
    assert set(lock.parse_lock(path.read_text())) <= wheels


def test_the_generation_layer_lock_pins_its_requirements_and_repeats_nothing_of_the_runtime() -> None:
    # the generative image's layer is hash-locked like the runtime (no --no-deps install of an
    # unhashed onnxruntime-genai or Jinja2), and adds only what the runtime lock does not pin
    runtime, generation = (lock.parse_lock(p.read_text()) for p in (lock.LOCK, lock.GENERATION_LOCK))
    for line in lock.requirement_lines(lock.GENERATION_REQUIREMENTS):
        name, version = line.split("==")
        assert generation[lock.normalize(name.split("[")[0])][0] == version, f"{name}: run `make lock`"
    assert {"cryptography", "cffi"} <= set(generation)  # pyjwt[crypto]'s closure: RS256/ES256
    assert not set(runtime) & set(generation)



def test_the_gpu_generation_lock_swaps_genai_for_its_cuda_build_over_the_gpu_locks_cuda_13() -> None:
    # the GPU SageMaker image's generation layer: onnxruntime-genai-cuda at genai's pinned version,
    # the rest of the generation layer as on the CPU, nothing the GPU runtime lock already pins
    gpu, cpu_layer, gpu_layer = (lock.parse_lock(p.read_text())
                                 for p in (lock.GPU_LOCK, lock.GENERATION_LOCK, lock.GPU_GENERATION_LOCK))
    assert gpu_layer["onnxruntime-genai-cuda"][0] == cpu_layer["onnxruntime-genai"][0]
    assert "onnxruntime-genai" not in gpu_layer and not set(gpu) & set(gpu_layer)
    assert set(cpu_layer) - {"onnxruntime-genai"} <= set(gpu_layer)
    # libonnxruntime-genai-cuda.so 0.18 links libcublas(Lt).so.13, libcudart.so.13, libcufft.so.12 and
    # libcurand.so.10 (readelf -d of the wheel); the GPU lock's CUDA wheels carry those majors
    majors = {name: version.split(".")[0] for name, (version, _) in gpu.items()}
    assert (majors["nvidia-cublas"], majors["nvidia-cuda-runtime"], majors["nvidia-cufft"],
            majors["nvidia-curand"]) == ("13", "13", "12", "10")


@needs_pypi
def test_the_gpu_generation_lock_resolves_to_binary_wheels_with_locked_hashes() -> None:
    arch = lock.GPU_ARCHES[0]
    proc = lock.pip_download(["--no-deps", "--require-hashes", "-r", str(lock.GPU_GENERATION_LOCK)],
                             arch=arch, dest=lock.wheelhouse(arch))
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheels = {lock.normalize(p.name.split("-")[0]) for p in lock.wheelhouse(arch).glob("*.whl")}
    assert {n.replace("-", "_") for n in lock.parse_lock(lock.GPU_GENERATION_LOCK.read_text())} <= \
        {w.replace("-", "_") for w in wheels}
