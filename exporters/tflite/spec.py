"""What the TFLite export hands each of its worker steps (``mt5lite.exporters.tflite.worker``): one typed spec,
written as JSON for the child process and read back there, so a renamed or missing field fails at once."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from mt5lite.contract import TensorSpec


@dataclass
class GraphJob:
    """One graph (a role) to convert: its ONNX file and the contract's tensor specs; int8 adds its calibration."""

    onnx: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    mask_value: float | None = None  # int8: the attention-masking constant (``int8_masking``)
    calibration: str | None = None  # int8: the ``FeedStore`` directory of its calibration feeds
    batch: int = 1  # a batched decoder step's batch: its calibration feeds are batch-1 feeds, rows repeated
    source: int | None = None  # a source-length bucket's length: its calibration feeds are cut to it

    @property
    def base(self) -> bool:
        """Whether this is a graph of the contract itself, not one at another batch or source length."""
        return self.batch == 1 and self.source is None


@dataclass
class LmHeadStandIn:
    """The lm_head a converted float model holds a stand-in for (``tflite_splice``): the ONNX initializer, the file of
    the factors folded into it, and the stand-in's rows."""

    weight: str
    factors: str
    rows: int


@dataclass
class WorkerSpec:
    """Everything a worker step reads: the output, the precision, each graph, and what earlier steps found."""

    output: str
    quantize: str
    graphs: dict[str, GraphJob]
    float_model: str  # int8: the float model ``convert`` writes before calibration
    calibrated_model: str  # int8: that model with its tensors' ranges recorded
    allow_flex: bool = False
    source: str | None = None  # capture: the fp32 ONNX export decoding the draw
    draw: dict | None = None  # capture: ``CalibrationDraw``'s fields
    store: str | None = None  # capture: where the feeds go
    progress: bool = False
    logits_range: list[float] | None = None  # int8: the logits' calibrated range (from ONNX Runtime)
    float_parts: list[str] = field(default_factory=list)  # int8: the parts that stay float (float_parts.FLOAT_PARTS)
    use_stand_in: bool = True  # int8: convert with the lm_head as a stand-in (False: the real one, for comparison)
    lm_head_stand_ins: dict[str, LmHeadStandIn] = field(default_factory=dict)  # role -> what ``convert`` stood in

    def to_json(self) -> str:
        """The spec as the JSON a worker step reads."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> WorkerSpec:
        """The spec ``to_json`` wrote."""
        fields = json.loads(text)
        fields["graphs"] = {role: GraphJob(**graph | {kind: [TensorSpec.from_dict(t) for t in graph[kind]]
                                                     for kind in ("inputs", "outputs")})
                            for role, graph in fields["graphs"].items()}
        fields["lm_head_stand_ins"] = {role: LmHeadStandIn(**s) for role, s in fields["lm_head_stand_ins"].items()}
        return cls(**fields)
