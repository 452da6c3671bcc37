package dev.mt5lite.litert

import com.sun.jna.Pointer
import com.sun.jna.ptr.LongByReference
import com.sun.jna.ptr.PointerByReference
import dev.mt5lite.core.Graph
import dev.mt5lite.core.GraphSpec
import dev.mt5lite.core.ModelFileException
import dev.mt5lite.core.Tensor
import dev.mt5lite.core.TensorSpec

/**
 * One signature of a [LiteRtModelFile] run through LiteRT's `CompiledModel` C API. Its input and output
 * `LiteRtTensorBuffer`s are created once, from the compiled model's buffer requirements, and reused by every
 * [run]; runs of graphs sharing a file are serialized on that file.
 */
internal class LiteRtGraph private constructor(
    private val owner: LiteRtModelFile,
    private val signatureIndex: Int,
    private val signature: String,
    private val inputs: List<TensorBinding>,
    private val outputs: List<TensorBinding>,
    outputOrder: List<String>
) : Graph {
    private val inputBuffers: Array<Pointer> = inputs.map { it.buffer }.toTypedArray()
    private val outputBuffers: Array<Pointer> = outputs.map { it.buffer }.toTypedArray()

    /** The outputs in manifest order, the order [run] returns them in. */
    private val resultOrder: List<TensorBinding> = outputOrder.map { name -> outputs.first { it.spec.name == name } }

    /** Writes [inputs] into the input buffers, runs the signature, and reads every output (in manifest order). */
    override fun run(inputs: Map<String, Tensor>): Map<String, Tensor> = synchronized(owner) {
        check(!owner.closed) { "${owner.file}: the LiteRtLoader that opened '$signature' is closed" }
        for (binding in this.inputs) {
            val tensor = inputs[binding.spec.name]
                ?: throw IllegalArgumentException("input '${binding.spec.name}' of '$signature' is missing")
            binding.write(tensor)
        }
        val status = owner.lib.LiteRtRunCompiledModel(
            owner.compiledModel, signatureIndex.toLong(),
            inputBuffers.size.toLong(), inputBuffers, outputBuffers.size.toLong(), outputBuffers
        )
        if (status != 0) {
            throw IllegalStateException("${owner.file}: running '$signature' failed: LiteRT ${LiteRtNative.describe(status)}")
        }
        val result = LinkedHashMap<String, Tensor>()
        for (binding in resultOrder) result[binding.spec.name] = binding.read()
        result
    }

    /** Destroys the tensor buffers; called by the owning file when it closes. */
    fun release() {
        (inputs + outputs).forEach { owner.lib.LiteRtDestroyTensorBuffer(it.buffer) }
    }

    companion object {
        /**
         * Binds every input and output of signature [index] (handle [signature]) to a buffer, checking names,
         * dtypes and shapes against [spec]; a mismatch is a one-line [ModelFileException] naming the file.
         */
        fun create(owner: LiteRtModelFile, index: Int, signature: Pointer, spec: GraphSpec): LiteRtGraph {
            val created = ArrayList<TensorBinding>()
            try {
                val inputs = bindAll(owner, index, signature, spec, spec.inputs, Side.INPUT, created)
                val outputs = bindAll(owner, index, signature, spec, spec.outputs, Side.OUTPUT, created)
                return LiteRtGraph(owner, index, spec.signature, inputs, outputs, spec.outputs.map { it.name })
            } catch (e: RuntimeException) {
                created.forEach { owner.lib.LiteRtDestroyTensorBuffer(it.buffer) }
                throw e
            }
        }

        /** The bindings of one side in signature order (the order `LiteRtRunCompiledModel` expects). */
        private fun bindAll(
            owner: LiteRtModelFile, index: Int, signature: Pointer, spec: GraphSpec,
            specs: List<TensorSpec>, side: Side, created: MutableList<TensorBinding>
        ): List<TensorBinding> {
            val names = side.names(owner, signature)
            val byName = specs.associateBy { it.name }
            val unknown = names.filter { it !in byName }
            val missing = byName.keys.filter { it !in names }
            if (unknown.isNotEmpty() || missing.isNotEmpty()) {
                throw ModelFileException(
                    "${owner.file}: signature '${spec.signature}' ${side.label}s $names do not match the manifest's ${byName.keys}"
                )
            }
            return names.mapIndexed { position, name ->
                val binding = bind(owner, index, signature, position, byName.getValue(name), side)
                created.add(binding)
                binding
            }
        }

        private fun bind(
            owner: LiteRtModelFile, index: Int, signature: Pointer, position: Int, spec: TensorSpec, side: Side
        ): TensorBinding {
            val what = "${side.label} '${spec.name}'"
            val type = RankedTensorType()
            val tensor = PointerByReference()
            owner.modelCall(side.tensor(owner.lib, signature, position, tensor)) { "cannot read $what" }
            owner.modelCall(owner.lib.LiteRtGetRankedTensorType(tensor.value, type.memory)) { "$what has no ranked type" }
            checkType(owner, what, type, spec)
            val requirements = PointerByReference()
            owner.modelCall(side.requirements(owner.lib, owner.compiledModel, index, position, requirements)) {
                "cannot get buffer requirements of $what"
            }
            val buffer = PointerByReference()
            owner.modelCall(
                owner.lib.LiteRtCreateManagedTensorBufferFromRequirements(
                    owner.environment, type.memory, requirements.value, buffer
                )
            ) { "cannot create a buffer for $what" }
            val binding = TensorBinding(owner.lib, spec, buffer.value)
            try {
                checkPackedSize(owner, what, binding)
            } catch (e: RuntimeException) {
                owner.lib.LiteRtDestroyTensorBuffer(buffer.value)
                throw e
            }
            return binding
        }

        private fun checkType(owner: LiteRtModelFile, what: String, type: RankedTensorType, spec: TensorSpec) {
            val expected = when (spec.dtype) {
                Tensor.DType.FLOAT32 -> LiteRtNative.ELEMENT_FLOAT32
                Tensor.DType.INT64 -> LiteRtNative.ELEMENT_INT64
            }
            if (type.elementType != expected) {
                throw ModelFileException(
                    "${owner.file}: $what is ${LiteRtNative.elementName(type.elementType)}, the manifest says ${spec.dtype.manifestName}"
                )
            }
            val shape = type.shape()
            if (!shape.contentEquals(spec.shape)) {
                throw ModelFileException(
                    "${owner.file}: $what has shape ${shape.toList()}, the manifest says ${spec.shape.toList()}"
                )
            }
        }

        private fun checkPackedSize(owner: LiteRtModelFile, what: String, binding: TensorBinding) {
            val size = LongByReference()
            owner.modelCall(owner.lib.LiteRtGetTensorBufferPackedSize(binding.buffer, size)) { "cannot size $what" }
            if (size.value != binding.byteSize) {
                throw ModelFileException("${owner.file}: $what buffer holds ${size.value} bytes, expected ${binding.byteSize}")
            }
        }
    }

    /** The signature calls that differ between inputs and outputs. */
    private enum class Side(val label: String) {
        INPUT("input") {
            override fun count(lib: LiteRtNative, signature: Pointer, out: LongByReference) =
                lib.LiteRtGetNumSignatureInputs(signature, out)
            override fun name(lib: LiteRtNative, signature: Pointer, index: Int, out: PointerByReference) =
                lib.LiteRtGetSignatureInputName(signature, index.toLong(), out)
            override fun tensor(lib: LiteRtNative, signature: Pointer, index: Int, out: PointerByReference) =
                lib.LiteRtGetSignatureInputTensorByIndex(signature, index.toLong(), out)
            override fun requirements(lib: LiteRtNative, model: Pointer, sig: Int, index: Int, out: PointerByReference) =
                lib.LiteRtGetCompiledModelInputBufferRequirements(model, sig.toLong(), index.toLong(), out)
        },
        OUTPUT("output") {
            override fun count(lib: LiteRtNative, signature: Pointer, out: LongByReference) =
                lib.LiteRtGetNumSignatureOutputs(signature, out)
            override fun name(lib: LiteRtNative, signature: Pointer, index: Int, out: PointerByReference) =
                lib.LiteRtGetSignatureOutputName(signature, index.toLong(), out)
            override fun tensor(lib: LiteRtNative, signature: Pointer, index: Int, out: PointerByReference) =
                lib.LiteRtGetSignatureOutputTensorByIndex(signature, index.toLong(), out)
            override fun requirements(lib: LiteRtNative, model: Pointer, sig: Int, index: Int, out: PointerByReference) =
                lib.LiteRtGetCompiledModelOutputBufferRequirements(model, sig.toLong(), index.toLong(), out)
        };

        abstract fun count(lib: LiteRtNative, signature: Pointer, out: LongByReference): Int
        abstract fun name(lib: LiteRtNative, signature: Pointer, index: Int, out: PointerByReference): Int
        abstract fun tensor(lib: LiteRtNative, signature: Pointer, index: Int, out: PointerByReference): Int
        abstract fun requirements(lib: LiteRtNative, model: Pointer, sig: Int, index: Int, out: PointerByReference): Int

        /** This side's tensor names, in signature order. */
        fun names(owner: LiteRtModelFile, signature: Pointer): List<String> {
            val total = LongByReference()
            owner.modelCall(count(owner.lib, signature, total)) { "cannot count ${label}s" }
            return (0 until total.value.toInt()).map { i ->
                val text = PointerByReference()
                owner.modelCall(name(owner.lib, signature, i, text)) { "cannot read $label name $i" }
                text.value.getString(0, "UTF-8")
            }
        }
    }
}

