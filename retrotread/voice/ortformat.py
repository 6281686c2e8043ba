"""Read an ONNX Runtime "ORT format" model back into an ONNX model, its weights unpacked.

Moonshine's English model ships (in the moonshine-cpp wheel) as ORT format files whose
weights are stored as int8 and turned back into floats by ``Cast``, ``Mul`` and ``Add``
nodes **inside the graph**, so every run of the decoder unpacks all of its weights again:
about 120 ms per generated token on this machine, nearly all of it spent unpacking
(measured with onnxruntime's profiler; docs/voice-model.md, "A faster Moonshine").
onnxruntime does not fold constants in a model loaded from ORT format, and no library
converts ORT format back to ONNX, so this module does it: it reads the file with the
flatbuffer classes that the onnxruntime wheel itself ships
(``onnxruntime.tools.ort_format_model``), evaluates every node whose inputs are all
constant and whose operator is one of a few simple ones (``FOLDED``), with numpy, once,
and writes the graph with the results as initializers. The arithmetic is the same as the
nodes' (float32, same order), so the model's outputs are unchanged (tested against
the unconverted file in ``tests/test_voice_asr.py``).

Pure: bytes in, an ``onnx.ModelProto`` out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

_NUMPY = {1: np.float32, 2: np.uint8, 3: np.int8, 4: np.uint16, 5: np.int16, 6: np.int32,
          7: np.int64, 9: np.bool_, 10: np.float16, 11: np.float64, 12: np.uint32,
          13: np.uint64}
"""ORT format's tensor data types (the same numbers as ONNX's) as numpy dtypes."""


FOLDED: dict[str, Callable[..., np.ndarray]] = {
    "Cast": lambda x, *, to: x.astype(_NUMPY[to]),
    "Mul": lambda a, b: np.multiply(a, b),
    "Add": lambda a, b: np.add(a, b),
    "Sub": lambda a, b: np.subtract(a, b),
    "Transpose": lambda x, *, perm=None: np.ascontiguousarray(np.transpose(x, perm)),
}
"""Operators evaluated ahead of time when all their inputs are constants (ONNX semantics
with numpy broadcasting; the attributes named are the only ones these nodes carry)."""

class OrtFormatError(ValueError):
    """The file is not an ORT format model this reader understands."""


def _fbs() -> Any:
    from onnxruntime.tools.ort_format_model.ort_flatbuffers_py import fbs
    return fbs


def _text(raw: bytes | None) -> str:
    return raw.decode() if raw else ""


def _array(tensor: Any) -> np.ndarray:
    dtype = _NUMPY.get(tensor.DataType())
    if dtype is None or tensor.ExternalDataOffset() >= 0:
        raise OrtFormatError(f"tensor {_text(tensor.Name())!r}: data type "
                             f"{tensor.DataType()} or external data is not supported")
    dims = [tensor.Dims(i) for i in range(tensor.DimsLength())]
    raw = tensor.RawDataAsNumpy() if tensor.RawDataLength() else np.zeros(0, np.uint8)
    return np.frombuffer(raw.tobytes(), dtype=dtype).reshape(dims)


def _value_info(info: Any) -> Any:
    from onnx import ValueInfoProto, helper
    name = _text(info.Name())
    type_info = info.Type()
    if type_info is None:
        return ValueInfoProto(name=name)
    if type_info.ValueType() != _fbs().TypeInfoValue.TypeInfoValue.tensor_type:
        raise OrtFormatError(f"value {name!r}: only tensors are supported")
    tensor_type = _fbs().TensorTypeAndShape.TensorTypeAndShape()
    table = type_info.Value()
    tensor_type.Init(table.Bytes, table.Pos)
    shape = tensor_type.Shape()
    dims: list[int | str | None] | None = None
    if shape is not None:
        dims = []
        for i in range(shape.DimLength()):
            value = shape.Dim(i).Value()
            if value is None or value.DimType() == 0:
                dims.append(None)
            elif value.DimType() == 1:
                dims.append(int(value.DimValue()))
            else:
                dims.append(_text(value.DimParam()))
    return helper.make_tensor_value_info(name, tensor_type.ElemType(), dims)


def _attribute(attr: Any, outer: Mapping[str, np.ndarray], proto: Any) -> None:
    """Fill ``proto`` (an AttributeProto) from the flatbuffer attribute."""
    from onnx import AttributeProto, numpy_helper
    kind = attr.Type()
    proto.name, proto.type = _text(attr.Name()), kind
    if kind == AttributeProto.FLOAT:
        proto.f = attr.F()
    elif kind == AttributeProto.INT:
        proto.i = attr.I()
    elif kind == AttributeProto.STRING:
        proto.s = attr.S() or b""
    elif kind == AttributeProto.TENSOR:
        proto.t.CopyFrom(numpy_helper.from_array(_array(attr.T()), _text(attr.T().Name())))
    elif kind == AttributeProto.GRAPH:
        _graph(attr.G(), outer, proto.g)
    elif kind == AttributeProto.FLOATS:
        proto.floats.extend(attr.Floats(i) for i in range(attr.FloatsLength()))
    elif kind == AttributeProto.INTS:
        proto.ints.extend(attr.Ints(i) for i in range(attr.IntsLength()))
    elif kind == AttributeProto.STRINGS:
        proto.strings.extend(attr.Strings(i) for i in range(attr.StringsLength()))
    else:
        raise OrtFormatError(f"attribute {proto.name!r} of type {kind} is not supported")


def _plain_attributes(node: Any) -> dict[str, Any] | None:
    """A foldable node's attributes as Python values (None: one is of another kind)."""
    from onnx import AttributeProto
    values: dict[str, Any] = {}
    for i in range(node.AttributesLength()):
        attr = node.Attributes(i)
        if attr.Type() == AttributeProto.INT:
            values[_text(attr.Name())] = attr.I()
        elif attr.Type() == AttributeProto.INTS:
            values[_text(attr.Name())] = [attr.Ints(j) for j in range(attr.IntsLength())]
        else:
            return None
    return values


