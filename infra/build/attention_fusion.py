"""Attention fusion for the packed-projection pattern ``nn.MultiheadAttention`` exports.

onnxruntime's transformer optimizer fuses the attention patterns of BERT-family exports
(separate Q, K and V projections). ``torch.nn.MultiheadAttention`` (hence
``nn.TransformerEncoder``) projects Q, K and V with one packed ``in_proj`` weight
``[hidden, 3·hidden]`` and splits the result; neither exporter's graph of that is a pattern the
optimizer knows, so attention stayed a chain of ~35 small ops and three separately
quantized projections. This module finds each such block by its anchors rather than by one
exporter's exact node sequence:

* the **projection**: ``MatMul(x, W[h, 3h])`` + ``Add(b[3h])``, both constants;
* the **core**: every node forward-reachable from the projection's output up to the first
  ``MatMul``/``Gemm`` with a constant ``[h, h]`` weight (the out-projection), which must hold
  exactly one ``Softmax`` and two activation×activation ``MatMul``s, read nothing but the
  projection, ``x`` and constants (no mask: a masked block is left alone), feed nothing outside
  itself but the out-projection's input, and end in a ``Reshape`` to 2 or 3 dimensions;
* the **scale**: the product of the core's scalar ``Mul``/``Div`` constants (PyTorch scales Q
  and K by ``head_size^-¼`` each), which gives the head size, hence the head count;
* the **layout**: the permutation after the probabilities × V product: sequence-first
  (PyTorch's internal ``[S, B, …]``) or batch-first (the same packed pattern written by hand,
  as timm-style ViT blocks do: ``qkv(x).reshape(B, N, 3, H, d).permute(2, 0, 3, 1, 4)``).

Each block becomes ``Attention(x[B, S, h], W, b, num_heads, scale)`` (transposed in and out
for the sequence-first layout), reshaped to ``[-1, h]`` where the out-projection read two
dimensions, so it reads what it read before. The TorchScript exporter's graph of the same
module computes the scale from tensor shapes at run time and is left alone (the build exports
torch sources with dynamo). The build uses the fused graph only after it
computed the fp32 graph's outputs on the gate rows (:func:`infra.build.transformer.prepare`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

#: Nodes one attention core may hold at most (one dynamo-exported block has ~35).
MAX_CORE_NODES = 120
MS_DOMAIN = "com.microsoft"


@dataclass
class _Block:
    x: str
    weight: str
    bias: str
    removed: list[onnx.NodeProto]
    last: onnx.NodeProto
    heads: int
    scale: float
    seq_first: bool
    rank: int  # of the out-projection's input: [B·S, h] (2) or [S, B, h] / [B, S, h] (3)
    hidden: int


def _constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    out = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].type == onnx.AttributeProto.TENSOR:
            out[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    return out


def _attr(node: onnx.NodeProto, name: str, default=None):
    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def _block(proj: onnx.NodeProto, add: onnx.NodeProto, consts: dict[str, np.ndarray],
           consumers: dict[str, list[onnx.NodeProto]], outputs: set[str],
           heads_hint: int | None) -> _Block | str:
    """The attention block starting at ``proj`` (+ ``add``), or why it is not one."""
    x, weight = proj.input
    hidden = consts[weight].shape[0]
    bias = next(i for i in add.input if i != proj.output[0])
    start = add.output[0]
    core: list[onnx.NodeProto] = []
    seen: set[int] = set()
    ends: list[onnx.NodeProto] = []
    todo = [start]
    while todo:
        for node in consumers.get(todo.pop(), []):
            if id(node) in seen:
                continue
            seen.add(id(node))
            w = consts.get(node.input[1]) if node.op_type in ("MatMul", "Gemm") and len(node.input) > 1 else None
            if w is not None and w.ndim == 2 and w.shape == (hidden, hidden):
                ends.append(node)
                continue
            core.append(node)
            if len(core) > MAX_CORE_NODES:
                return "no out-projection within reach"
            todo.extend(node.output)
    if len(ends) != 1:
        return f"{len(ends)} out-projections reached (expected one)"
    ctx = ends[0].input[0]
    produced = {o for n in core for o in n.output}
    last = next((n for n in core if ctx in n.output), None)
    rank = _target_rank(last, consts, core) if last is not None and last.op_type == "Reshape" else None
    if rank not in (2, 3):
        return "the out-projection's input is not a Reshape to 2 or 3 dimensions"
    allowed = produced | {start, x} | set(consts)
    for node in core:
        if any(i and i not in allowed for i in node.input):
            return "the core reads a non-constant tensor from outside (an attention mask?)"
        for o in node.output:
            if o in outputs or any(c not in core and c is not ends[0] for c in consumers.get(o, [])):
                return "a tensor of the core is used outside it"
    ops = [n.op_type for n in core]
    products = [n for n in core if n.op_type == "MatMul" and n.input[1] not in consts and n.input[0] not in consts]
    if ops.count("Softmax") != 1 or len(products) != 2:
        return "not one Softmax between two activation products"
    if any(op in ("Where", "Add", "Sub") for op in ops):  # masks, biases, relative positions
        return "the core adds to the scores (a mask or position bias)"
    scale = 1.0
    for n in core:
        if n.op_type in ("Mul", "Div"):
            c = next((consts[i] for i in n.input if i in consts), None)
            if c is None or c.size != 1:
                return f"a {n.op_type} by a non-scalar in the core"
            scale = scale * float(c.reshape(())) if n.op_type == "Mul" else scale / float(c.reshape(()))
    pv = products[1] if _after(products[0], products[1], consumers) else products[0]
    perm = next((list(_attr(c, "perm")) for c in consumers.get(pv.output[0], []) if c.op_type == "Transpose"), None)
    if not perm:
        return "no transpose after the probabilities × V product"
    seq_first = perm[0] == len(perm) - 2
    if not seq_first and perm[0] != 0:
        return f"unknown head-merge permutation {perm}"
    heads = None  # the scale is 1/sqrt(head size) in every standard block; else the caller's hint
    size = round(1.0 / scale**2) if scale > 0 else 0
    if size and hidden % size == 0 and math.isclose(size**-0.5, scale, rel_tol=1e-4):
        heads = hidden // size
    elif heads_hint and hidden % heads_hint == 0:
        heads = heads_hint
    if heads is None:
        return "head count unknown (the scale is not 1/sqrt(head size) and no hint fits)"
    return _Block(x=x, weight=weight, bias=bias, removed=[proj, add, *core], last=last, heads=heads,
                  scale=scale, seq_first=seq_first, rank=rank, hidden=hidden)


def _target_rank(reshape: onnx.NodeProto, consts: dict[str, np.ndarray], core: list[onnx.NodeProto]) -> int | None:
    """Dimensions a Reshape produces: its constant shape's length, or the number of one-element
    parts a computed shape is concatenated from (the TorchScript exporter's form)."""
    shape = reshape.input[1]
    if shape in consts:
        return int(consts[shape].size)
    concat = next((n for n in core if shape in n.output and n.op_type == "Concat"), None)
    return len(concat.input) if concat is not None else None


def _after(a: onnx.NodeProto, b: onnx.NodeProto, consumers: dict[str, list[onnx.NodeProto]]) -> bool:
    """Whether ``b`` is downstream of ``a``."""
    todo, seen = list(a.output), set()
    while todo:
        for n in consumers.get(todo.pop(), []):
            if n is b:
                return True
            if id(n) not in seen:
                seen.add(id(n))
                todo.extend(n.output)
    return False


def fuse_packed_attention(model: onnx.ModelProto, heads: int | None = None) -> tuple[int, list[str]]:
    """Fuse every packed-projection attention block of ``model`` in place. Returns (blocks
    fused, why each other candidate projection was left alone)."""
    consts = _constants(model)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    outputs = {o.name for o in model.graph.output}
    blocks: list[_Block] = []
    skipped: list[str] = []
    for node in model.graph.node:
        if node.op_type != "MatMul" or node.input[1] not in consts:
            continue
        w = consts[node.input[1]]
        users = consumers.get(node.output[0], [])
        if w.ndim != 2 or w.shape[1] != 3 * w.shape[0] or len(users) != 1 or users[0].op_type != "Add":
            continue
        add = users[0]
        b = next((consts.get(i) for i in add.input if i != node.output[0]), None)
        if b is None or b.shape != (w.shape[1],):
            continue
        found = _block(node, add, consts, consumers, outputs, heads)
        if isinstance(found, str):
            skipped.append(f"{node.name}: {found}")
        else:
            blocks.append(found)
    if not blocks:
        return 0, skipped
    removed = {id(n) for b in blocks for n in b.removed}
    at_last = {id(b.last): b for b in blocks}
    new_nodes: list[onnx.NodeProto] = []
    for node in model.graph.node:
        if id(node) in at_last:
            nodes, inits = _replacement(at_last[id(node)], len(new_nodes))
            new_nodes.extend(nodes)
            model.graph.initializer.extend(inits)
        elif id(node) not in removed:
            new_nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(new_nodes)
    if not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    used = {i for n in model.graph.node for i in n.input} | outputs
    keep = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    produced = {o for n in model.graph.node for o in n.output} | {i.name for i in model.graph.input}
    keep_info = [v for v in model.graph.value_info if v.name in produced]
    del model.graph.value_info[:]
    model.graph.value_info.extend(keep_info)
    return len(blocks), skipped


def _replacement(b: _Block, k: int) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    tag = f"{b.last.name or 'attention'}_fused{k}"
    nodes = []
    x = b.x
    if b.seq_first:
        nodes.append(helper.make_node("Transpose", [x], [f"{tag}_in"], name=f"{tag}_in", perm=[1, 0, 2]))
        x = f"{tag}_in"
    nodes.append(helper.make_node("Attention", [x, b.weight, b.bias], [f"{tag}_out"], name=f"{tag}_Attention",
                                  domain=MS_DOMAIN, num_heads=b.heads, scale=b.scale))
    out = f"{tag}_out"
    if b.seq_first:
        nodes.append(helper.make_node("Transpose", [out], [f"{tag}_sbd"], name=f"{tag}_back", perm=[1, 0, 2]))
        out = f"{tag}_sbd"
    if b.rank == 3:
        nodes.append(helper.make_node("Identity", [out], list(b.last.output), name=b.last.name))
        return nodes, []
    shape = numpy_helper.from_array(np.array([-1, b.hidden], np.int64), f"{tag}_shape")
    nodes.append(helper.make_node("Reshape", [out, shape.name], list(b.last.output), name=b.last.name))
    return nodes, [shape]
