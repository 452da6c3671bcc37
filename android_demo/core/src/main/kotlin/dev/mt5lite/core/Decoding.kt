package dev.mt5lite.core

/** How to decode; the same options as `mt5lite.runtimes.options.DecodingOptions`. */
class DecodingOptions(
    val maxNewTokens: Int = 32,
    val numBeams: Int = 1,
    val lengthPenalty: Double = 1.0,
    val earlyStopping: Boolean = false
) {
    /** Throw `InputException` naming every option out of range. */
    fun validate(): DecodingOptions {
        val problems = ArrayList<String>()
        if (maxNewTokens < 1) problems.add("max_new_tokens must be at least 1, got $maxNewTokens")
        if (numBeams < 1) problems.add("num_beams must be at least 1, got $numBeams")
        if (problems.isNotEmpty()) throw InputException(problems.joinToString("; "))
        return this
    }
}

/**
 * One input's encoder results that every decoder step reads: its mask and the cross-attention K/V, one `[B,H,S,d_kv]`
 * tensor per decoder layer, as the decoder step takes them (`cross_k_0`, ...).
 */
class Encoded(val mask: Tensor, val crossK: List<Tensor>, val crossV: List<Tensor>) {
    /** The same input repeated to [times] rows (the beams of beam search share it). */
    fun repeated(times: Int): Encoded = select(IntArray(times))

    /** These [rows] of the batch. */
    fun select(rows: IntArray): Encoded =
        Encoded(mask.selectRows(0, rows), crossK.map { it.selectRows(0, rows) }, crossV.map { it.selectRows(0, rows) })
}

/**
 * The fixed-size self-attention cache, `[B,H,T_max,d_kv]` per decoder layer for K and for V (a row per hypothesis),
 * as the decoder step takes it (`self_k_cache_0`, ...). The host writes each step's K/V at its position (the
 * contract has no growing concat).
 */
class KvCache(val k: List<Tensor>, val v: List<Tensor>) {
    /** The cache of these [rows], copied (beam search: each new beam continues the beam it came from). */
    fun select(rows: IntArray): KvCache = KvCache(k.map { it.selectRows(0, rows) }, v.map { it.selectRows(0, rows) })

    /** Write a step's `new_self_k`/`new_self_v` (`[L,b,H,1,d_kv]`) at [position] into rows [firstRow] onward. */
    fun write(position: Int, newK: Tensor, newV: Tensor, firstRow: Int = 0) {
        put(k, newK, position, firstRow)
        put(v, newV, position, firstRow)
    }

    private fun put(cache: List<Tensor>, new: Tensor, position: Int, firstRow: Int) {
        val (newRows, heads, dkv) = Triple(new.shape[1], new.shape[2], new.shape[4])
        val source = new.floatData()
        for ((l, layer) in cache.withIndex()) {
            val target = layer.floatData()
            val steps = layer.shape[2]
            for (r in 0 until newRows) {
                for (h in 0 until heads) {
                    val from = ((l * newRows + r) * heads + h) * dkv
                    val to = (((firstRow + r) * heads + h) * steps + position) * dkv
                    System.arraycopy(source, from, target, to, dkv)
                }
            }
        }
    }
}

/**
 * The graphs of an export driven as the contract says: encode once, then one decoder step per token with the
 * host's cache. Each call runs the graphs of its input's padded length (`encoder_s16` and `decoder_s16` for an
 * input padded to 16 positions, `encoder` and `decoder` at the export's full length), and a step of several rows
 * (beams) runs in as few calls as the export's decoder steps allow (`decoder` takes 1 row, `decoder_b4` 4): the
 * largest that fits first. [graphs] opens a graph by role. Shapes come from the manifest's specs; the time of every
 * encoder run and every step is kept for the app to show.
 */
class Stepper(private val graphs: (String) -> Graph, private val manifest: Manifest) {
    private val cacheShape = manifest.graphs.getValue("decoder").inputs.first { it.name == "self_k_cache_0" }.shape
    private val layers = manifest.graphs.getValue("decoder").layers

