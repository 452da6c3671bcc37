"""Mixed precision for ExecuTorch int8: each linear's error measured in the quantized program itself, and dynamic
int8 activations where they hold a linear better than static ones.

XNNPACK's static int8 linear quantizes its input with one calibrated range per tensor and requantizes its output
the same way. On a model whose activations carry outliers that training put there, no single linear is far off
(the trained-outlier fixture's worst measured 0.047 after smoothing), but the errors add up along the residual
stream: an FFN ``wo`` input's range is set by a few tokens, and every other token gets coarse steps. So each
linear's error is measured, not simulated: the converted (reference) program runs on calibration feeds, and at every
linear its int8 result is compared with the float weight applied to the same float input; beside it, the same int8
weight with dynamic activations (one range per run, computed on the fly; float output, as XNNPACK's ``qd8``
linears run). A linear gets dynamic activations where that divides its measured error by ``DYNAMIC_GAIN`` or more
(same bytes; a range computed per run), if it is the only linear reading its input: XNNPACK's partitioner
refuses dynamic activations shared by several linears (q/k/v, wi_0/wi_1: "found dependency cycles"), so those
stay static. The measure is taken again on the mixed program, for the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: A linear gets dynamic activations where they divide its measured static error by at least this much.
DYNAMIC_GAIN = 1.5
#: Calibration runs per graph the errors are measured on (spread over the draw).
MEASURE_RUNS = 48


def linear_weights(module) -> dict[str, tuple]:
    """Each ``aten.linear`` node of an exported program's module (before quantization), by node name: its float
    weight and bias, the module path it comes from, and whether it is the only linear reading its input."""
    import torch

    weights = {}
    for node in module.graph.nodes:
        if node.op == "call_function" and node.target == torch.ops.aten.linear.default:
            weight, bias = (_attribute(module, a) for a in (node.args[1], node.args[2] if len(node.args) > 2 else None))
            stack = node.meta.get("nn_module_stack") or {}
            path = list(stack.values())[-1][0] if stack else node.name
            sole = sum(user.target == torch.ops.aten.linear.default for user in node.args[0].users) == 1
            weights[node.name] = (weight.detach().clone(), None if bias is None else bias.detach().clone(), path, sole)
    return weights


def _attribute(module, node):
    """The tensor a ``get_attr`` node reads (None for no node)."""
    if node is None:
        return None
    value = module
    for part in node.target.split("."):
        value = getattr(value, part)
    return value


def measure_linears(converted, weights: dict[str, tuple], feeds: list[tuple]) -> dict[str, tuple[float, float]]:
    """Each linear's relative error ``||int8 result - W x|| / ||W x||`` in the ``converted`` program, summed over
    ``feeds`` (argument tuples), ``x`` being the float activation the program computed before quantizing it; and
    the error the same int8 weight gives with dynamic activations (one range per run)."""
    import torch

    measure = _measuring_interpreter(converted, weights)
    with torch.no_grad():
        for args in feeds:
            measure.run(*args)
    return {name: (float(np.sqrt(err / max(ref, 1e-30))), float(np.sqrt(dynamic / max(ref, 1e-30))))
            for name, (err, ref, dynamic) in measure.sums.items()}


def _is(node, op: str) -> bool:
    return node.op == "call_function" and getattr(node.target, "__name__", "").startswith(op)


def _measuring_interpreter(module, weights: dict[str, tuple]):
    """An ``fx.Interpreter`` over ``module`` that, at each linear of ``weights``, computes the float product of its
    float input and sums (in ``.sums``) the error of what the program makes of it, after the output's
    requantization where there is one, and the error of the same int8 weight with dynamic activations."""
    import torch

    class Interpreter(torch.fx.Interpreter):
        def run_node(self, node):
            result = super().run_node(node)
            if node.op == "call_function" and node.target == torch.ops.aten.linear.default:
                self.linear(node, result)
            elif _is(node, "dequantize_per_tensor") and _is(node.args[0], "quantize_per_tensor"):
                source = node.args[0].args[0]
                if source in self.ideal:
                    self.add(source.name, result, self.ideal.pop(source))
            return result

        def linear(self, node, result):
            if node.name not in weights:
                return
            x = node.args[0]
            if _is(x, "dequantize_per_tensor") and _is(x.args[0], "quantize_per_tensor"):
                x = x.args[0].args[0]  # the float activation before its quantization
            weight, bias = weights[node.name][:2]
            ideal = torch.nn.functional.linear(self.env[x], weight, bias)
            # the same product with dynamic activations: one int8 range per run, the program's int8 weight
            low, high = min(float(self.env[x].min()), 0.0), max(float(self.env[x].max()), 0.0)
            scale = max((high - low) / 255.0, 1e-30)
            zero = round(-low / scale) - 128
            xq = (torch.clamp(torch.round(self.env[x] / scale) + zero, -128, 127) - zero) * scale
            dynamic = torch.nn.functional.linear(xq, self.env[node.args[1]], bias)
            self.sums.setdefault(node.name, [0.0, 0.0, 0.0])[2] += float(torch.sum((dynamic - ideal) ** 2))
            if any(_is(user, "quantize_per_tensor") for user in node.users):
                self.ideal[node] = ideal  # measured after the output's requantization
            else:
                self.add(node.name, result, ideal)

        def add(self, name, got, ideal):
            sums = self.sums.setdefault(name, [0.0, 0.0, 0.0])
            sums[0] += float(torch.sum((got.float() - ideal) ** 2))
            sums[1] += float(torch.sum(ideal**2))

    interpreter = Interpreter(module, garbage_collect_values=False)
    interpreter.ideal, interpreter.sums = {}, {}
    return interpreter


@dataclass
class MixedPrecision:
    """Per graph: each linear's measured errors in the static program, and those given dynamic activations."""

    static: dict = field(default_factory=dict)  # role -> {node name: (static error, dynamic error)}
    mixed: dict = field(default_factory=dict)  # role -> {node name: error measured in the mixed program}
    linears: dict = field(default_factory=dict)  # role -> {node name: (module path, only reader of its input)}

    def dynamic(self, role: str) -> set[str]:
        """The linears of ``role`` given dynamic activations: the only readers of their input whose measured error
        dynamic activations divide by ``DYNAMIC_GAIN`` or more."""
        return {name for name, (static, dynamic) in self.static.get(role, {}).items()
                if self.linears[role][name][1] and static >= DYNAMIC_GAIN * dynamic}

    def report(self) -> dict:
        """For the manifest: the rule, every linear given dynamic activations (``graph/module path``: measured
        static error, and its error in the mixed program) and the worst static error kept."""
        chosen = {role: self.dynamic(role) for role in self.static}
        dynamic = {f"{role}/{self.linears[role][name][0]}": {"static_error": round(self.static[role][name][0], 4),
                                                             "dynamic_error": round(self.mixed[role][name], 4)}
                   for role in self.static for name in sorted(chosen[role])}
        kept = [(errors[0], f"{role}/{self.linears[role][name][0]}") for role, measured in self.static.items()
                for name, errors in measured.items() if name not in chosen[role]]
        worst = max(kept, default=(0.0, None))
        return {"dynamic_gain": DYNAMIC_GAIN, "measured_runs": MEASURE_RUNS,
                "linears": sum(map(len, self.static.values())), "dynamic_activations": dynamic,
                "worst_static": {"module": worst[1], "error": round(worst[0], 4)}}
