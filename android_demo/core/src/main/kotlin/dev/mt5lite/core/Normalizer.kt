package dev.mt5lite.core

import java.io.ByteArrayOutputStream

/**
 * sentencepiece's normaliser over UTF-8 bytes: the model's precompiled character map (a Darts double-array trie of
 * rules, longest match first; empty for "identity"), user-defined pieces kept as they are, extra whitespace
 * removed, a dummy ▁ prefix, and spaces escaped as ▁, each as the model's `NormalizerSpec` says.
 */
class Normalizer(private val spec: Spec, userDefined: List<String>) {
    /** The parts of `NormalizerSpec` that decide normalisation (the protobuf defaults when a field is absent). */
    class Spec(
        val name: String = "",
        val charsmap: ByteArray = ByteArray(0),
        val addDummyPrefix: Boolean = true,
        val removeExtraWhitespaces: Boolean = true,
        val escapeWhitespaces: Boolean = true
    ) {
        companion object {
            fun parse(reader: ProtoReader): Spec {
                var name = ""
                var charsmap = ByteArray(0)
                var dummy = true
                var extra = true
                var escape = true
                while (!reader.atEnd()) {
                    val (field, wire) = reader.tag()
                    when {
                        field == 1 && wire == 2 -> name = reader.string()
                        field == 2 && wire == 2 -> charsmap = reader.bytes()
                        field == 3 && wire == 0 -> dummy = reader.varint() != 0L
                        field == 4 && wire == 0 -> extra = reader.varint() != 0L
                        field == 5 && wire == 0 -> escape = reader.varint() != 0L
                        else -> reader.skip(wire)
                    }
                }
                return Spec(name, charsmap, dummy, extra, escape)
            }
        }
    }

    val addDummyPrefix: Boolean get() = spec.addDummyPrefix
    val removeExtraWhitespaces: Boolean get() = spec.removeExtraWhitespaces

    private val trie: IntArray
    private val normalizedBlob: ByteArray
    private val userPieces: List<ByteArray> = userDefined.map { it.toByteArray(Charsets.UTF_8) }
        .sortedByDescending { it.size }

    init {
        val map = spec.charsmap
        if (map.isEmpty()) {
            trie = IntArray(0)
            normalizedBlob = ByteArray(0)
        } else {
            if (map.size < 4) throw ModelFileException("spiece.model: precompiled_charsmap is truncated")
            val trieBytes = readUint32(map, 0)
            if (trieBytes < 0 || trieBytes % 4 != 0 || 4 + trieBytes > map.size) {
                throw ModelFileException("spiece.model: precompiled_charsmap is damaged (trie of $trieBytes bytes)")
            }
            trie = IntArray(trieBytes / 4) { readUint32(map, 4 + 4 * it) }
            normalizedBlob = map.copyOfRange(4 + trieBytes, map.size)
        }
    }

    /** The normalised UTF-8 bytes of [input], ready for segmentation. */
    fun normalize(input: ByteArray): ByteArray {
        var pos = 0
        if (spec.removeExtraWhitespaces) {  // leading whitespace
            while (pos < input.size) {
                val (rule, consumed) = prefix(input, pos)
                if (!(rule.size == 1 && rule[0] == SPACE_BYTE)) break
                pos += consumed
            }
        }
        val out = ByteArrayOutputStream()
        if (pos >= input.size) return out.toByteArray()
        if (spec.addDummyPrefix) out.write(if (spec.escapeWhitespaces) ESCAPED_SPACE else byteArrayOf(SPACE_BYTE))
        var previousSpace = spec.removeExtraWhitespaces
        while (pos < input.size) {
            val (rule, consumed) = prefix(input, pos)
            var from = 0
            if (previousSpace) while (from < rule.size && rule[from] == SPACE_BYTE) from++
            if (from < rule.size) {
                for (k in from until rule.size) {
                    if (spec.escapeWhitespaces && rule[k] == SPACE_BYTE) out.write(ESCAPED_SPACE) else out.write(rule[k].toInt())
                }
                previousSpace = rule[rule.size - 1] == SPACE_BYTE
            }
            pos += consumed
            if (!spec.removeExtraWhitespaces) previousSpace = false
        }
        var result = out.toByteArray()
        if (spec.removeExtraWhitespaces) {  // trailing whitespace
            val space = if (spec.escapeWhitespaces) ESCAPED_SPACE else byteArrayOf(SPACE_BYTE)
            var end = result.size
            while (end >= space.size && (0 until space.size).all { result[end - space.size + it] == space[it] }) {
                end -= space.size
            }
            result = result.copyOf(end)
        }
        return result
    }

    /** The normalised form of the longest rule matching at [at], and how many input bytes it consumes. */
    private fun prefix(input: ByteArray, at: Int): Pair<ByteArray, Int> {
        for (piece in userPieces) {  // user-defined pieces are never normalised
            if (at + piece.size <= input.size && (piece.indices).all { input[at + it] == piece[it] }) {
                return Pair(piece, piece.size)
            }
        }
        var longest = 0
        var value = 0
        if (trie.isNotEmpty()) {
            var node = 0
            var unit = trie[node]
            node = node xor offset(unit)
            var i = at
            while (i < input.size) {
                val label = input[i].toInt() and 0xFF
                if (label == 0) break
                node = node xor label
                if (node < 0 || node >= trie.size) break
                unit = trie[node]
                if (unitLabel(unit) != label) break
                node = node xor offset(unit)
                if (hasLeaf(unit)) {
                    longest = i + 1 - at
                    value = trie[node] and 0x7FFFFFFF
                }
                i++
            }
        }
        if (longest > 0) {
            var end = value
            while (end < normalizedBlob.size && normalizedBlob[end].toInt() != 0) end++
            return Pair(normalizedBlob.copyOfRange(value, end), longest)
        }
        val length = SentencePiece.validUtf8Length(input, at)
        return if (length == 0) Pair(REPLACEMENT, 1) else Pair(input.copyOfRange(at, at + length), length)
    }

    private companion object {
        const val SPACE_BYTE: Byte = 0x20
        val ESCAPED_SPACE = "\u2581".toByteArray(Charsets.UTF_8)
        val REPLACEMENT = "\uFFFD".toByteArray(Charsets.UTF_8)

        fun readUint32(data: ByteArray, at: Int): Int = (data[at].toInt() and 0xFF) or
            ((data[at + 1].toInt() and 0xFF) shl 8) or ((data[at + 2].toInt() and 0xFF) shl 16) or
            ((data[at + 3].toInt() and 0xFF) shl 24)

        // Darts-clone's unit layout.
        fun hasLeaf(unit: Int): Boolean = (unit ushr 8) and 1 == 1
        fun unitLabel(unit: Int): Int = unit and ((1 shl 31) or 0xFF)
        fun offset(unit: Int): Int = (unit ushr 10) shl ((unit and (1 shl 9)) ushr 6)
    }
}
