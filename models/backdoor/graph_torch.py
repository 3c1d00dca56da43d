"""Run an ONNX graph as a differentiable PyTorch module, for the ops of `onnx_guard.ALLOWED_OPS` only.

The scanner needs gradients with respect to the input (Neural Cleanse optimises a mask and a pattern
through the model). onnx2torch would convert the graph, but it requires torchvision, whose wheels pin an
exact torch build; an interpreter for the ~30 allow-listed ops is small and keeps the attack surface to
code we read. Initialisers become buffers (the model's weights are never trained here). The input to the
last Gemm/MatMul before the output is kept as the model's penultimate representation (spectral signatures).
"""
import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper

from .onnx_guard import ALLOWED_OPS


def _attrs(node) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _pads(pads, n=2):
    """ONNX pads [b1, b2, e1, e2] → F.pad order (last dim first)."""
    if not pads:
        return None
    begin, end = pads[:n], pads[n:]
    out = []
    for b, e in zip(reversed(begin), reversed(end)):
        out += [b, e]
    return out


class OnnxGraph(torch.nn.Module):
    def __init__(self, model: onnx.ModelProto):
        super().__init__()
        graph = model.graph
        self.nodes = list(graph.node)
        unknown = {n.op_type for n in self.nodes} - ALLOWED_OPS
        if unknown:
            raise ValueError(f"unsupported ops {sorted(unknown)}")
        self.consts: dict[str, torch.Tensor] = {}
        for t in graph.initializer:
            array = numpy_helper.to_array(t)
            self.consts[t.name] = torch.from_numpy(np.array(array, copy=True))
        initializers = set(self.consts)
        self.input_name = next(i.name for i in graph.input if i.name not in initializers)
        self.output_name = graph.output[0].name
        producers = {o: n for n in self.nodes for o in n.output}
        self.feature_name = None
        node = producers.get(self.output_name)
        seen = 0
        while node is not None and seen < 8:  # walk back through Softmax/Identity/Add to the last linear layer
            if node.op_type in ("Gemm", "MatMul"):
                self.feature_name = node.input[0]
                break
            node = producers.get(node.input[0])
            seen += 1
        self.features: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env = dict(self.consts)
        env[self.input_name] = x
        for node in self.nodes:
            args = [env[i] if i else None for i in node.input]
            outs = self._run(node.op_type, args, _attrs(node))
            for name, value in zip(node.output, outs if isinstance(outs, tuple) else (outs,)):
                if name:
                    env[name] = value
        self.features = env.get(self.feature_name) if self.feature_name else None
        return env[self.output_name]

    @staticmethod
    def _run(op, a, at):
        if op == "Conv":
            if at.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
                raise ValueError("Conv auto_pad is not supported")
            x = a[0]
            pads = at.get("pads")
            if pads and len(set(pads)) > 1:
                x, padding = F.pad(x, _pads(pads)), 0
            else:
                padding = pads[0] if pads else 0
            return F.conv2d(x, a[1], a[2] if len(a) > 2 else None, stride=at.get("strides", 1), padding=padding,
                            dilation=at.get("dilations", 1), groups=at.get("group", 1))
        if op == "Relu":
            return F.relu(a[0])
        if op == "LeakyRelu":
            return F.leaky_relu(a[0], at.get("alpha", 0.01))
        if op == "Sigmoid":
            return torch.sigmoid(a[0])
        if op == "Tanh":
            return torch.tanh(a[0])
        if op == "Clip":
            lo = a[1] if len(a) > 1 and a[1] is not None else at.get("min")
            hi = a[2] if len(a) > 2 and a[2] is not None else at.get("max")
            return torch.clamp(a[0], None if lo is None else float(lo), None if hi is None else float(hi))
        if op in ("MaxPool", "AveragePool"):
            k = at["kernel_shape"]
            x = a[0]
            pads = at.get("pads")
            padding = 0
            if pads and len(set(pads)) > 1:
                x = F.pad(x, _pads(pads), value=float("-inf") if op == "MaxPool" else 0.0)
            elif pads:
                padding = pads[0]
            stride, ceil = at.get("strides", k), bool(at.get("ceil_mode", 0))
            if op == "MaxPool":
                return F.max_pool2d(x, k, stride, padding, ceil_mode=ceil)
            return F.avg_pool2d(x, k, stride, padding, ceil_mode=ceil, count_include_pad=bool(at.get("count_include_pad", 0)))
        if op == "GlobalAveragePool":
            return a[0].mean(dim=(2, 3), keepdim=True)
        if op == "Flatten":
            axis = at.get("axis", 1)
            return a[0].reshape(int(np.prod(a[0].shape[:axis])), -1)
        if op == "Reshape":
            shape = [int(s) for s in a[1].tolist()]
            if not at.get("allowzero", 0):
                shape = [a[0].shape[i] if s == 0 else s for i, s in enumerate(shape)]
            return a[0].reshape(shape)
        if op == "Gemm":
            x, w = a[0], a[1]
            x = x.t() if at.get("transA", 0) else x
            w = w.t() if at.get("transB", 0) else w
            y = at.get("alpha", 1.0) * (x @ w)
            if len(a) > 2 and a[2] is not None:
                y = y + at.get("beta", 1.0) * a[2]
            return y
        if op == "MatMul":
            return a[0] @ a[1]
        if op == "Add":
            return a[0] + a[1]
        if op == "Sub":
            return a[0] - a[1]
        if op == "Mul":
            return a[0] * a[1]
        if op == "Div":
            return a[0] / a[1]
        if op == "BatchNormalization":
            return F.batch_norm(a[0], a[3], a[4], a[1], a[2], training=False, eps=at.get("epsilon", 1e-5))
        if op == "Softmax":
            return F.softmax(a[0], dim=at.get("axis", -1))
        if op == "LogSoftmax":
            return F.log_softmax(a[0], dim=at.get("axis", -1))
        if op == "Constant":
            if "value" not in at:
                raise ValueError("Constant: only the 'value' attribute is supported")
            return torch.from_numpy(np.array(numpy_helper.to_array(at["value"]), copy=True))
        if op in ("Identity", "Dropout"):
            return a[0]
        if op == "Transpose":
            perm = at.get("perm", list(reversed(range(a[0].dim()))))
            return a[0].permute(*perm)
        if op == "Shape":
            return torch.tensor(a[0].shape, dtype=torch.int64)
        if op == "Gather":
            return torch.index_select(a[0], at.get("axis", 0) % max(a[0].dim(), 1), a[1].reshape(-1).long()).reshape(
                *a[0].shape[: at.get("axis", 0)], *a[1].shape, *a[0].shape[at.get("axis", 0) + 1 :]) if a[0].dim() else a[0]
        if op == "Unsqueeze":
            axes = a[1].tolist() if len(a) > 1 else at["axes"]
            x = a[0]
            for ax in sorted(int(v) % (x.dim() + len(axes)) for v in axes):
                x = x.unsqueeze(ax)
            return x
        if op == "Squeeze":
            axes = a[1].tolist() if len(a) > 1 and a[1] is not None else at.get("axes")
            return a[0].squeeze() if axes is None else a[0].squeeze(tuple(int(v) for v in axes))
        if op == "Concat":
            return torch.cat([t if t.dim() else t.reshape(1) for t in a], dim=at["axis"])
        raise ValueError(f"unsupported op {op}")
