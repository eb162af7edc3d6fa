"""The manifest is the contract between build and runtime: a tampered artifact must not start."""

from __future__ import annotations

import json

import pytest

from layers.manifest import ManifestError, read_manifest


def test_reads_signature_and_version(tiny_model_dir):
    m = read_manifest(tiny_model_dir)
    assert m.name == "tiny"
    assert [t.name for t in m.inputs] == ["x"]
    assert m.inputs[0].shape == (-1, 4)
    assert m.version == m.sha256[:12]


def test_tampered_model_refuses_to_load(tiny_model_dir):
    # given an artifact edited after the build
    with open(tiny_model_dir / "model.onnx", "ab") as f:
        f.write(b"\0")
    # then loading names the mismatch and the fix
    with pytest.raises(ManifestError, match="sha256.*Rebuild with `modelfn build`"):
        read_manifest(tiny_model_dir)


def test_missing_files_explain_what_model_dir_must_hold(tmp_path):
    with pytest.raises(ManifestError, match="must hold model.onnx and manifest.json"):
        read_manifest(tmp_path)


def test_unknown_datatype_is_rejected(tiny_model_dir):
    path = tiny_model_dir / "manifest.json"
    data = json.loads(path.read_text())
    data["signature"]["inputs"][0]["datatype"] = "FLOAT"
    path.write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="expected one of BOOL"):
        read_manifest(tiny_model_dir)


def test_sha256_file_matches_hashlib_across_chunk_boundaries(tmp_path):
    import hashlib

    from layers.manifest import sha256_file

    data = bytes(range(256)) * 4099  # not a multiple of any chunk size below
    path = tmp_path / "blob"
    path.write_bytes(data)
    for chunk in (4093, 1 << 16, len(data), 1 << 24):
        assert sha256_file(path, chunk=chunk) == hashlib.sha256(data).hexdigest()
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert sha256_file(empty) == hashlib.sha256(b"").hexdigest()
