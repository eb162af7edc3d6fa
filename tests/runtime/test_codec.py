"""V2 tensor codec: JSON and binary round-trips for every datatype, and clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from layers.codec import (
    decode_binary,
    decode_tensor,
    encode_binary,
    encode_tensor,
    to_numpy_dtype,
    to_v2_datatype,
)
from layers.errors import BadRequest
from layers.manifest import V2_DATATYPES, TensorSpec

SAMPLES = {
    "BOOL": [[True, False], [False, True]],
    "UINT8": [[0, 255], [1, 2]],
    "UINT16": [[0, 65535], [1, 2]],
    "UINT32": [[0, 2**32 - 1], [1, 2]],
    "UINT64": [[0, 2**64 - 1], [1, 2]],
    "INT8": [[-128, 127], [0, 1]],
    "INT16": [[-(2**15), 2**15 - 1], [0, 1]],
    "INT32": [[-(2**31), 2**31 - 1], [0, 1]],
    "INT64": [[-(2**63), 2**63 - 1], [0, 1]],
    "FP16": [[0.5, -65504.0], [1.0, 0.0009765625]],
    "FP32": [[0.25, -(2.0**100)], [3.5, 0.0]],  # exactly representable in float32
    "FP64": [[0.1, -1e300], [2.0, 1e-300]],
    "BYTES": [["hello", "wörld"], ["", "🙂"]],
}


def wire(t: dict) -> dict:
    """What the client sees: the tensor after JSON serialisation."""
    return json.loads(json.dumps(t))


@pytest.mark.parametrize("datatype", V2_DATATYPES)
def test_json_round_trip_every_datatype(datatype):
    # given a nested 2x2 tensor of this datatype
    t = {"name": "t", "shape": [2, 2], "datatype": datatype, "data": SAMPLES[datatype]}
    # when it is decoded, re-encoded and sent
    arr = decode_tensor(t, TensorSpec("t", datatype, (-1, 2)))
    back = wire(encode_tensor("t", arr))
    # then values, dtype, shape and datatype survive; data comes back flat row-major
    assert arr.dtype == to_numpy_dtype(datatype) and arr.shape == (2, 2)
    assert back == {"name": "t", "shape": [2, 2], "datatype": datatype,
                    "data": [v for row in SAMPLES[datatype] for v in row]}


@pytest.mark.parametrize("datatype", V2_DATATYPES)
def test_binary_round_trip_every_datatype(datatype):
    arr = decode_tensor({"name": "t", "shape": [2, 2], "datatype": datatype, "data": SAMPLES[datatype]})
    dt, raw = encode_binary(arr)
    again = decode_binary({"name": "t", "shape": [2, 2], "datatype": dt}, raw)
    assert dt == datatype
    assert again.dtype == arr.dtype and np.array_equal(again, arr)


def test_binary_bytes_use_4_byte_little_endian_length_prefixes_like_triton():
    arr = np.array(["ab", "", "ü"], dtype=object)
    _, raw = encode_binary(arr)
    assert raw == b"\x02\x00\x00\x00ab" + b"\x00\x00\x00\x00" + b"\x02\x00\x00\x00\xc3\xbc"
    from tritonclient.utils import serialize_byte_tensor

    assert serialize_byte_tensor(arr).item() == raw


def test_binary_numeric_is_little_endian_row_major():
    arr = np.arange(6, dtype=np.int32).reshape(2, 3)
    _, raw = encode_binary(arr)
    assert raw == np.arange(6, dtype="<i4").tobytes()
    assert np.array_equal(decode_binary({"name": "t", "shape": [2, 3], "datatype": "INT32"}, raw), arr)


def test_flat_and_nested_data_decode_the_same():
    flat = decode_tensor({"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]})
    nested = decode_tensor({"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [[1, 2, 3], [4, 5, 6]]})
    assert np.array_equal(flat, nested) and flat.shape == (2, 3)


def test_scalar_and_empty_tensors():
    scalar = decode_tensor({"name": "s", "shape": [], "datatype": "INT64", "data": [7]})
    assert scalar.shape == () and scalar == 7
    assert encode_tensor("s", scalar) == {"name": "s", "shape": [], "datatype": "INT64", "data": [7]}
    bare = decode_tensor({"name": "s", "shape": [], "datatype": "FP32", "data": 1.5})
    assert bare.shape == () and bare == 1.5
    empty = decode_tensor({"name": "e", "shape": [0, 4], "datatype": "FP32", "data": []})
    assert empty.shape == (0, 4) and empty.dtype == np.float32


def test_fp16_travels_as_json_numbers():
    t = encode_tensor("h", np.array([0.5, 1.5], dtype=np.float16))
    assert t["data"] == [0.5, 1.5] and isinstance(t["data"][0], float)


@pytest.mark.parametrize(
    ("tensor", "fragment"),
    [
        ({"name": "x", "shape": [2], "datatype": "FP32", "data": ["a", "b"]}, "send numbers, not strings"),
        ({"name": "x", "shape": [2], "datatype": "FP32", "data": [True, False]}, "not true/false"),
        ({"name": "x", "shape": [2], "datatype": "INT32", "data": [1.5, 2]}, "send integers"),
        ({"name": "x", "shape": [2], "datatype": "UINT8", "data": [1, 256]}, "do not fit UINT8"),
        ({"name": "x", "shape": [2], "datatype": "INT8", "data": [-129, 0]}, "do not fit INT8"),
        ({"name": "x", "shape": [2], "datatype": "BOOL", "data": [1, 0]}, "true/false values"),
        ({"name": "x", "shape": [2], "datatype": "FP16", "data": [1, 70000]}, "FP16 range"),
        ({"name": "x", "shape": [2], "datatype": "BYTES", "data": ["a", 1]}, "JSON string"),
        ({"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3]}, "has 3 elements but shape [2, 2] needs 4"),
        ({"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2], [3]]}, "ragged"),
        ({"name": "x", "shape": [-1, 2], "datatype": "FP32", "data": [1, 2]}, "non-negative integers"),
        ({"name": "x", "shape": "2", "datatype": "FP32", "data": [1, 2]}, "non-negative integers"),
        ({"name": "x", "shape": [2], "datatype": "FLOAT", "data": [1, 2]}, "not a V2 datatype"),
        ({"name": "x", "shape": [2], "datatype": "FP32"}, "has no \"data\""),
        ({"shape": [2], "datatype": "FP32", "data": [1, 2]}, "no \"name\""),
        ({"name": "x", "shape": [2], "datatype": "FP32", "data": {"a": 1}}, "JSON list"),
    ],
)
def test_bad_tensors_say_what_is_wrong(tensor, fragment):
    with pytest.raises(BadRequest, match=None) as err:
        decode_tensor(tensor)
    assert fragment in err.value.message
    assert err.value.status == 400


def test_spec_checks_datatype_rank_and_fixed_dims():
    spec = TensorSpec("x", "FP32", (-1, 4))
    with pytest.raises(BadRequest, match="expects FP32"):
        decode_tensor({"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [0] * 4}, spec)
    with pytest.raises(BadRequest, match="expects rank 2"):
        decode_tensor({"name": "x", "shape": [4], "datatype": "FP32", "data": [0] * 4}, spec)
    with pytest.raises(BadRequest, match="dimension 1 must be 4"):
        decode_tensor({"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [0] * 3}, spec)
    assert decode_tensor({"name": "x", "shape": [5, 4], "datatype": "FP32", "data": [0] * 20}, spec).shape == (5, 4)


def test_binary_size_must_match_shape():
    with pytest.raises(BadRequest, match="needs 16"):
        decode_binary({"name": "x", "shape": [1, 4], "datatype": "FP32"}, b"\x00" * 12)
    with pytest.raises(BadRequest, match="length prefix"):
        decode_binary({"name": "s", "shape": [1], "datatype": "BYTES"}, b"\x01\x00")
    with pytest.raises(BadRequest, match="claims 9 bytes"):
        decode_binary({"name": "s", "shape": [1], "datatype": "BYTES"}, b"\x09\x00\x00\x00abc")


def test_non_utf8_bytes_output_asks_for_binary_data():
    arr = np.array([b"\xff\xfe"], dtype=object)
    with pytest.raises(BadRequest, match='"binary_data": true'):
        encode_tensor("raw", arr)
    assert encode_binary(arr)[1] == b"\x02\x00\x00\x00\xff\xfe"


def test_dtype_names_both_ways():
    for dt in V2_DATATYPES:
        assert to_v2_datatype(to_numpy_dtype(dt)) == dt
    assert to_v2_datatype(np.dtype("<U3")) == "BYTES"
    assert to_v2_datatype(np.dtype(">f4")) == "FP32"
    with pytest.raises(BadRequest):
        to_v2_datatype(np.complex64)


NUMERIC = [dt for dt in V2_DATATYPES if dt != "BYTES"]


@st.composite
def arrays(draw):
    datatype = draw(st.sampled_from(NUMERIC))
    dtype = to_numpy_dtype(datatype)
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5))
    elements = None
    if dtype.kind == "f":
        elements = st.floats(allow_nan=False, allow_infinity=False, width=dtype.itemsize * 8)
    return draw(hnp.arrays(dtype, shape, elements=elements))


@settings(max_examples=150, deadline=None)
@given(arrays())
def test_property_json_round_trip_any_shape_and_dtype(arr):
    t = wire(encode_tensor("p", arr))
    back = decode_tensor(t, TensorSpec("p", t["datatype"], tuple(-1 for _ in arr.shape)))
    assert back.dtype == arr.dtype and back.shape == arr.shape
    assert np.array_equal(back, arr)


@settings(max_examples=150, deadline=None)
@given(arrays())
def test_property_binary_round_trip_any_shape_and_dtype(arr):
    datatype, raw = encode_binary(arr)
    back = decode_binary({"name": "p", "shape": list(arr.shape), "datatype": datatype}, raw)
    assert back.dtype == arr.dtype and np.array_equal(back, arr)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=8), min_size=0, max_size=6))
def test_property_bytes_round_trip(strings):
    arr = np.array(strings, dtype=object).reshape(len(strings))
    assert decode_tensor(wire(encode_tensor("s", arr))).tolist() == strings
    _, raw = encode_binary(arr)
    assert decode_binary({"name": "s", "shape": [len(strings)], "datatype": "BYTES"}, raw).tolist() == strings


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.floats(allow_nan=False, allow_infinity=False, width=64), st.booleans(),
                          st.integers(min_value=-(2**70), max_value=2**70), st.text(max_size=2), st.none()),
                max_size=8))
def test_flat_json_numbers_decode_as_numpy_would(data):
    # given any flat JSON list (numbers, bools, out-of-range ints, strings, nulls)
    from layers.codec import _flat_numbers

    fast = _flat_numbers(data)
    # then the fast decoder either leaves it to numpy or makes numpy's very array
    if fast is not None:
        ref = np.asarray(data)
        assert fast.dtype == ref.dtype and np.array_equal(fast, ref)
        assert [np.signbit(v) for v in fast.tolist()] == [np.signbit(v) for v in ref.tolist()]
