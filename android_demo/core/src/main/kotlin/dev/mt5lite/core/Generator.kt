package dev.mt5lite.core

import java.io.File

/** What happens to an input longer than the export's source length. */
enum class Overflow { ERROR, TRUNCATE }

/** One generation: the text, its ids, and where the time went (milliseconds). */
class Generation(
    val text: String,
    val ids: IntArray,
    val encoderMs: Double,
    val firstTokenMs: Double,
    val msPerStep: Double,
    val steps: Int
)

/**
 * Tokenize, decode (greedy or beam search) and detokenize with an mt5lite export, as the Python runtimes do:
 * the manifest is checked (hashes included) before any graph is opened, the graphs come from [loader] by the file
 * and signature the manifest names, and ids past the tokenizer's pieces are never emitted.
 */
class T5Generator(directory: File, loader: GraphLoader, verifyHashes: Boolean = true) {
    val manifest: Manifest = Manifest.load(directory, verifyHashes)
    val tokenizer: SentencePiece = SentencePiece.parse(manifest.file(manifest.tokenizerFile).readBytes()).also {
        if (it.pieceCount > manifest.vocabSize) {  // checked before any graph is opened
            throw ModelFileException("${manifest.root}: the tokenizer has ${it.pieceCount} pieces, more than " +
                "the model's ${manifest.vocabSize} rows; the files are from different models")
        }
    }
    /** The graphs opened so far by role: the encoder and the decoder step at once, the others when first run. */
    private val opened = HashMap<String, Graph>()
    private val stepper = Stepper({ role -> opened.getOrPut(role) { open(loader, role) } }, manifest)
    private val decoder = Decoder(stepper, manifest.eosId, manifest.decoderStartId,
        (tokenizer.pieceCount until manifest.vocabSize).toList().toIntArray())

    init {
        for (role in listOf("encoder", "decoder")) opened[role] = open(loader, role)  // a bad file fails here
    }

    private fun open(loader: GraphLoader, role: String): Graph {
        val spec = manifest.graphs.getValue(role)
        return loader.open(manifest.file(spec.file), spec.signature, spec)
    }

    /** Token ids of [text] followed by eos; longer than the export's source length raises or truncates. */
    fun encode(text: String, overflow: Overflow = Overflow.ERROR): IntArray {
        validate(text)
        var ids = tokenizer.encode(text) + manifest.eosId
        val limit = manifest.maxSourceLength
        if (ids.size > limit) {
            if (overflow == Overflow.ERROR) {
                throw InputException("input is ${ids.size} tokens long, more than the maximum of $limit; shorten " +
                    "it or allow truncation")
            }
            ids = ids.copyOf(limit - 1) + manifest.eosId
        }
        return ids
    }

    /** Text of generated [ids]: stops at eos, skips pad and ids the tokenizer cannot decode. */
    fun decode(ids: IntArray): String {
        val kept = ArrayList<Int>()
        for (id in ids) {
            if (id == manifest.eosId) break
            if (id != manifest.padId && id >= 0 && id < tokenizer.pieceCount) kept.add(id)
        }
        return tokenizer.decode(kept.toIntArray())
    }

    /** Generated ids for [text] (up to and including eos). */
    fun generateIds(text: String, options: DecodingOptions = DecodingOptions(), overflow: Overflow = Overflow.ERROR): IntArray {
        val ids = encode(text, overflow)
        val width = manifest.sourceLengths.first { it >= ids.size }  // the shortest graphs that hold it
        val padded = LongArray(width) { if (it < ids.size) ids[it].toLong() else manifest.padId.toLong() }
        val mask = LongArray(width) { if (it < ids.size) 1L else 0L }
        return decoder.generate(padded, mask, options)
    }

    /** Generate for [text] and say where the time went. */
    fun generate(text: String, options: DecodingOptions = DecodingOptions(), overflow: Overflow = Overflow.ERROR): Generation {
        stepper.clearTimes()
        val ids = generateIds(text, options, overflow)
        val steps = stepper.stepMillis  // one per generated token, all beams together
        val encoderMs = stepper.encodeMillis.sum()
        return Generation(decode(ids), ids, encoderMs, encoderMs + (steps.firstOrNull() ?: 0.0),
            if (steps.isEmpty()) 0.0 else steps.sum() / steps.size, steps.size)
    }

    companion object {
        /** Refuse empty or whitespace-only text and lone surrogates, with a one-line message. */
        fun validate(text: String) {
            if (text.all { Character.isWhitespace(it) || Character.isSpaceChar(it) }) {
                throw InputException("empty or whitespace-only input; give some text to process")
            }
            var i = 0
            while (i < text.length) {
                val c = text[i]
                if (Character.isHighSurrogate(c) && i + 1 < text.length && Character.isLowSurrogate(text[i + 1])) {
                    i += 2
                    continue
                }
                if (Character.isSurrogate(c)) {
                    throw InputException("invalid UTF-8 or lone surrogate U+${String.format("%04X", c.toInt())} at " +
                        "character $i; give text encoded as UTF-8")
                }
                i++
            }
        }
    }
}
