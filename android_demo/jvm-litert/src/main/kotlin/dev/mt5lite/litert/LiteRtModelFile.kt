package dev.mt5lite.litert

import com.sun.jna.Native
import com.sun.jna.NativeLibrary
import com.sun.jna.Platform
import com.sun.jna.Pointer
import com.sun.jna.ptr.LongByReference
import com.sun.jna.ptr.PointerByReference
import dev.mt5lite.core.GraphSpec
import dev.mt5lite.core.ModelFileException
import java.io.File

/**
 * One loaded .tflite file: its `LiteRtModel`, the `LiteRtOptions` it was compiled with and the
 * `LiteRtCompiledModel`, shared by every signature (graph) opened from it. Not thread-safe on its own:
 * [LiteRtGraph] runs under this object's monitor, and [LiteRtLoader] opens and closes under its own.
 */
internal class LiteRtModelFile private constructor(
    val lib: LiteRtNative,
    val environment: Pointer,
    val file: File,
    private val model: Pointer,
    private val options: Pointer,
    val compiledModel: Pointer
) : AutoCloseable {
    /** The signature keys in model order; a key's position is its signature index. */
    private val signatureKeys: List<String> = readSignatureKeys()
    private val graphs = ArrayList<LiteRtGraph>()

    /** True once [close] ran; graphs refuse to run after that. */
    var closed = false
        private set

    /** A graph running [signature] of this file, checked against [spec]. */
    fun graph(signature: String, spec: GraphSpec): LiteRtGraph {
        val index = signatureKeys.indexOf(signature)
        if (index < 0) {
            throw ModelFileException("$file has no signature '$signature' (it has: ${signatureKeys.joinToString()})")
        }
        val graph = LiteRtGraph.create(this, index, signatureHandle(index), spec)
        graphs.add(graph)
        return graph
    }

    /** Frees the graphs' buffers, then the compiled model, its options and the model. */
    override fun close() {
        if (closed) return
        closed = true
        graphs.forEach { it.release() }
        graphs.clear()
        lib.LiteRtDestroyCompiledModel(compiledModel)
        lib.LiteRtDestroyOptions(options)
        lib.LiteRtDestroyModel(model)
    }

    /** The `LiteRtSignature` handle at [index] (owned by the model). */
    fun signatureHandle(index: Int): Pointer {
        val out = PointerByReference()
        modelCall(lib.LiteRtGetModelSignature(model, index.toLong(), out)) { "cannot read signature $index" }
        return out.value
    }

    /** Throws a one-line [ModelFileException] naming this file when [status] is not OK. */
    fun modelCall(status: Int, what: () -> String) {
        if (status != 0) throw ModelFileException("$file: ${what()}: LiteRT ${LiteRtNative.describe(status)}")
    }

    private fun readSignatureKeys(): List<String> {
        val count = LongByReference()
        modelCall(lib.LiteRtGetNumModelSignatures(model, count)) { "cannot count signatures" }
        return (0 until count.value.toInt()).map { index ->
            val key = PointerByReference()
            modelCall(lib.LiteRtGetSignatureKey(signatureHandle(index), key)) { "cannot read signature key $index" }
            key.value.getString(0, "UTF-8")
        }
    }

    companion object {
        /**
         * Loads [file] and compiles it for the CPU with [threads] XNNPACK threads (0 or less: LiteRT's default).
         * Any failure is a one-line [ModelFileException] naming the file; nothing is left allocated.
         */
        fun load(lib: LiteRtNative, environment: Pointer, file: File, threads: Int): LiteRtModelFile {
            if (!file.isFile) throw ModelFileException("$file: model file not found")
            val model = createModel(lib, environment, file)
            val options = try {
                createOptions(lib, file, threads)
            } catch (e: RuntimeException) {
                lib.LiteRtDestroyModel(model)
                throw e
            }
            val compiled = PointerByReference()
            val status = lib.LiteRtCreateCompiledModel(environment, model, options, compiled)
            if (status != 0) {
                lib.LiteRtDestroyOptions(options)
                lib.LiteRtDestroyModel(model)
                throw ModelFileException("$file: cannot compile model for the CPU: LiteRT ${LiteRtNative.describe(status)}")
            }
            return try {
                LiteRtModelFile(lib, environment, file, model, options, compiled.value)
            } catch (e: RuntimeException) {
                lib.LiteRtDestroyCompiledModel(compiled.value)
                lib.LiteRtDestroyOptions(options)
                lib.LiteRtDestroyModel(model)
                throw e
            }
        }

        private fun createModel(lib: LiteRtNative, environment: Pointer, file: File): Pointer {
            val model = PointerByReference()
            val status = lib.LiteRtCreateModelFromFile(environment, file.path, model)
            if (status != 0) {
                throw ModelFileException("$file: cannot load model: LiteRT ${LiteRtNative.describe(status)}")
            }
            return model.value
        }

        /**
         * CPU-only compilation options for the XNNPACK accelerator: an in-memory weight cache, and "num_threads = N"
         * when N > 0. Without the cache XNNPACK packs the weights once per signature that uses them: a static export's
         * six decoder and three encoder signatures held mt5-small's int8 weights six times over (1,184 MB resident
         * after compiling its 304 MB file, 207 MB with the cache; trimmed, 318 against 72 MB).
         */
        private fun createOptions(lib: LiteRtNative, file: File, threads: Int): Pointer {
            val out = PointerByReference()
            val status = lib.LiteRtCreateOptions(out)
            if (status != 0) throw IllegalStateException("LiteRtCreateOptions failed: ${LiteRtNative.describe(status)}")
            val options = out.value
            try {
                checkOptions(file, lib.LiteRtSetOptionsHardwareAccelerators(options, LiteRtNative.HW_ACCELERATOR_CPU))
                addCpuOptions(lib, file, options, threads)
            } catch (e: RuntimeException) {
                lib.LiteRtDestroyOptions(options)
                throw e
            }
            return options
        }

        /**
         * Adds the CPU accelerator's opaque options: a NUL-terminated TOML string in malloc'd memory, which
         * the options take over and release with libc's `free`.
         */
        private fun addCpuOptions(lib: LiteRtNative, file: File, options: Pointer, threads: Int) {
            val cache = "weight_cache_file_path = \"$IN_MEMORY_WEIGHT_CACHE\"\n"
            val toml = (cache + if (threads > 0) "num_threads = $threads\n" else "").toByteArray(Charsets.UTF_8)
            val payload = Pointer(Native.malloc(toml.size + 1L))
            payload.write(0, toml, 0, toml.size)
            payload.setByte(toml.size.toLong(), 0)
            val opaque = PointerByReference()
            val status = lib.LiteRtCreateOpaqueOptions(LiteRtNative.CPU_OPTIONS_IDENTIFIER, payload, libcFree, opaque)
            if (status != 0) Native.free(Pointer.nativeValue(payload))
            checkOptions(file, status)
            val added = lib.LiteRtAddOpaqueOptions(options, opaque.value)
            if (added != 0) lib.LiteRtDestroyOpaqueOptions(opaque.value)
            checkOptions(file, added)
        }

        private fun checkOptions(file: File, status: Int) {
            if (status != 0) throw ModelFileException("$file: cannot set CPU options: LiteRT ${LiteRtNative.describe(status)}")
        }

        /** XNNPACK's name for a weight cache that lives in memory (an anonymous file), not on disk. */
        const val IN_MEMORY_WEIGHT_CACHE = ":memory:"

        /** libc's `free`, the destructor for payloads allocated with [Native.malloc]. */
        private val libcFree: Pointer by lazy { NativeLibrary.getInstance(Platform.C_LIBRARY_NAME).getFunction("free") }
    }
}
