"""The deployment contract: the two graphs every engine runs, by tensor name (lean: numpy only).

- **encoder**: ``input_ids [B,S]``, ``attention_mask [B,S]`` -> ``encoder_hidden_states [B,S,D]``, ``cross_k`` and
  ``cross_v [L,B,H,S,d_kv]`` (every decoder layer's cross-attention K/V, computed once).
- **decoder step**: ``decoder_input_ids [B,1]``, ``position [1]``, ``encoder_attention_mask [B,S]``, the cross K/V
  and a fixed-size self-attention cache ``self_k_cache``/``self_v_cache [L,B,H,T_max,d_kv]`` -> ``logits [B,V]``,
  ``new_self_k``/``new_self_v [L,B,H,1,d_kv]``; the host writes the new K/V into the cache at ``position``.

Exporters write these names into every graph and the manifest; runtimes build their feeds by name from here and
refuse an export whose graphs name their tensors otherwise.
"""

from __future__ import annotations

import numpy as np

ENCODER_INPUTS = ("input_ids", "attention_mask")
ENCODER_OUTPUTS = ("encoder_hidden_states", "cross_k", "cross_v")
DECODER_INPUTS = ("decoder_input_ids", "position", "encoder_attention_mask", "cross_k", "cross_v",
                  "self_k_cache", "self_v_cache")
DECODER_OUTPUTS = ("logits", "new_self_k", "new_self_v")
ROLES = ("encoder", "decoder")
NAMES = {"encoder": (ENCODER_INPUTS, ENCODER_OUTPUTS), "decoder": (DECODER_INPUTS, DECODER_OUTPUTS)}

#: The batch axis of every tensor of the contract (``position`` has none: one position for the whole batch).
BATCH_AXIS: dict[str, int | None] = {
    "input_ids": 0, "attention_mask": 0, "encoder_hidden_states": 0, "cross_k": 1, "cross_v": 1,
    "decoder_input_ids": 0, "position": None, "encoder_attention_mask": 0, "self_k_cache": 1, "self_v_cache": 1,
    "logits": 0, "new_self_k": 1, "new_self_v": 1,
}
#: The source-length axis of the tensors that have one (parity compares only real source positions).
SOURCE_AXIS: dict[str, int] = {"encoder_hidden_states": 1, "cross_k": 3, "cross_v": 3}
#: Integer inputs are int64; everything else is float32.
INT64_TENSORS = frozenset({"input_ids", "attention_mask", "decoder_input_ids", "position", "encoder_attention_mask"})


#: The lengths the host builds its feeds from (manifest keys), and the tensor axes that must agree with them.
LENGTHS = ("max_target_length", "vocab_size", "max_source_length")
LENGTH_AXES = {"self_k_cache": (3, "max_target_length"), "self_v_cache": (3, "max_target_length"),
               "logits": (1, "vocab_size"), "input_ids": (1, "max_source_length")}


def contract_dtype(name: str) -> str:
    """The dtype the contract gives tensor ``name``."""
    return "int64" if name in INT64_TENSORS else "float32"


def tensor(name: str, shape: list) -> dict:
    """A manifest tensor entry: name, dtype and shape (symbolic dimensions are strings)."""
    return {"name": name, "dtype": contract_dtype(name), "shape": shape}


def graph_specs(layers: int, heads: int, d_kv: int, d_model: int, vocab_size: int, max_source_length: int,
                max_target_length: int, static_shapes: bool, files: dict[str, str]) -> dict:
    """Names, dtypes and shapes of both graphs as the manifest records them; with ``static_shapes`` batch is 1
    and the source length is ``max_source_length``, else both are symbolic."""
    batch = 1 if static_shapes else "batch"
    source = max_source_length if static_shapes else "source_length"
    cross = [layers, batch, heads, source, d_kv]
    cache = [layers, batch, heads, max_target_length, d_kv]
    shapes = {
        "input_ids": [batch, source], "attention_mask": [batch, source],
        "encoder_hidden_states": [batch, source, d_model], "cross_k": cross, "cross_v": cross,
        "decoder_input_ids": [batch, 1], "position": [1], "encoder_attention_mask": [batch, source],
        "self_k_cache": cache, "self_v_cache": cache, "logits": [batch, vocab_size],
        "new_self_k": [layers, batch, heads, 1, d_kv], "new_self_v": [layers, batch, heads, 1, d_kv],
    }
    return {role: {"file": files[role],
                   "inputs": [tensor(name, shapes[name]) for name in NAMES[role][0]],
                   "outputs": [tensor(name, shapes[name]) for name in NAMES[role][1]]}
            for role in ROLES}


