package dev.mt5lite.core

/**
 * A dense row-major tensor of the contract: float32 (activations, logits, caches) or int64 (ids, masks, position).
 * Exactly one of [floats] and [longs] is set, matching [dtype].
 */
class Tensor private constructor(val dtype: DType, val shape: IntArray, val floats: FloatArray?, val longs: LongArray?) {
    enum class DType(val manifestName: String, val bytes: Int) {
        FLOAT32("float32", 4), INT64("int64", 8);

        companion object {
            /** The dtype a manifest names ("float32" or "int64"); anything else is refused. */
            fun of(name: String): DType = values().firstOrNull { it.manifestName == name }
                ?: throw ModelFileException("tensor dtype '$name' is not one of float32, int64; re-export the model")
        }
    }

    /** Number of elements: the product of [shape]. */
    val size: Int get() = elementCount(shape)

    fun floatData(): FloatArray = floats ?: throw IllegalStateException("tensor is $dtype, not float32")
    fun longData(): LongArray = longs ?: throw IllegalStateException("tensor is $dtype, not int64")

    /** A new tensor of this one's [rows] along [axis], in that order (a row may repeat): beams taken from inputs. */
    fun selectRows(axis: Int, rows: IntArray): Tensor {
        val outer = elementCount(shape.copyOfRange(0, axis))
        val inner = elementCount(shape.copyOfRange(axis + 1, shape.size))
        val newShape = shape.copyOf().also { it[axis] = rows.size }
        val source: Any = floats ?: longData()
        val target: Any = if (floats != null) FloatArray(elementCount(newShape)) else LongArray(elementCount(newShape))
        for (o in 0 until outer) {
            for ((j, row) in rows.withIndex()) {
                System.arraycopy(source, (o * shape[axis] + row) * inner, target, (o * rows.size + j) * inner, inner)
            }
        }
        return if (target is FloatArray) of(newShape, target) else of(newShape, target as LongArray)
    }

    /** Each index along the first axis as a tensor of its own (copied): a stacked `[L,...]` tensor's layers. */
    fun layers(): List<Tensor> {
        val inner = shape.copyOfRange(1, shape.size)
        val count = elementCount(inner)
        return List(shape[0]) { l ->
            if (floats != null) of(inner, floats.copyOfRange(l * count, (l + 1) * count))
            else of(inner, longData().copyOfRange(l * count, (l + 1) * count))
        }
    }

    companion object {
        fun elementCount(shape: IntArray): Int = shape.fold(1) { acc, d -> acc * d }

        fun of(shape: IntArray, data: FloatArray): Tensor {
            require(data.size == elementCount(shape)) { "${data.size} floats for shape ${shape.toList()}" }
            return Tensor(DType.FLOAT32, shape, data, null)
        }

        fun of(shape: IntArray, data: LongArray): Tensor {
            require(data.size == elementCount(shape)) { "${data.size} longs for shape ${shape.toList()}" }
            return Tensor(DType.INT64, shape, null, data)
        }

        fun zeros(shape: IntArray, dtype: DType): Tensor = when (dtype) {
            DType.FLOAT32 -> of(shape, FloatArray(elementCount(shape)))
            DType.INT64 -> of(shape, LongArray(elementCount(shape)))
        }
    }
}

/**
 * One graph of an export (the encoder or the decoder step) as the app's engine runs it: tensors in and out by the
 * contract's names. The Android app implements it on LiteRT's `CompiledModel`; tests implement it on LiteRT's C
 * API and on recorded outputs.
 */
interface Graph {
    /** Run the graph once on [inputs] (every input the manifest lists, by name); returns every output by name. */
    fun run(inputs: Map<String, Tensor>): Map<String, Tensor>
}

/** Opens the graphs of an export: [open] gets the graph's file and the signature inside it, from the manifest. */
interface GraphLoader {
    fun open(file: java.io.File, signature: String, spec: GraphSpec): Graph
}
