package dev.mt5lite.core

/**
 * A reader of protobuf's wire format: the few calls needed to read `spiece.model` (sentencepiece's ModelProto)
 * field by field. Unknown fields are skipped, as protobuf requires.
 */
class ProtoReader(private val data: ByteArray, private var pos: Int = 0, private val end: Int = data.size) {
    /** Whether every byte of this message has been read. */
    fun atEnd(): Boolean = pos >= end

    /** The next field's tag: (field number, wire type). */
    fun tag(): Pair<Int, Int> {
        val key = varint()
        return Pair((key ushr 3).toInt(), (key and 7).toInt())
    }

    fun varint(): Long {
        var result = 0L
        var shift = 0
        while (true) {
            if (pos >= end) throw ModelFileException("truncated protobuf varint at byte $pos")
            val b = data[pos++].toInt() and 0xFF
            result = result or ((b and 0x7F).toLong() shl shift)
            if (b and 0x80 == 0) return result
            shift += 7
            if (shift > 63) throw ModelFileException("malformed protobuf varint at byte $pos")
        }
    }

    fun fixed32(): Int {
        if (pos + 4 > end) throw ModelFileException("truncated protobuf fixed32 at byte $pos")
        val v = (data[pos].toInt() and 0xFF) or ((data[pos + 1].toInt() and 0xFF) shl 8) or
            ((data[pos + 2].toInt() and 0xFF) shl 16) or ((data[pos + 3].toInt() and 0xFF) shl 24)
        pos += 4
        return v
    }

    fun float32(): Float = java.lang.Float.intBitsToFloat(fixed32())

    /** A length-delimited field's bytes. */
    fun bytes(): ByteArray {
        val length = varint()
        if (length < 0 || pos + length > end) throw ModelFileException("truncated protobuf field at byte $pos")
        val out = data.copyOfRange(pos, pos + length.toInt())
        pos += length.toInt()
        return out
    }

    fun string(): String = String(bytes(), Charsets.UTF_8)

    /** A nested message's reader. */
    fun message(): ProtoReader {
        val bytes = bytes()
        return ProtoReader(bytes)
    }

    /** Skip a field of [wireType]. */
    fun skip(wireType: Int) {
        when (wireType) {
            0 -> varint()
            1 -> advance(8)
            2 -> {
                val length = varint()
                if (length < 0 || length > end - pos) throw ModelFileException("truncated protobuf field at byte $pos")
                advance(length.toInt())
            }
            5 -> advance(4)
            else -> throw ModelFileException("unsupported protobuf wire type $wireType at byte $pos")
        }
    }

    private fun advance(count: Int) {
        if (count < 0 || pos + count > end) throw ModelFileException("truncated protobuf field at byte $pos")
        pos += count
    }
}