    /** The vocabulary width of the logits (embedding rows). */
    val vocabSize: Int = manifest.vocabSize
    val maxTargetLength: Int = manifest.maxTargetLength
    /** Milliseconds of each encoder run and of each step (all its rows), since the last [clearTimes]. */
    val encodeMillis = ArrayList<Double>()
    val stepMillis = ArrayList<Double>()

    /** Forget the recorded times (before a generation whose times are wanted). */
    fun clearTimes() {
        encodeMillis.clear()
        stepMillis.clear()
    }

    /** Run the encoder on one padded input (`[1,S]` ids and mask). */
    fun encode(ids: LongArray, mask: LongArray): Encoded {
        val started = System.nanoTime()
        val shape = intArrayOf(1, ids.size)
        val out = graphs(manifest.roleAt("encoder", 1, ids.size))
            .run(mapOf("input_ids" to Tensor.of(shape, ids), "attention_mask" to Tensor.of(shape, mask)))
        encodeMillis.add((System.nanoTime() - started) / 1e6)
        return Encoded(Tensor.of(shape, mask), output(out, "cross_k").layers(), output(out, "cross_v").layers())
    }

    /** An empty cache of [rows] rows. */
    fun newCache(rows: Int = 1): KvCache {
        val shape = cacheShape.copyOf().also { it[0] = rows }
        return KvCache(List(layers) { Tensor.zeros(shape, Tensor.DType.FLOAT32) },
            List(layers) { Tensor.zeros(shape, Tensor.DType.FLOAT32) })
    }

    /** Run one step of every row: [tokens] at [position]; writes their K/V into [cache]; returns each row's logits. */
    fun step(tokens: LongArray, position: Int, encoded: Encoded, cache: KvCache): Array<FloatArray> {
        val started = System.nanoTime()
        val rows = tokens.size
        val logits = ArrayList<FloatArray>()
        var start = 0
        while (start < rows) {
            val size = manifest.decoderBatches.keys.filter { it <= rows - start }.max() ?: 1
            val part = IntArray(size) { start + it }
            val (rowsOf, cacheOf) = if (size == rows) Pair(encoded, cache) else Pair(encoded.select(part), cache.select(part))
            val feeds = HashMap(mapOf(
                "decoder_input_ids" to Tensor.of(intArrayOf(size, 1), LongArray(size) { tokens[start + it] }),
                "position" to Tensor.of(intArrayOf(1), longArrayOf(position.toLong())),
                "encoder_attention_mask" to rowsOf.mask))
            for (l in 0 until layers) {  // one input per layer: the graph never copies a layer out of a stacked cache
                feeds["cross_k_$l"] = rowsOf.crossK[l]
                feeds["cross_v_$l"] = rowsOf.crossV[l]
                feeds["self_k_cache_$l"] = cacheOf.k[l]
                feeds["self_v_cache_$l"] = cacheOf.v[l]
            }
            val out = graphs(manifest.roleAt("decoder", size, encoded.mask.shape[1])).run(feeds)
            cache.write(position, output(out, "new_self_k"), output(out, "new_self_v"), start)
            val flat = output(out, "logits").floatData()
            for (r in 0 until size) logits.add(flat.copyOfRange(r * vocabSize, (r + 1) * vocabSize))
            start += size
        }
        stepMillis.add((System.nanoTime() - started) / 1e6)
        return logits.toTypedArray()
    }

    private fun output(outputs: Map<String, Tensor>, name: String): Tensor =
        outputs[name] ?: throw ModelFileException("the graph returned no '$name'; re-export the model")
}

/**
 * Greedy and beam search over a [Stepper], step for step as `mt5lite.runtimes.decoding.Decoder` (which follows
 * transformers' beam search), for one input at a time; the beams are the rows of one step.
 */
