"""nn.MultiheadAttention's packed-projection blocks fuse into onnxruntime's Attention (so dynamic
int8 quantizes each as one QAttention), compute what they computed, and masked blocks are left alone."""

from __future__ import annotations

import io

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from infra.build.attention_fusion import fuse_packed_attention
from infra.build.convert import _export_dynamo
from infra.build.quantize import op_counts

torch = pytest.importorskip("torch")


class _Encoder(torch.nn.Module):
    def __init__(self, batch_first: bool = True, masked: bool = False):
        super().__init__()
        torch.manual_seed(0)
        layer = torch.nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=batch_first)
        self.encoder = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.batch_first, self.masked = batch_first, masked

    def forward(self, x):
        if not self.batch_first:
            x = x.transpose(0, 1)
        mask = (x[..., 0] > 1.0).transpose(0, 1) if self.masked and not self.batch_first else None
        if self.masked and self.batch_first:
            mask = x[..., 0] > 1.0
        y = self.encoder(x, src_key_padding_mask=mask)
        return y.transpose(0, 1) if not self.batch_first else y


class _VitBlock(torch.nn.Module):
    """The batch-first packed pattern custom and timm-style ViT blocks write by hand."""

    def __init__(self, dim: int = 32, heads: int = 4):
        super().__init__()
        torch.manual_seed(0)
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv, self.proj = torch.nn.Linear(dim, 3 * dim), torch.nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return x + self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


def _export(module, exporter) -> onnx.ModelProto:
    x = torch.randn(2, 6, 32)
    buf = io.BytesIO()
    exporter(module.eval(), (x,), ["x"], ["y"], buf)
    return onnx.load_from_string(buf.getvalue())


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


@pytest.mark.slow
@pytest.mark.parametrize("make", [_Encoder, lambda: torch.nn.Sequential(_VitBlock(), _VitBlock())],
                         ids=["nn.TransformerEncoder", "vit-style"])
def test_each_packed_attention_block_becomes_one_attention_with_the_same_outputs(make):
    model = _export(make(), _export_dynamo)
    x = np.random.default_rng(1).standard_normal((3, 6, 32)).astype(np.float32)
    before = _run(model, x)
    fused, left = fuse_packed_attention(model)
    assert (fused, left) == (2, [])
    ops = op_counts(model)
    assert ops["Attention"] == 2 and ops["Softmax"] == 0
    assert {a.i for n in model.graph.node if n.op_type == "Attention" for a in n.attribute
            if a.name == "num_heads"} == {4}  # from the scale 1/sqrt(head size), no hint given
    np.testing.assert_allclose(_run(model, x), before, atol=1e-5)


@pytest.mark.slow
def test_a_masked_block_is_left_alone_and_says_why():
    model = _export(_Encoder(masked=True), _export_dynamo)
    fused, left = fuse_packed_attention(model)
    assert fused == 0 and len(left) == 2
    assert all("mask" in why or "outside" in why for why in left)
