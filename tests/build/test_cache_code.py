"""The build cache key follows the code that shapes an artifact, not only a hand-bumped version."""

from pathlib import Path

from infra.build import artifact


def test_editing_shaping_code_changes_the_digest(tmp_path: Path, monkeypatch) -> None:
    """A processing-format change in the code must rebuild: a reused artifact written by older
    code can fail at the runtime's init (seen with the image lane's cache)."""
    (tmp_path / "infra" / "build").mkdir(parents=True)
    (tmp_path / "layers").mkdir()
    stage = tmp_path / "infra" / "build" / "stage.py"
    stage.write_text("FORMAT = 1\n")
    (tmp_path / "layers" / "manifest.py").write_text("READ = 1\n")
    monkeypatch.setattr(artifact, "_REPO", tmp_path)
    monkeypatch.setattr(artifact, "SHAPING_CODE", ("infra/build", "layers/manifest.py"))
    digest = artifact.code_digest.__wrapped__
    before = digest()
    assert digest() == before
    stage.write_text("FORMAT = 2\n")
    assert digest() != before


def test_the_real_digest_covers_the_build_and_the_runtime_reader() -> None:
    for rel in artifact.SHAPING_CODE:
        assert (artifact._REPO / rel).exists(), rel