class Decoder(private val stepper: Stepper, private val eosId: Int, private val decoderStartId: Int,
              private val suppressed: IntArray) {

    /** Generated ids (without the decoder start token), ending at eos if one was produced. */
    fun generate(ids: LongArray, mask: LongArray, options: DecodingOptions): IntArray {
        options.validate()
        if (options.maxNewTokens > stepper.maxTargetLength) {
            throw InputException("max_new_tokens is ${options.maxNewTokens}, beyond this export's cache of " +
                "${stepper.maxTargetLength} positions (max_target_length); lower it or re-export with a larger " +
                "--max-target-length")
        }
        val encoded = stepper.encode(ids, mask)
        return if (options.numBeams == 1) greedy(encoded, options) else beam(encoded, options)
    }

    private fun greedy(encoded: Encoded, options: DecodingOptions): IntArray {
        val cache = stepper.newCache()
        var token = decoderStartId.toLong()
        val out = ArrayList<Int>()
        for (position in 0 until options.maxNewTokens) {
            val logits = stepper.step(longArrayOf(token), position, encoded, cache)[0]
            for (id in suppressed) logits[id] = Float.NEGATIVE_INFINITY
            token = argmax(logits).toLong()
            out.add(token.toInt())
            if (token == eosId.toLong()) break
        }
        return out.toIntArray()
    }

    private fun beam(encoded: Encoded, options: DecodingOptions): IntArray {
        val beams = options.numBeams
        val vocab = stepper.vocabSize
        val keep = 2 * beams
        val maxLength = 1 + options.maxNewTokens
        val rows = encoded.repeated(beams)  // every beam reads the input's encoder outputs
        var cache = stepper.newCache(beams)
        var running = Array(beams) { LongArray(maxLength) { eosId.toLong() }.also { r -> r[0] = decoderStartId.toLong() } }
        var finishedSeqs = Array(beams) { running[it].copyOf() }
        var runningScores = FloatArray(beams) { if (it == 0) 0f else NEG }
        var finishedScores = FloatArray(beams) { NEG }
        var isFinished = BooleanArray(beams)
        var improvable = true
        var finishedLengths = IntArray(beams)

        for (curLen in 1 until maxLength) {
            val position = curLen - 1
            val logits = stepper.step(LongArray(beams) { running[it][position] }, position, rows, cache)
            // A beam's log-softmax shifts its logits by one number, so its best logits are its best tokens: score
            // only those (in index order, so that ties go to the lower index as over all beams x vocab values).
            val pool = IntArray(beams * keep)
            val poolScores = FloatArray(beams * keep)
            for (b in 0 until beams) {
                val row = logits[b]
                val (max, logSum) = logNormaliser(row)
                for (id in suppressed) row[id] = Float.NEGATIVE_INFINITY
                topK(row, keep).sorted().forEachIndexed { j, t ->
                    pool[b * keep + j] = b * vocab + t
                    poolScores[b * keep + j] = ((row[t] - max) - logSum) + runningScores[b]
                }
            }
            val picked = topK(poolScores, keep)
            val topIndices = IntArray(keep) { pool[picked[it]] }
            val topScores = FloatArray(keep) { poolScores[picked[it]] }
            val sourceBeams = IntArray(keep) { topIndices[it] / vocab }
            val topIds = IntArray(keep) { topIndices[it] % vocab }
            val candidates = Array(keep) { j -> running[sourceBeams[j]].copyOf().also { it[curLen] = topIds[j].toLong() } }
            val hits = BooleanArray(keep) { topIds[it] == eosId || curLen + 1 >= maxLength }

            // Continue with the best candidates that did not stop.
            val alive = FloatArray(keep) { topScores[it] + (if (hits[it]) 1f else 0f) * NEG }
            val next = topK(alive, beams)
            running = Array(beams) { candidates[next[it]] }
            runningScores = FloatArray(beams) { alive[next[it]] }
            cache = cache.select(IntArray(beams) { sourceBeams[next[it]] })

            // Candidates among the top `beams` that stopped join the finished hypotheses, length-normalised.
            val divisor = Math.pow((curLen + 1 - 1).toDouble(), options.lengthPenalty).toFloat()
            val full = isFinished.all { it } && options.earlyStopping
            val merged = FloatArray(beams + keep)
            for (b in 0 until beams) merged[b] = finishedScores[b]
            for (j in 0 until keep) {
                var normalised = topScores[j] / divisor
                normalised += (if (full) 1f else 0f) * NEG
                normalised += (if (!improvable) 1f else 0f) * NEG
                normalised += (if (hits[j] && j < beams) 0f else 1f) * NEG
                merged[beams + j] = normalised
            }
            val best = topK(merged, beams)
            val seqPool = Array(beams + keep) { if (it < beams) finishedSeqs[it] else candidates[it - beams] }
            val finishedPool = BooleanArray(beams + keep) { if (it < beams) isFinished[it] else hits[it - beams] && it - beams < beams }
            val lengthPool = IntArray(beams + keep) { if (it < beams) finishedLengths[it] else curLen }
            finishedSeqs = Array(beams) { seqPool[best[it]] }
            finishedScores = FloatArray(beams) { merged[best[it]] }
            isFinished = BooleanArray(beams) { finishedPool[best[it]] }
            finishedLengths = IntArray(beams) { lengthPool[best[it]] }

            // transformers' heuristic: can a running beam still beat the worst finished one?
            val bestPossible = runningScores[0] / divisor
            val worstFinished = finishedScores.min() ?: NEG
            val anyBetter = (0 until beams).any { bestPossible > (if (isFinished[it]) worstFinished else NEG) }
            improvable = improvable && anyBetter
            val allFull = isFinished.all { it } && options.earlyStopping
            if (!improvable || allFull || hits.all { it }) break
        }
        val ids = finishedSeqs[0].copyOfRange(1, finishedLengths[0] + 1).map { it.toInt() }
        val eos = ids.indexOf(eosId)
        return (if (eos >= 0) ids.subList(0, eos + 1) else ids).toIntArray()
    }

    companion object {
        const val NEG = -1.0e9f

        /** The index of the largest value (the first on ties, as numpy's argmax). */
        fun argmax(values: FloatArray): Int {
            var best = 0
            for (i in 1 until values.size) if (values[i] > values[best]) best = i
            return best
        }

        /**
         * Indices of the [k] largest values, largest first, ties by lower index (numpy's stable argsort): one pass
         * that keeps the best [k] in order (beam search takes 8 of each beam's vocabulary at every step).
         */
        fun topK(values: FloatArray, k: Int): IntArray {
            val best = IntArray(minOf(k, values.size))
            var count = 0
            for (i in values.indices) {
                // a later value must be strictly larger to pass a kept one: ties stay in index order
                var at = count
                while (at > 0 && values[i] > values[best[at - 1]]) at--
                if (at >= best.size) continue
                val end = minOf(count, best.size - 1)
                System.arraycopy(best, at, best, at + 1, end - at)
                best[at] = i
                if (count < best.size) count++
            }
            return best
        }

        /**
         * log-softmax's two numbers in float32 as numpy computes them (max-shifted, exp, pairwise sum, log): the
         * maximum and the log of the shifted exponentials' sum, so that a value's log-probability is
         * `(x - max) - logSum`.
         */
        fun logNormaliser(logits: FloatArray): Pair<Float, Float> {
            var max = Float.NEGATIVE_INFINITY
            for (x in logits) if (x > max) max = x
            val exps = FloatArray(logits.size) { Math.exp((logits[it] - max).toDouble()).toFloat() }
            return Pair(max, Math.log(pairwiseSum(exps, 0, exps.size).toDouble()).toFloat())
        }

        /** numpy's float32 pairwise summation (8 accumulators, blocks of 128). */
        fun pairwiseSum(a: FloatArray, from: Int, n: Int): Float {
            if (n < 8) {
                var res = 0f
                for (i in 0 until n) res += a[from + i]
                return res
            }
            if (n <= 128) {
                val r = FloatArray(8) { a[from + it] }
                var i = 8
                while (i < n - n % 8) {
                    for (j in 0 until 8) r[j] += a[from + i + j]
                    i += 8
                }
                var res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
                while (i < n) res += a[from + i++]
                return res
            }
            var n2 = n / 2
            n2 -= n2 % 8
            return pairwiseSum(a, from, n2) + pairwiseSum(a, from + n2, n - n2)
        }
    }
}
