package dev.mt5lite.core

import java.io.ByteArrayOutputStream

/**
 * A SentencePiece unigram tokenizer read from an exported `spiece.model`, giving the ids Python's sentencepiece
 * gives: the model's normalisation (identity, or a precompiled character map such as mT5's nmt_nfkc), Viterbi
 * segmentation over UTF-8 as sentencepiece's optimised encoder does it, byte fallback for what no piece covers,
 * and decoding with the ▁ convention.
 */
class SentencePiece private constructor(
    private val pieces: Array<String>,
    private val scores: FloatArray,
    private val types: IntArray,
    private val normalizer: Normalizer,
    private val byteFallback: Boolean,
    private val unkSurface: String
) {
    /** The number of pieces; ids at or past it cannot be decoded. */
    val pieceCount: Int get() = pieces.size

    /** The id of the unknown piece. */
    val unkId: Int = types.indexOf(UNKNOWN)

    // The pieces Viterbi may choose (NORMAL, USER_DEFINED, UNUSED), keyed by their UTF-8 bytes as Latin-1 text.
    private val lookup = HashMap<String, Int>()
    private val reserved = HashMap<String, Int>()
    private val maxPieceBytes: Int
    private val minScore: Float
    private val maxScore: Float

    init {
        var longest = 1
        var low = Float.MAX_VALUE
        var high = java.lang.Float.MIN_NORMAL  // sentencepiece starts from FLT_MIN
        for (id in pieces.indices) {
            val type = types[id]
            val key = latin1(pieces[id].toByteArray(Charsets.UTF_8))
            val map = if (type == NORMAL || type == USER_DEFINED || type == UNUSED) lookup else reserved
            if (map.put(key, id) != null) {
                throw ModelFileException("spiece.model: piece '${pieces[id]}' appears twice; the tokenizer is damaged")
            }
            if (map === lookup) longest = maxOf(longest, key.length)
            if (type == NORMAL) {
                low = minOf(low, scores[id])
                high = maxOf(high, scores[id])
            }
        }
        if (unkId < 0) throw ModelFileException("spiece.model has no unknown piece; the tokenizer is damaged")
        maxPieceBytes = longest
        minScore = low
        maxScore = high
    }

    /** Token ids of [text] (no eos), as `SentencePieceProcessor.encode` gives them. */
    fun encode(text: String): IntArray {
        val normalized = normalizer.normalize(text.toByteArray(Charsets.UTF_8))
        val ids = ArrayList<Int>()
        for ((start, end, id) in viterbi(normalized)) {
            if (id == unkId && byteFallback) {
                for (i in start until end) ids.add(byteId(normalized[i]))
            } else if (id == unkId && ids.isNotEmpty() && ids[ids.size - 1] == unkId) {
                continue  // sentencepiece merges a run of unknown pieces into one
            } else {
                ids.add(id)
            }
        }
        return ids.toIntArray()
    }

    private fun byteId(b: Byte): Int {
        val piece = String.format("<0x%02X>", b.toInt() and 0xFF)
        return reserved[piece] ?: throw ModelFileException("spiece.model has byte fallback but no piece $piece")
    }

    /** sentencepiece's optimised unigram Viterbi over the normalised UTF-8 bytes: (start, end, id) per token. */
    private fun viterbi(text: ByteArray): List<Triple<Int, Int, Int>> {
        val size = text.size
        if (size == 0) return emptyList()
        val bestScore = FloatArray(size + 1)
        val startsAt = IntArray(size + 1) { -1 }
        val bestId = IntArray(size + 1) { -1 }
        val unkScore = minScore - UNK_PENALTY
        val key = latin1(text)
        var start = 0
        while (start < size) {
            val tillHere = bestScore[start].toDouble()
            val charLength = minOf(utf8Length(text[start]), size - start)
            var hasSingle = false
            for (end in start + 1..minOf(size, start + maxPieceBytes)) {
                val id = lookup[key.substring(start, end)] ?: continue
                if (types[id] == UNUSED) continue
                val length = end - start
                // As sentencepiece: a user-defined piece always wins; the sum is taken in double, then stored.
                val score = if (types[id] == USER_DEFINED) length * maxScore - 0.1 else scores[id].toDouble()
                val candidate = score + tillHere
                if (startsAt[end] == -1 || candidate > bestScore[end].toDouble()) {
                    bestScore[end] = candidate.toFloat()
                    startsAt[end] = start
                    bestId[end] = id
                }
                if (length == charLength) hasSingle = true
            }
            if (!hasSingle) {
                val end = start + charLength
                val candidate = unkScore.toDouble() + tillHere
                if (startsAt[end] == -1 || candidate > bestScore[end].toDouble()) {
                    bestScore[end] = candidate.toFloat()
                    startsAt[end] = start
                    bestId[end] = unkId
                }
            }
            start += charLength
        }
        val tokens = ArrayList<Triple<Int, Int, Int>>()
        var end = size
        while (end > 0) {
            tokens.add(Triple(startsAt[end], end, bestId[end]))
            end = startsAt[end]
        }
        tokens.reverse()
        return tokens
    }

    /** Text of [ids] as `SentencePieceProcessor.decode` gives it (every id must be below [pieceCount]). */
    fun decode(ids: IntArray): String {
        val text = StringBuilder()
        val bytes = ByteArrayOutputStream()
        var isBosWs = true
        var bosWsSeen = false
        for (id in ids) {
            if (id < 0 || id >= pieces.size) throw InputException("id $id is not a piece of this tokenizer")
            if (types[id] == BYTE) {
                bytes.write(Integer.parseInt(pieces[id].substring(3, 5), 16))
                continue
            }
            flushBytes(bytes, text)
            if (bosWsSeen || text.isNotEmpty()) isBosWs = false
            val piece = pieces[id]
            bosWsSeen = false
            when (types[id]) {
                CONTROL -> Unit
                UNKNOWN -> text.append(unkSurface)
                else -> {
                    var surface = piece
                    if (isBosWs && (normalizer.addDummyPrefix || normalizer.removeExtraWhitespaces)) {
                        if (surface.startsWith(SPACE)) {
                            surface = surface.substring(SPACE.length)
                            bosWsSeen = !normalizer.removeExtraWhitespaces
                        }
                    }
                    text.append(surface.replace(SPACE, " "))
                }
            }
        }
        flushBytes(bytes, text)
        return text.toString()
    }

    companion object {
        const val NORMAL = 1
        const val UNKNOWN = 2
        const val CONTROL = 3
        const val USER_DEFINED = 4
        const val UNUSED = 5
        const val BYTE = 6
        private const val UNK_PENALTY = 10.0f
        private const val SPACE = "\u2581"
        private const val UNIGRAM = 1

        /** Parse a serialized `ModelProto`; anything but a unigram model with well-formed pieces is refused. */
        fun parse(data: ByteArray): SentencePiece {
            val pieces = ArrayList<String>()
            val scores = ArrayList<Float>()
            val types = ArrayList<Int>()
            var trainer = TrainerSpec()
            var normalizer = Normalizer.Spec()
            val reader = ProtoReader(data)
            while (!reader.atEnd()) {
                val (field, wire) = reader.tag()
                when {
                    field == 1 && wire == 2 -> {
                        val piece = reader.message()
                        var text = ""
                        var score = 0f
                        var type = NORMAL
                        while (!piece.atEnd()) {
                            val (f, w) = piece.tag()
                            when {
                                f == 1 && w == 2 -> text = piece.string()
                                f == 2 && w == 5 -> score = piece.float32()
                                f == 3 && w == 0 -> type = piece.varint().toInt()
                                else -> piece.skip(w)
                            }
                        }
                        pieces.add(text)
                        scores.add(score)
                        types.add(type)
                    }
                    field == 2 && wire == 2 -> trainer = TrainerSpec.parse(reader.message())
                    field == 3 && wire == 2 -> normalizer = Normalizer.Spec.parse(reader.message())
                    else -> reader.skip(wire)
                }
            }
            if (pieces.isEmpty()) throw ModelFileException("spiece.model has no pieces; is it a sentencepiece model?")
            if (trainer.modelType != UNIGRAM) {
                throw ModelFileException("spiece.model is not a unigram model (type ${trainer.modelType}); T5 uses unigram")
            }
            if (trainer.treatWhitespaceAsSuffix) {
                throw ModelFileException("spiece.model treats whitespace as a suffix; T5 tokenizers do not")
            }
            return SentencePiece(pieces.toTypedArray(), scores.toFloatArray(), types.toIntArray(),
                Normalizer(normalizer, pieces.filterIndexed { i, _ -> types[i] == USER_DEFINED }),
                trainer.byteFallback, trainer.unkSurface)
        }

        internal fun latin1(bytes: ByteArray): String = String(bytes, Charsets.ISO_8859_1)

        /** The length of the UTF-8 character starting with [lead] (1 for a stray continuation byte). */
        internal fun utf8Length(lead: Byte): Int {
            val b = lead.toInt() and 0xFF
            return when {
                b < 0x80 -> 1
                b shr 5 == 0x6 -> 2
                b shr 4 == 0xE -> 3
                b shr 3 == 0x1E -> 4
                else -> 1
            }
        }

        private fun flushBytes(bytes: ByteArrayOutputStream, text: StringBuilder) {
            if (bytes.size() == 0) return
            text.append(decodeUtf8Lenient(bytes.toByteArray()))
            bytes.reset()
        }

        /** UTF-8 decoding where each byte of a malformed sequence becomes U+FFFD, as sentencepiece does. */
        internal fun decodeUtf8Lenient(data: ByteArray): String {
            val out = StringBuilder()
            var i = 0
            while (i < data.size) {
                val length = validUtf8Length(data, i)
                if (length == 0) {
                    out.append('\uFFFD')
                    i += 1
                } else {
                    out.append(String(data, i, length, Charsets.UTF_8))
                    i += length
                }
            }
            return out.toString()
        }

        /** The length of the well-formed UTF-8 character at [at], or 0 if it is malformed. */
        internal fun validUtf8Length(data: ByteArray, at: Int): Int {
            val length = utf8Length(data[at])
            val lead = data[at].toInt() and 0xFF
            if (length == 1) return if (lead < 0x80) 1 else 0
            if (at + length > data.size) return 0
            for (k in 1 until length) if (data[at + k].toInt() and 0xC0 != 0x80) return 0
            var code = lead and (0xFF shr (length + 1))
            for (k in 1 until length) code = (code shl 6) or (data[at + k].toInt() and 0x3F)
            val minimum = intArrayOf(0, 0, 0x80, 0x800, 0x10000)[length]
            if (code < minimum || code > 0x10FFFF || code in 0xD800..0xDFFF) return 0
            return length
        }
    }

    private class TrainerSpec(
        val modelType: Int = UNIGRAM,
        val byteFallback: Boolean = false,
        val treatWhitespaceAsSuffix: Boolean = false,
        val unkSurface: String = " \u2047 "
    ) {
        companion object {
            fun parse(reader: ProtoReader): TrainerSpec {
                var modelType = UNIGRAM
                var byteFallback = false
                var suffix = false
                var unkSurface = " \u2047 "
                while (!reader.atEnd()) {
                    val (field, wire) = reader.tag()
                    when {
                        field == 3 && wire == 0 -> modelType = reader.varint().toInt()
                        field == 24 && wire == 0 -> suffix = reader.varint() != 0L
                        field == 35 && wire == 0 -> byteFallback = reader.varint() != 0L
                        field == 44 && wire == 2 -> unkSurface = reader.string()
                        else -> reader.skip(wire)
                    }
                }
                return TrainerSpec(modelType, byteFallback, suffix, unkSurface)
            }
        }
    }
}
