package dev.mt5lite.core

import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder

/** The golden files the Python side wrote (tests/test_android_core.py): the folder is `-Dgolden.dir`. */
object Golden {
    val dir: File = File(System.getProperty("golden.dir") ?: error("run with -Dgolden.dir=<golden folder>"))

    /** A JSON golden file as a map. */
    fun json(name: String): Map<*, *> = Json.parse(String(File(dir, name).readBytes(), Charsets.UTF_8)) as Map<*, *>

    /** A little-endian float32 file. */
    fun floats(name: String): FloatArray {
        val buffer = ByteBuffer.wrap(File(dir, name).readBytes()).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer()
        return FloatArray(buffer.remaining()).also { buffer.get(it) }
    }

    fun ints(value: Any?): IntArray = (value as List<*>).map { (it as Long).toInt() }.toIntArray()
}
