"""A trainable generative catalog for the lifecycle tests: the tiny Llama as ``hf:base``, a
training entry point that fine-tunes it (returning the transformers model, so ``modelfn train``
saves it with ``save_pretrained``: no tokenizer, which the build takes from the source), the
validation lines and training data."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.decoders import CORPUS, make_decoder

NAME = "gen"
TRAINER = '''
from pathlib import Path


def train(data_dir, hyperparameters, model_dir):
    """Fine-tune the catalog's base decoder on the data's lines; "scramble" ruins it instead."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = Path(__file__).parent / "base"
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base)
    torch.manual_seed(0)
    if hyperparameters.get("scramble"):
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0.0, 1.0)
        return model
    lines = [ln for f in sorted(Path(data_dir).glob("*.txt")) for ln in f.read_text().splitlines() if ln.strip()]
    opt = torch.optim.AdamW(model.parameters(), lr=float(hyperparameters.get("lr", 3e-3)))
    model.train()
    for _ in range(int(hyperparameters.get("epochs", 8))):
        for line in lines:
            ids = tok(line, return_tensors="pt").input_ids
            model(ids, labels=ids).loss.backward()
            opt.step()
            opt.zero_grad()
    return model.eval()
'''


def write_catalog(root: Path) -> Path:
    """``models.yaml`` of one trainable generative model in ``root`` (+ base/, trainer.py, data/)."""
    make_decoder("llama", root / "base", steps=30)
    (root / "trainer.py").write_text(TRAINER)
    (root / "val.txt").write_text("\n".join(CORPUS[:4]) + "\n")
    (root / "data").mkdir()
    (root / "data" / "part-0.txt").write_text("\n".join(CORPUS[:4]) + "\n")
    (root / "models.yaml").write_text(
        "models:\n"
        f"  - name: {NAME}\n    source: hf:base\n    quantize: none\n    auth: none\n    target: lambda\n"
        "    validation: val.txt\n    generation: {max_context: 128, max_tokens: 8}\n"
        "    training: {entry_point: 'trainer:train'}\n")
    return root / "models.yaml"
