"""`modelfn promote` refuses a version whose signature differs from the live one unless
`--force`, and says what clients would break (it used to make such a version live silently)."""

from __future__ import annotations

import json

import yaml

from infra.cli import main
from tests.train.helpers import write_data, write_training_catalog

RENAMED = '''

def train_onnx_renamed(data_dir, hp, model_dir):
    """The same model, its output renamed: requests asking for "logits" would get a 400."""
    import onnx

    train_onnx(data_dir, hp, model_dir)
    model = onnx.load(str(Path(model_dir) / "model.onnx"))
    model.graph.node[-1].output[0] = model.graph.output[0].name = "probs"
    onnx.save(model, str(Path(model_dir) / "model.onnx"))
'''


def test_promote_refuses_a_signature_change_unless_forced(tmp_path, capsys):
    # given version 1 live (output "logits") and version 2 with its output renamed
    catalog = write_training_catalog(tmp_path / "cat", entry="trainer:train_onnx")
    (tmp_path / "cat" / "trainer.py").write_text((tmp_path / "cat" / "trainer.py").read_text() + RENAMED)
    out, data = tmp_path / "build", write_data(tmp_path / "data", 120, seed=1)
    train = ["train", "blobs", "--catalog", str(catalog), "--out", str(out), "--data", str(data), "--json"]
    assert main(train) == 0
    spec = yaml.safe_load(catalog.read_text())
    spec["models"][0]["training"]["entry_point"] = "trainer:train_onnx_renamed"
    catalog.write_text(yaml.safe_dump(spec))
    capsys.readouterr()
    assert main(train) == 0
    second = json.loads(capsys.readouterr().out)
    # then the training gate kept it, naming the break
    assert second["promoted"] is False and "output 'logits' FP32 [-1, 3] is gone" in second["reason"]
    # when promoted by hand, it is refused with what clients would break and how to force it
    assert main(["promote", "blobs", "2", "--out", str(out)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "output 'logits' FP32 [-1, 3] is gone" in err and "new output(s) 'probs'" in err
    assert "Clients of" in err and "--force" in err
    live = json.loads((out / "models/blobs/manifest.json").read_text())
    assert [o["name"] for o in live["signature"]["outputs"]] == ["logits"]
    # and --force makes it live, with a warning
    assert main(["promote", "blobs", "2", "--out", str(out), "--force"]) == 0
    assert "signature changed" in capsys.readouterr().err
    live = json.loads((out / "models/blobs/manifest.json").read_text())
    assert [o["name"] for o in live["signature"]["outputs"]] == ["probs"]
