"""The deployment contract: the two graphs every engine runs, by tensor name (lean: numpy only).

- **encoder**: ``input_ids [B,S]``, ``attention_mask [B,S]`` -> ``encoder_hidden_states [B,S,D]``, ``cross_k`` and
  ``cross_v [L,B,H,S,d_kv]`` (every decoder layer's cross-attention K/V, computed once).
- **decoder step**: ``decoder_input_ids [B,1]``, ``position [1]``, ``encoder_attention_mask [B,S]``, the cross K/V
  and a fixed-size self-attention cache ``self_k_cache``/``self_v_cache [L,B,H,T_max,d_kv]`` -> ``logits [B,V]``,
  ``new_self_k``/``new_self_v [L,B,H,1,d_kv]``; the host writes the new K/V into the cache at ``position``.
  The graph takes the four stacked tensors one layer per input (``cross_k_0`` ... ``cross_k_{L-1}``, each
  ``[B,H,S,d_kv]``): a graph that sliced a stacked input would copy every layer's cache at every step, while the
  host's ``[l]`` of a C-contiguous stacked array is a view. Hosts keep the stacked arrays; ``graph_feeds`` hands a
  graph the views it names.

Exporters write these names into every graph and the manifest; runtimes build their feeds by name from here and
refuse an export whose graphs name their tensors otherwise.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numpy as np

ENCODER_INPUTS = ("input_ids", "attention_mask")
ENCODER_OUTPUTS = ("encoder_hidden_states", "cross_k", "cross_v")
DECODER_INPUTS = ("decoder_input_ids", "position", "encoder_attention_mask", "cross_k", "cross_v",
                  "self_k_cache", "self_v_cache")
DECODER_OUTPUTS = ("logits", "new_self_k", "new_self_v")
ROLES = ("encoder", "decoder")
NAMES = {"encoder": (ENCODER_INPUTS, ENCODER_OUTPUTS), "decoder": (DECODER_INPUTS, DECODER_OUTPUTS)}
#: The stacked ``[L,...]`` tensors a decoder step takes one layer per input, ``cross_k_0`` ... ``cross_k_{L-1}``.
LAYERED = ("cross_k", "cross_v", "self_k_cache", "self_v_cache")
LAYER_INPUT = re.compile(r"(" + "|".join(LAYERED) + r")_([0-9]+)")
#: A static export's further graphs, each the same graph and weights as its kind's at another fixed shape:
#: ``decoder_b4`` is the decoder step at batch 4 (the beams of beam search in one call), ``encoder_s16`` the encoder
#: over 16 source positions instead of ``max_source_length`` (a source-length bucket), ``decoder_b4_s16`` both.
GRAPH_ROLE = re.compile(r"(encoder|decoder)(?:_b([1-9][0-9]*))?(?:_s([1-9][0-9]*))?")

#: The batch axis of every tensor of the contract (``position`` has none: one position for the whole batch).
BATCH_AXIS: dict[str, int | None] = {
    "input_ids": 0, "attention_mask": 0, "encoder_hidden_states": 0, "cross_k": 1, "cross_v": 1,
    "decoder_input_ids": 0, "position": None, "encoder_attention_mask": 0, "self_k_cache": 1, "self_v_cache": 1,
    "logits": 0, "new_self_k": 1, "new_self_v": 1,
}
#: The source-length axis of the tensors that have one (parity compares only real source positions).
SOURCE_AXIS: dict[str, int] = {"input_ids": 1, "attention_mask": 1, "encoder_hidden_states": 1, "cross_k": 3,
                               "cross_v": 3, "encoder_attention_mask": 1}
#: Integer inputs are int64; everything else is float32.
INT64_TENSORS = frozenset({"input_ids", "attention_mask", "decoder_input_ids", "position", "encoder_attention_mask"})


#: The lengths the host builds its feeds from (manifest keys), and the tensor axes that must agree with them.
LENGTHS = ("max_target_length", "vocab_size", "max_source_length")
LENGTH_AXES = {"self_k_cache": (3, "max_target_length"), "self_v_cache": (3, "max_target_length"),
               "logits": (1, "vocab_size"), "input_ids": (1, "max_source_length")}


@dataclass(frozen=True)
class Role:
    """What a graph's role says: its kind (``encoder`` or ``decoder``), the batch it takes, and the source length of
    a source-length bucket (None: the export's ``max_source_length``)."""

    kind: str
    batch: int = 1
    source: int | None = None

    @property
    def name(self) -> str:
        """The role's name: ``decoder``, ``decoder_b4``, ``encoder_s16``, ``decoder_b4_s16``."""
        return self.kind + (f"_b{self.batch}" if self.batch > 1 else "") + (f"_s{self.source}" if self.source else "")


def parse_role(role: str) -> Role | None:
    """The ``Role`` a graph's role names; None for an unknown role (an encoder takes batch 1 only)."""
    found = GRAPH_ROLE.fullmatch(role)
    if not found or (found[2] and (found[1] == "encoder" or int(found[2]) == 1)):
        return None
    return Role(found[1], int(found[2] or 1), int(found[3]) if found[3] else None)


def batched_role(batch: int, source: int | None = None) -> str:
    """The role of a static export's decoder step at batch ``batch`` (``decoder`` itself at batch 1), over
    ``source`` positions (None: the export's own length)."""
    return Role("decoder", batch, source).name


def role_kind(role: str) -> str | None:
    """The contract graph ``role`` is an instance of (``encoder`` or ``decoder``), None for an unknown role."""
    found = parse_role(role)
    return found.kind if found else None


def decoder_batches(roles, source: int | None = None) -> dict[int, str]:
    """The batch sizes a static export's decoder steps serve over ``source`` positions (None: the export's own
    length), each with its role (batch 1: ``decoder``)."""
    found = {}
    for role in roles:
        parsed = parse_role(role)
        if parsed and parsed.kind == "decoder" and parsed.source == source:
            found[parsed.batch] = role
    return dict(sorted(found.items()))


def source_buckets(roles) -> list[int]:
    """The shorter source lengths a static export has graphs for (its encoder at each: ``encoder_s16``), ascending;
    the export's ``max_source_length`` serves the rest."""
    return sorted({parsed.source for parsed in map(parse_role, roles)
                   if parsed and parsed.kind == "encoder" and parsed.source})


def layer_input(name: str, layer: int) -> str:
    """The decoder step's input of layer ``layer`` of stacked tensor ``name``: ``cross_k_3``."""
    return f"{name}_{layer}"


@functools.lru_cache(maxsize=1024)
def split_layer(name: str) -> tuple[str, int | None]:
    """The stacked tensor a graph's tensor ``name`` is one layer of, and the layer (``cross_k_3`` -> ``cross_k``,
    3); any other name is itself, with layer None."""
    found = LAYER_INPUT.fullmatch(name)
    return (found[1], int(found[2])) if found else (name, None)


def graph_names(kind: str, layers: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The input and output names of a graph of ``kind`` (``encoder`` or ``decoder``) over ``layers`` decoder
    layers, in order: the decoder step takes its stacked inputs one per layer (``LAYERED``)."""
    inputs, outputs = NAMES[kind]
    if kind == "decoder":
        inputs = tuple(name for name in inputs if name not in LAYERED) + tuple(
            layer_input(name, layer) for name in LAYERED for layer in range(layers))
    return inputs, outputs


def graph_feeds(names, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The feeds of a graph whose inputs are ``names``, from the host's ``feeds`` by contract name: a per-layer input
    (``cross_k_3``) gets layer 3 of the stacked ``cross_k`` (a view, no copy), every other its own feed."""
    out = {}
    for name in names:
        base, layer = split_layer(name)
        out[name] = feeds[name] if layer is None or name in feeds else feeds[base][layer]
    return out


def _in_layer(axis: int | None, layer: int | None) -> int | None:
    """A stacked tensor's ``axis`` in one ``layer`` of it (None: the tensor itself), which lacks the layer axis."""
    return axis - 1 if layer is not None and axis is not None else axis


def batch_axis(name: str) -> int | None:
    """The batch axis of contract tensor ``name`` (one layer of a stacked tensor has it one axis earlier)."""
    base, layer = split_layer(name)
    return _in_layer(BATCH_AXIS[base], layer)


def source_axis(name: str) -> int | None:
    """The source-length axis of contract tensor ``name``, None where it has none."""
    base, layer = split_layer(name)
    return _in_layer(SOURCE_AXIS.get(base), layer)


def length_axis(name: str) -> tuple[int | None, str | None]:
    """The axis of contract tensor ``name`` that must agree with a length of the manifest, and that length's key
    (``LENGTH_AXES``); (None, None) for a tensor without one."""
    base, layer = split_layer(name)
    axis, key = LENGTH_AXES.get(base, (None, None))
    return _in_layer(axis, layer), key


def contract_dtype(name: str) -> str:
    """The dtype the contract gives tensor ``name``."""
    return "int64" if split_layer(name)[0] in INT64_TENSORS else "float32"


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of a graph as the manifest records it: name, dtype and shape (a symbolic dimension is a str)."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]

    @classmethod
    def of(cls, name: str, shape) -> TensorSpec:
        """Tensor ``name`` of the contract with ``shape`` (its dtype is the contract's)."""
        return cls(name, contract_dtype(name), tuple(shape))

    @classmethod
    def from_dict(cls, entry: dict) -> TensorSpec:
        """The tensor a manifest's JSON entry describes."""
        return cls(entry["name"], entry["dtype"], tuple(entry["shape"]))

    def to_dict(self) -> dict:
        """The manifest's JSON entry."""
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}


@dataclass(frozen=True)
class GraphSpec:
    """One graph of an export: its file, its tensors in order, and where an engine finds it in that file."""

    file: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    external_data: tuple[str, ...] = ()  # ONNX: the weight files the graph points into
    signature: str | None = None  # LiteRT: the signature of the one .tflite
    method: str | None = None  # ExecuTorch: the method of the one .pte

    @functools.cached_property
    def input_names(self) -> tuple[str, ...]:
        """The graph's input names, in order (what ``graph_feeds`` builds its feeds for)."""
        return tuple(t.name for t in self.inputs)

    @property
    def tensors(self) -> dict[str, TensorSpec]:
        """Every tensor by name, inputs then outputs."""
        return {t.name: t for t in (*self.inputs, *self.outputs)}

    @property
    def files(self) -> list[str]:
        """The files the graph consists of: the graph, then the external-data files it points into."""
        return [self.file, *self.external_data]

    @classmethod
    def from_dict(cls, entry: dict) -> GraphSpec:
        """The graph a manifest's JSON entry describes."""
        return cls(entry["file"], tuple(map(TensorSpec.from_dict, entry["inputs"])),
                   tuple(map(TensorSpec.from_dict, entry["outputs"])), tuple(entry.get("external_data", ())),
                   entry.get("signature"), entry.get("method"))

    def to_dict(self) -> dict:
        """The manifest's JSON entry (engine fields only where set)."""
        entry = {"file": self.file, "inputs": [t.to_dict() for t in self.inputs],
                 "outputs": [t.to_dict() for t in self.outputs]}
        extra = {"external_data": list(self.external_data), "signature": self.signature, "method": self.method}
        return entry | {key: value for key, value in extra.items() if value}


@dataclass(frozen=True)
class ContractDims:
    """What the contract's shapes are made of: the model's sizes and the export's lengths."""

    layers: int  # decoder layers (the cross and self K/V of each)
    heads: int
    d_kv: int
    d_model: int
    vocab_size: int
    max_source_length: int  # S
    max_target_length: int  # T_max, the self-attention cache's length
    static_shapes: bool  # batch 1 and S fixed (TFLite, ExecuTorch); else both symbolic


def graph_specs(dims: ContractDims, files: dict[str, str]) -> dict[str, GraphSpec]:
    """Names, dtypes and shapes of both graphs as the manifest records them (``graph_names``); with
    ``static_shapes`` batch is 1 and the source length is ``max_source_length``, else both are symbolic."""
    batch = 1 if dims.static_shapes else "batch"
    source = dims.max_source_length if dims.static_shapes else "source_length"
    cross = [dims.layers, batch, dims.heads, source, dims.d_kv]
    cache = [dims.layers, batch, dims.heads, dims.max_target_length, dims.d_kv]
    new = [dims.layers, batch, dims.heads, 1, dims.d_kv]
    shapes = {
        "input_ids": [batch, source], "attention_mask": [batch, source],
        "encoder_hidden_states": [batch, source, dims.d_model], "cross_k": cross, "cross_v": cross,
        "decoder_input_ids": [batch, 1], "position": [1], "encoder_attention_mask": [batch, source],
        "self_k_cache": cache, "self_v_cache": cache, "logits": [batch, dims.vocab_size],
        "new_self_k": new, "new_self_v": new,
    }
    def spec(name: str) -> TensorSpec:
        base, layer = split_layer(name)
        return TensorSpec.of(name, shapes[base] if layer is None else shapes[base][1:])

    return {role: GraphSpec(files[role], *(tuple(map(spec, names)) for names in graph_names(role, dims.layers)))
            for role in ROLES}


def with_shape(spec: GraphSpec, file: str, batch: int | None = None, source: int | None = None) -> GraphSpec:
    """``spec`` (a static graph) in ``file`` with every batch axis fixed at ``batch`` and every source-length axis
    at ``source`` instead (None: as it is)."""
    def reshaped(tensor: TensorSpec) -> TensorSpec:
        shape = list(tensor.shape)
        for axis, size in ((batch_axis(tensor.name), batch), (source_axis(tensor.name), source)):
            if axis is not None and size is not None:
                shape[axis] = size
        return TensorSpec(tensor.name, tensor.dtype, tuple(shape))

    return GraphSpec(file, tuple(map(reshaped, spec.inputs)), tuple(map(reshaped, spec.outputs)),
                     spec.external_data, spec.signature, spec.method)


def _dimension_agrees(have, want) -> bool:
    """A fixed size in the graph must be the manifest's; an open one (a name, ``None`` or -1) must be a name there."""
    fixed = isinstance(have, int) and have >= 0
    return have == want if fixed else isinstance(want, str)


def engine_problems(spec: GraphSpec, found: dict[str, tuple[str, list]]) -> list[str]:
    """How one graph's manifest entry (``spec``) disagrees with what the engine reads from the graph file itself
    (``found``: tensor name -> dtype and shape, a dimension the engine leaves open as a ``str`` or ``None``)."""
    entries = spec.tensors
    if set(found) != set(entries):
        return [f"the graph's tensors are {sorted(found)}, the manifest's {sorted(entries)}"]
    problems = []
    for name, (dtype, shape) in found.items():
        claimed = entries[name]
        sizes_agree = len(shape) == len(claimed.shape) and all(
            _dimension_agrees(have, want) for have, want in zip(shape, claimed.shape, strict=True))
        if dtype != claimed.dtype or not sizes_agree:
            problems.append(f"{name} is {dtype} {list(shape)} in the graph, {claimed.dtype} "
                            f"{list(claimed.shape)} in the manifest")
    return problems


def encoder_feeds(input_ids: np.ndarray, attention_mask: np.ndarray) -> dict[str, np.ndarray]:
    """The encoder's feeds by name."""
    return {"input_ids": np.asarray(input_ids, np.int64), "attention_mask": np.asarray(attention_mask, np.int64)}


def step_feeds(tokens: np.ndarray, position: int, attention_mask: np.ndarray, cross_k: np.ndarray,
               cross_v: np.ndarray, self_k: np.ndarray, self_v: np.ndarray) -> dict[str, np.ndarray]:
    """One decoder step's feeds by name (``tokens`` of any shape ``[B]`` or ``[B,1]``)."""
    return {"decoder_input_ids": np.asarray(tokens, np.int64).reshape(-1, 1),
            "position": np.array([position], dtype=np.int64),
            "encoder_attention_mask": np.asarray(attention_mask, np.int64),
            "cross_k": cross_k, "cross_v": cross_v, "self_k_cache": self_k, "self_v_cache": self_v}


def batch_rows(feeds: dict[str, np.ndarray], rows: slice) -> dict[str, np.ndarray]:
    """The feeds of batch rows ``rows`` (each tensor cut along its own batch axis)."""
    out = {}
    for name, value in feeds.items():
        axis = batch_axis(name)
        out[name] = value if axis is None else value[(slice(None),) * axis + (rows,)]
    return out


def repeat_rows(value: np.ndarray, name: str, times: int) -> np.ndarray:
    """Tensor ``name`` with each batch row repeated ``times`` times along its batch axis (``position`` unchanged)."""
    axis = batch_axis(name)
    return value if axis is None or times == 1 else np.repeat(value, times, axis=axis)


def bucket_length(width: int, lengths) -> int:
    """The shortest of ``lengths`` (a static export's source lengths) that holds ``width`` positions."""
    return min(length for length in lengths if length >= width)


def to_source_length(tensors: dict[str, np.ndarray], length: int) -> dict[str, np.ndarray]:
    """``tensors`` by name with every source-length axis (``SOURCE_AXIS``) cut or zero-padded to ``length``
    positions: feeds padded for a longer or shorter source-length bucket, outputs cut back (no copy where a tensor
    already has ``length``)."""
    out = {}
    for name, value in tensors.items():
        axis = source_axis(name)
        if axis is None or value.shape[axis] == length:
            out[name] = value
        elif value.shape[axis] > length:
            out[name] = value[(slice(None),) * axis + (slice(0, length),)]
        else:
            padding = [(0, 0)] * value.ndim
            padding[axis] = (0, length - value.shape[axis])
            out[name] = np.pad(value, padding)
    return out


def concat_rows(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Outputs of several batch slices joined back along each tensor's batch axis."""
    return {name: np.concatenate([p[name] for p in parts], axis=batch_axis(name)) for name in parts[0]}


def through_eos(ids: list[int], eos_id: int) -> list[int]:
    """Generated ``ids`` up to and including the first ``eos_id`` (all of them when there is none): the ids every
    decoder of the project returns."""
    return ids[: ids.index(eos_id) + 1] if eos_id in ids else ids