def name_problems(graphs: dict) -> list[str]:
    """How a manifest's ``graphs`` differ from the contract's tensor names (empty when they match)."""
    problems = []
    for role in ROLES:
        spec = graphs.get(role) if isinstance(graphs, dict) else None
        if not isinstance(spec, dict):
            problems.append(f"no {role} graph")
            continue
        for kind, expected in zip(("inputs", "outputs"), NAMES[role], strict=True):
            found = [t.get("name") for t in spec.get(kind, []) if isinstance(t, dict)]
            if sorted(found) != sorted(expected):
                problems.append(f"{role} {kind} are {found}, the contract's are {list(expected)}")
    return problems


def spec_problems(graphs: dict, lengths: dict) -> list[str]:
    """How a manifest's tensor entries (``graphs``, names already checked) disagree with the contract: a dtype
    other than the contract's, a shape that is not a list of sizes or names, or a length the host builds its feeds
    from (``lengths``: ``max_target_length``, ``vocab_size``, ``max_source_length``) that the shapes contradict."""
    problems = []
    for role in ROLES:
        for entry in graphs[role]["inputs"] + graphs[role]["outputs"]:
            name, shape = entry["name"], entry.get("shape")
            dtype = contract_dtype(name)
            if entry.get("dtype") != dtype:
                problems.append(f"{role} {name} has dtype {entry.get('dtype')!r}, the contract's is {dtype!r}")
            if not isinstance(shape, list) or not all(isinstance(d, (int, str)) for d in shape):
                problems.append(f"{role} {name} has shape {shape!r}, not a list of sizes and names")
                continue
            axis, key = LENGTH_AXES.get(name, (None, None))
            size = shape[axis] if axis is not None and len(shape) > axis else None
            if isinstance(size, int) and size != lengths.get(key):
                problems.append(f"{role} {name} has {size} along axis {axis}, but {key} is {lengths.get(key)!r}")
    return problems


def _dimension_agrees(have, want) -> bool:
    """A fixed size in the graph must be the manifest's; an open one (a name, ``None`` or -1) must be a name there."""
    fixed = isinstance(have, int) and have >= 0
    return have == want if fixed else isinstance(want, str)


def engine_problems(spec: dict, found: dict[str, tuple[str, list]]) -> list[str]:
    """How one graph's manifest entry (``spec``) disagrees with what the engine reads from the graph file itself
    (``found``: tensor name -> dtype and shape, a dimension the engine leaves open as a ``str`` or ``None``)."""
    entries = {t["name"]: t for t in spec["inputs"] + spec["outputs"]}
    if set(found) != set(entries):
        return [f"the graph's tensors are {sorted(found)}, the manifest's {sorted(entries)}"]
    problems = []
    for name, (dtype, shape) in found.items():
        claimed = entries[name]
        sizes_agree = len(shape) == len(claimed["shape"]) and all(
            _dimension_agrees(have, want) for have, want in zip(shape, claimed["shape"], strict=True))
        if dtype != claimed["dtype"] or not sizes_agree:
            problems.append(f"{name} is {dtype} {list(shape)} in the graph, {claimed['dtype']} "
                            f"{claimed['shape']} in the manifest")
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
        axis = BATCH_AXIS[name]
        out[name] = value if axis is None else value[(slice(None),) * axis + (rows,)]
    return out


def concat_rows(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Outputs of several batch slices joined back along each tensor's batch axis."""
    return {name: np.concatenate([p[name] for p in parts], axis=BATCH_AXIS[name]) for name in parts[0]}


def through_eos(ids: list[int], eos_id: int) -> list[int]:
    """Generated ``ids`` up to and including the first ``eos_id`` (all of them when there is none): the ids every
    decoder of the project returns."""
    return ids[: ids.index(eos_id) + 1] if eos_id in ids else ids
