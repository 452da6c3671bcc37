package dev.mt5lite.core

/** A tensor of the contract as the manifest describes it. */
class TensorSpec(val name: String, val shape: IntArray, val dtype: Tensor.DType)

/** One graph of an export: its file, the signature inside that file, and its tensors in signature order. */
class GraphSpec(
    val role: String,
    val file: String,
    val signature: String,
    val inputs: List<TensorSpec>,
    val outputs: List<TensorSpec>
) {
    /** The decoder layers a decoder step takes (its `cross_k_N` inputs, one per layer); 0 for an encoder. */
    val layers: Int get() = inputs.count { it.name.startsWith("cross_k_") }
}

/** A model file that is missing, damaged, foreign or inconsistent with its manifest. The message is one line. */
class ModelFileException(message: String) : RuntimeException(message)

/** Input the caller should fix (empty text, an option out of range). The message is one line. */
class InputException(message: String) : IllegalArgumentException(message)
