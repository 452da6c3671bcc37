package dev.mt5lite.litert

import com.sun.jna.Library
import com.sun.jna.Memory
import com.sun.jna.Native
import com.sun.jna.Pointer
import com.sun.jna.ptr.LongByReference
import com.sun.jna.ptr.PointerByReference

/**
 * The part of LiteRT's C API (`libLiteRt.so`, ai-edge-litert 2.x wheel) this binding calls, mapped by JNA.
 *
 * Signatures follow google-ai-edge/LiteRT `litert/c/litert_environment.h`, `litert_model.h`,
 * `litert_options.h`, `litert_opaque_options.h`, `litert_compiled_model.h` and `litert_tensor_buffer.h`.
 * Every handle (`LiteRtEnvironment`, `LiteRtModel`, ...) is an opaque [Pointer]; every function returning
 * `LiteRtStatus` returns an [Int] (0 is `kLiteRtStatusOk`). `size_t`/`LiteRtParamIndex` is mapped to [Long]
 * and `size_t*` to [LongByReference], which holds on 64-bit Linux and macOS (LP64) only.
 */
@Suppress("FunctionName")
internal interface LiteRtNative : Library {
    fun LiteRtCreateEnvironment(numOptions: Int, options: Pointer?, environment: PointerByReference): Int
    fun LiteRtDestroyEnvironment(environment: Pointer)

    fun LiteRtCreateModelFromFile(environment: Pointer, filename: String, model: PointerByReference): Int
    fun LiteRtDestroyModel(model: Pointer)
    fun LiteRtGetNumModelSignatures(model: Pointer, numSignatures: LongByReference): Int
    fun LiteRtGetModelSignature(model: Pointer, signatureIndex: Long, signature: PointerByReference): Int

    fun LiteRtGetSignatureKey(signature: Pointer, key: PointerByReference): Int
    fun LiteRtGetNumSignatureInputs(signature: Pointer, numInputs: LongByReference): Int
    fun LiteRtGetNumSignatureOutputs(signature: Pointer, numOutputs: LongByReference): Int
    fun LiteRtGetSignatureInputName(signature: Pointer, index: Long, name: PointerByReference): Int
    fun LiteRtGetSignatureOutputName(signature: Pointer, index: Long, name: PointerByReference): Int
    fun LiteRtGetSignatureInputTensorByIndex(signature: Pointer, index: Long, tensor: PointerByReference): Int
    fun LiteRtGetSignatureOutputTensorByIndex(signature: Pointer, index: Long, tensor: PointerByReference): Int
    fun LiteRtGetRankedTensorType(tensor: Pointer, rankedTensorType: Pointer): Int

    fun LiteRtCreateOptions(options: PointerByReference): Int
    fun LiteRtDestroyOptions(options: Pointer)
    fun LiteRtSetOptionsHardwareAccelerators(options: Pointer, accelerators: Int): Int
    fun LiteRtCreateOpaqueOptions(
        identifier: String, payload: Pointer, payloadDestructor: Pointer, opaqueOptions: PointerByReference
    ): Int
    fun LiteRtDestroyOpaqueOptions(opaqueOptions: Pointer)
    fun LiteRtAddOpaqueOptions(options: Pointer, opaqueOptions: Pointer): Int

    fun LiteRtCreateCompiledModel(
        environment: Pointer, model: Pointer, options: Pointer?, compiledModel: PointerByReference
    ): Int
    fun LiteRtDestroyCompiledModel(compiledModel: Pointer)
    fun LiteRtGetCompiledModelInputBufferRequirements(
        compiledModel: Pointer, signatureIndex: Long, inputIndex: Long, requirements: PointerByReference
    ): Int
    fun LiteRtGetCompiledModelOutputBufferRequirements(
        compiledModel: Pointer, signatureIndex: Long, outputIndex: Long, requirements: PointerByReference
    ): Int
    fun LiteRtRunCompiledModel(
        compiledModel: Pointer, signatureIndex: Long,
        numInputs: Long, inputs: Array<Pointer>, numOutputs: Long, outputs: Array<Pointer>
    ): Int

    fun LiteRtCreateManagedTensorBufferFromRequirements(
        environment: Pointer, rankedTensorType: Pointer, requirements: Pointer, buffer: PointerByReference
    ): Int
    fun LiteRtGetTensorBufferPackedSize(buffer: Pointer, size: LongByReference): Int
    fun LiteRtLockTensorBuffer(buffer: Pointer, hostAddress: PointerByReference, lockMode: Int): Int
    fun LiteRtUnlockTensorBuffer(buffer: Pointer): Int
    fun LiteRtDestroyTensorBuffer(buffer: Pointer)

    companion object {
        /** `kLiteRtHwAcceleratorCpu` (litert_common.h). */
        const val HW_ACCELERATOR_CPU = 1
        /** `kLiteRtTensorBufferLockModeRead` / `...Write` (litert_common.h). */
        const val LOCK_READ = 0
        const val LOCK_WRITE = 1
        /** `kLiteRtElementTypeFloat32`, `kLiteRtElementTypeInt64` (litert_model_types.h). */
        const val ELEMENT_FLOAT32 = 1
        const val ELEMENT_INT64 = 4
        /** Opaque-options identifier the CPU (XNNPACK) accelerator reads its TOML payload from. */
        const val CPU_OPTIONS_IDENTIFIER = "xnnpack"

        /** Loads the library at [path] (an absolute path or a name on `jna.library.path`). */
        fun load(path: String): LiteRtNative = Native.load(path, LiteRtNative::class.java)

        /** Names of the `LiteRtStatus` codes (litert_common.h) most likely to show up in messages. */
        private val STATUS_NAMES = mapOf(
            1 to "InvalidArgument", 2 to "MemoryAllocationFailure", 3 to "RuntimeFailure",
            4 to "MissingInputTensor", 5 to "Unsupported", 6 to "NotFound", 9 to "Unknown",
            500 to "FileIO", 501 to "InvalidFlatbuffer", 502 to "DynamicLoading", 504 to "Compilation",
            1000 to "IndexOOB"
        )

        /** Names of the `LiteRtElementType` values (litert_model_types.h) a .tflite input or output may have. */
        private val ELEMENT_NAMES = mapOf(
            1 to "float32", 2 to "int32", 3 to "uint8", 4 to "int64", 6 to "bool", 7 to "int16", 9 to "int8",
            10 to "float16", 11 to "float64"
        )

        /** The dtype name of a `LiteRtElementType`, e.g. "int64". */
        fun elementName(type: Int): String = ELEMENT_NAMES[type] ?: "element type $type"

        /** "status N (Name)" for a failed `LiteRtStatus`. */
        fun describe(status: Int): String = "status $status (${STATUS_NAMES[status] ?: "see litert_common.h"})"
    }
}

/** A zeroed native block large enough for a `LiteRtRankedTensorType` (72 bytes on LP64), read by offset. */
internal class RankedTensorType {
    val memory = Memory(SIZE).apply { clear() }

    /** `element_type`, the first field. */
    val elementType: Int get() = memory.getInt(0)

    /** `layout.rank`: the low 7 bits of the word at offset 4 (a 7-bit bit-field in the 2.x layout). */
    val rank: Int get() = memory.getInt(4) and 0x7F

    /** `layout.dimensions[0 until rank]`, starting at offset 8. */
    fun shape(): IntArray = IntArray(minOf(rank, MAX_RANK)) { memory.getInt(8L + 4L * it) }

    private companion object {
        const val SIZE = 128L
        const val MAX_RANK = 8
    }
}
