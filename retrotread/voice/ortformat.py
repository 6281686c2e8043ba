"""An onnxruntime "ORT format" model as an ordinary ONNX model, so its weights unpack once.

Moonshine's English model ships (in the moonshine-cpp wheel) as ORT format files whose
weights are stored as int8 and turned back into floats by ``Cast``, ``Mul`` and ``Add``
nodes **inside the graph**. onnxruntime does not fold constants in a model loaded from
ORT format, so every decoder step unpacked all of the weights again: about 120 ms per
word piece, nearly all of it unpacking (docs/voice-model.md, "A faster Moonshine").

onnxruntime can write any model it has loaded as ONNX (the session options
``optimized_model_filepath`` and ``session.save_model_format``). Loaded from that ONNX,
its ordinary graph optimizations fold the unpacking into plain float weights once, at
load. One repair is needed on the way: onnxruntime writes the subgraphs of ``If`` nodes
without a name, which its own ONNX loader then rejects ("Field 'name' of 'graph' is
required to be non-empty"), so ``to_onnx`` names them (with the ``onnx`` package).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any


def to_onnx(path: Path) -> bytes:
    """The ORT format model at ``path``, serialized as an ONNX model."""
    import onnx
    import onnxruntime as ort
    with tempfile.TemporaryDirectory(prefix="retrotread-ort-") as tmp:
        saved = Path(tmp) / "model.onnx"
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.optimized_model_filepath = str(saved)
        options.add_session_config_entry("session.save_model_format", "ONNX")
        ort.InferenceSession(str(path), sess_options=options,
                             providers=["CPUExecutionProvider"])
        model = onnx.load(str(saved))
    _name_graphs(model.graph, "main")
    data: bytes = model.SerializeToString()
    return data


def _name_graphs(graph: Any, name: str) -> None:
    """Give every unnamed (sub)graph a name of its own."""
    if not graph.name:
        graph.name = name
    for index, node in enumerate(graph.node):
        for attr in node.attribute:
            if attr.HasField("g"):
                _name_graphs(attr.g, f"{name}.{index}.{attr.name}")
            for k, sub in enumerate(attr.graphs):
                _name_graphs(sub, f"{name}.{index}.{attr.name}.{k}")