/** A tensor of the contract bound to one `LiteRtTensorBuffer`: copies data in and out under a buffer lock. */
internal class TensorBinding(private val lib: LiteRtNative, val spec: TensorSpec, val buffer: Pointer) {
    private val count = Tensor.elementCount(spec.shape)

    /** Bytes the buffer must hold: elements times the dtype's width. */
    val byteSize: Long = count.toLong() * spec.dtype.bytes

    /** Copies [tensor] into the buffer after checking it against the spec. */
    fun write(tensor: Tensor) {
        require(tensor.dtype == spec.dtype && tensor.shape.contentEquals(spec.shape)) {
            "input '${spec.name}' is ${tensor.dtype} ${tensor.shape.toList()}, expected ${spec.dtype} ${spec.shape.toList()}"
        }
        locked(LiteRtNative.LOCK_WRITE) { address ->
            when (spec.dtype) {
                Tensor.DType.FLOAT32 -> address.write(0, tensor.floatData(), 0, count)
                Tensor.DType.INT64 -> address.write(0, tensor.longData(), 0, count)
            }
        }
    }

    /** A fresh [Tensor] with the buffer's contents and the spec's shape. */
    fun read(): Tensor = locked(LiteRtNative.LOCK_READ) { address ->
        when (spec.dtype) {
            Tensor.DType.FLOAT32 -> Tensor.of(spec.shape.copyOf(), address.getFloatArray(0, count))
            Tensor.DType.INT64 -> Tensor.of(spec.shape.copyOf(), address.getLongArray(0, count))
        }
    }

    private inline fun <T> locked(mode: Int, block: (Pointer) -> T): T {
        val address = PointerByReference()
        val status = lib.LiteRtLockTensorBuffer(buffer, address, mode)
        check(status == 0) { "cannot lock the buffer of '${spec.name}': LiteRT ${LiteRtNative.describe(status)}" }
        try {
            return block(address.value)
        } finally {
            lib.LiteRtUnlockTensorBuffer(buffer)
        }
    }
}
