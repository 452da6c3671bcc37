package dev.mt5lite.litert

import com.sun.jna.Pointer
import com.sun.jna.ptr.PointerByReference
import dev.mt5lite.core.Graph
import dev.mt5lite.core.GraphLoader
import dev.mt5lite.core.GraphSpec
import java.io.Closeable
import java.io.File

/**
 * A [GraphLoader] for the JVM that runs .tflite files through LiteRT's C API (`CompiledModel` on the CPU,
 * XNNPACK), calling the `libLiteRt.so` of the ai-edge-litert 2.x Python wheel through JNA.
 *
 * Each file is loaded and compiled once and shared by the signatures opened from it ("encoder" and "decoder"
 * of an export). A file that cannot be loaded or compiled, a missing signature, or tensors that disagree with
 * the [GraphSpec] raise [dev.mt5lite.core.ModelFileException] with a one-line message naming the file.
 * [close] frees every native object; graphs opened from a closed loader refuse to run. The loader is a
 * [Closeable] (not only an [AutoCloseable]) so Kotlin 1.3's `use {}` works without kotlin-stdlib-jdk7.
 *
 * @param libraryPath absolute path of `libLiteRt.so` (or a library name on `jna.library.path`).
 * @param threads XNNPACK threads per compiled model; 0 or less leaves LiteRT's default.
 */
class LiteRtLoader(libraryPath: String, private val threads: Int = 2) : GraphLoader, Closeable {
    private val lib: LiteRtNative = loadLibrary(libraryPath)
    private val environment: Pointer = createEnvironment(lib)
    private val files = LinkedHashMap<String, LiteRtModelFile>()
    private var closed = false

    /** Opens [signature] of [file] (loading and compiling the file on first use) as a [Graph] checked against [spec]. */
    @Synchronized
    override fun open(file: File, signature: String, spec: GraphSpec): Graph {
        check(!closed) { "LiteRtLoader is closed" }
        val key = file.absoluteFile.normalize().path
        val loaded = files.getOrPut(key) { LiteRtModelFile.load(lib, environment, File(key), threads) }
        return synchronized(loaded) { loaded.graph(signature, spec) }
    }

    /** Frees every loaded file, its compiled model and buffers, then the LiteRT environment. Idempotent. */
    @Synchronized
    override fun close() {
        if (closed) return
        closed = true
        files.values.forEach { synchronized(it) { it.close() } }
        files.clear()
        lib.LiteRtDestroyEnvironment(environment)
    }

    private companion object {
        fun loadLibrary(path: String): LiteRtNative = try {
            LiteRtNative.load(path)
        } catch (e: UnsatisfiedLinkError) {
            throw IllegalStateException("cannot load the LiteRT library $path: ${e.message?.lineSequence()?.first()}")
        }

        fun createEnvironment(lib: LiteRtNative): Pointer {
            val environment = PointerByReference()
            val status = lib.LiteRtCreateEnvironment(0, null, environment)
            check(status == 0) { "LiteRtCreateEnvironment failed: ${LiteRtNative.describe(status)}" }
            return environment.value
        }
    }
}