def _graph(graph: Any, outer: Mapping[str, np.ndarray], out: Any) -> None:
    """Fill ``out`` (a GraphProto, in place: the weights are large and a protobuf message
    added to another is copied) from one graph and, through If/Loop attributes, its
    subgraphs. ``outer``: the constants the enclosing graphs can see (after folding)."""
    from onnx import helper
    constants = dict(outer)
    own: dict[str, np.ndarray] = {}
    for i in range(graph.InitializersLength()):
        tensor = graph.Initializers(i)
        own[_text(tensor.Name())] = constants[_text(tensor.Name())] = _array(tensor)
    infos = {}
    for i in range(graph.NodeArgsLength()):
        info = graph.NodeArgs(i)
        infos[_text(info.Name())] = info
    out.name = "graph"
    order = sorted((graph.Nodes(i) for i in range(graph.NodesLength())),
                   key=lambda n: n.Index())
    for node in order:
        op_type = _text(node.OpType())
        inputs = [_text(node.Inputs(i)) for i in range(node.InputsLength())]
        outputs = [_text(node.Outputs(i)) for i in range(node.OutputsLength())]
        attributes = _plain_attributes(node) if op_type in FOLDED else None
        if (attributes is not None and _text(node.Domain()) in ("", "ai.onnx")
                and len(outputs) == 1 and inputs and all(n in constants for n in inputs)):
            value = FOLDED[op_type](*(constants[n] for n in inputs), **attributes)
            own[outputs[0]] = constants[outputs[0]] = value
            continue
        proto = out.node.add()
        proto.op_type, proto.name, proto.domain = op_type, _text(node.Name()), \
            _text(node.Domain())
        proto.input.extend(inputs)
        proto.output.extend(outputs)
        for i in range(node.AttributesLength()):
            _attribute(node.Attributes(i), constants, proto.attribute.add())
    used = _names_used(out.node) | {_text(graph.Outputs(i))
                                    for i in range(graph.OutputsLength())}
    for name, value in own.items():
        if name in used:
            tensor = out.initializer.add()
            tensor.name, tensor.data_type = name, helper.np_dtype_to_tensor_dtype(value.dtype)
            tensor.dims.extend(value.shape)
            tensor.raw_data = np.ascontiguousarray(value).tobytes()
    out.input.extend(_value_info(infos[_text(graph.Inputs(i))])
                     for i in range(graph.InputsLength()) if _text(graph.Inputs(i)) not in own)
    out.output.extend(_value_info(infos[_text(graph.Outputs(i))])
                      for i in range(graph.OutputsLength()))


def _names_used(nodes: Iterable[Any]) -> set[str]:
    """Every value name the nodes read, their subgraphs' nodes included."""
    used: set[str] = set()
    for node in nodes:
        used.update(node.input)
        for attr in node.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                used |= _names_used(sub.node)
                used |= {value.name for value in sub.output}
    return used


def to_onnx(data: bytes) -> Any:
    """The ORT format model in ``data`` as an ``onnx.ModelProto`` with its constant
    arithmetic done."""
    from onnx import ModelProto, helper
    fbs = _fbs()
    if not fbs.InferenceSession.InferenceSession.InferenceSessionBufferHasIdentifier(data, 0):
        raise OrtFormatError("not an ORT format model")
    model = fbs.InferenceSession.InferenceSession.GetRootAs(data, 0).Model()
    if model is None or model.Graph() is None:
        raise OrtFormatError("the ORT format file holds no model")
    proto = ModelProto(ir_version=model.IrVersion(), producer_name="retrotread ortformat")
    proto.opset_import.extend(helper.make_opsetid(_text(model.OpsetImport(i).Domain()),
                                                  model.OpsetImport(i).Version())
                              for i in range(model.OpsetImportLength()))
    _graph(model.Graph(), {}, proto.graph)
    return proto
