"""What travels into a model's training image: the user's code, and the entry point as the
runner sees it under /opt/ml/code (infra/targets/staging.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.targets import staging


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_a_module_entry_point_brings_its_top_level_package_source_only(tmp_path: Path) -> None:
    _tree(tmp_path, {"pkg/__init__.py": "", "pkg/train.py": "def train(d, h, m): ...",
                     "pkg/config.yaml": "a: 1", "pkg/data/big.npz": "x" * 100,
                     "pkg/__pycache__/train.cpython-311.pyc": "", "other.py": ""})
    files = staging.training_code_files(catalog_root=tmp_path, entry_point="pkg.train:train")
    assert sorted(files) == ["pkg/__init__.py", "pkg/config.yaml", "pkg/train.py"]


def test_a_script_entry_point_brings_the_scripts_beside_it(tmp_path: Path) -> None:
    _tree(tmp_path, {"jobs/train.py": "", "jobs/helpers.py": "", "jobs/requirements.txt": "",
                     "jobs/rows.csv": "1,2"})
    script = str(tmp_path / "jobs" / "train.py")  # the catalog resolves scripts to absolute paths
    files = staging.training_code_files(catalog_root=tmp_path, entry_point=f"{script}:fit")
    assert sorted(files) == ["jobs/helpers.py", "jobs/requirements.txt", "jobs/train.py"]
    assert staging.image_entry_point(f"{script}:fit", tmp_path) == "jobs/train.py:fit"
    assert staging.image_entry_point("pkg.train:train", tmp_path) == "pkg.train:train"


def test_missing_code_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="put the training code next to the catalog"):
        staging.training_code_files(catalog_root=tmp_path, entry_point="absent.mod:train")


def test_the_image_context_holds_the_runner_and_the_code_under_code(tmp_path: Path) -> None:
    src = _tree(tmp_path / "cat", {"trainer.py": "def train(d, h, m): ..."})
    code = staging.training_code_files(catalog_root=src, entry_point="trainer:train")
    ctx = staging.stage_training_image(dest=tmp_path / "ctx", code=code)
    assert (ctx / "code" / "trainer.py").read_text() == "def train(d, h, m): ..."
    assert (ctx / "functions" / "training" / "train.py").is_file()
    assert (ctx / "layers" / "names.py").is_file() and (ctx / "Dockerfile").is_file()
    assert "COPY code/ /opt/ml/code/" in (ctx / "Dockerfile").read_text()


def test_the_build_source_takes_a_saved_model_directory_whole(tmp_path: Path) -> None:
    cat = _tree(tmp_path / "cat", {"models.yaml": "models: []", "hf/config.json": "{}",
                                   "hf/tokenizer/vocab.txt": "a", "val.npz": "x"})
    out = staging.stage_build_source(dest=tmp_path / "src", catalog_path=cat / "models.yaml",
                                     data_files=[cat / "hf", cat / "val.npz"])
    assert (out / "hf" / "config.json").is_file() and (out / "hf" / "tokenizer" / "vocab.txt").is_file()
    assert (out / "val.npz").is_file() and (out / "infra" / "targets" / "staging.py").is_file()
