package dev.mt5lite.core

import org.junit.Assert.assertTrue
import org.junit.Test
import java.io.File

/**
 * The Kotlin generator driven by outputs recorded from the Python LiteRT run of an export: it must feed the graphs
 * what Python fed them (the same input ids, tokens, positions and caches) and produce the same tokens and text,
 * greedy and beam.
 */
class DecodingParityTest {
    private val golden = Golden.json("decoding.json")
    private val floats = Golden.floats(golden["floats"].toString())
    private val logitsWidth = (golden["logits"] as Long).toInt()
    private val kvWidth = (golden["kv"] as Long).toInt()

    /** Replays one recorded case; every mismatch in what the loop feeds is collected in [problems]. */
    inner class Replay(private val case: Map<*, *>, private val problems: MutableList<String>) : GraphLoader {
        private val calls = (case["calls"] as List<*>).map { it as Map<*, *> }
        private var next = 0

        override fun open(file: File, signature: String, spec: GraphSpec): Graph = object : Graph {
            override fun run(inputs: Map<String, Tensor>): Map<String, Tensor> =
                if (Manifest.Role.parse(signature)?.kind == "encoder") encode(spec, inputs) else step(spec, inputs)
        }

        private fun encode(spec: GraphSpec, inputs: Map<String, Tensor>): Map<String, Tensor> {
            val ids = inputs.getValue("input_ids").longData()
            val expected = Golden.ints(case["input_ids"])
            if (!ids.map { it.toInt() }.toIntArray().contentEquals(expected)) problems.add("input_ids differ")
            return spec.outputs.associate { it.name to Tensor.zeros(it.shape, it.dtype) }
        }

        /** A step of one row or several (beams in one call): each row is one of Python's recorded steps. */
        private fun step(spec: GraphSpec, inputs: Map<String, Tensor>): Map<String, Tensor> {
            val rows = inputs.getValue("decoder_input_ids").shape[0]
            val out = spec.outputs.associate { it.name to Tensor.zeros(it.shape, it.dtype) }
            for (row in 0 until rows) {
                if (next >= calls.size) {
                    problems.add("more decoder steps than Python ran (${calls.size})")
                    return out
                }
                val call = calls[next++]
                val token = inputs.getValue("decoder_input_ids").longData()[row]
                val position = inputs.getValue("position").longData()[0]
                if (token != call["token"] || position != call["position"]) {
                    problems.add("step $next: token $token at $position, Python fed ${call["token"]} at ${call["position"]}")
                }
                for (name in listOf("k", "v")) {  // over every layer's input, as Python sums the stacked cache
                    val sum = inputs.filterKeys { it.startsWith("self_${name}_cache_") }.values
                        .sumByDouble { positionWeightedSum(it.selectRows(0, intArrayOf(row))) }
                    val expected = call["${name}_sum"] as Double
                    if (Math.abs(sum - expected) > 1e-4 * (1.0 + Math.abs(expected))) {
                        problems.add("step $next: self_${name}_cache sums to $sum, Python's to $expected")
                    }
                }
                var offset = (call["offset"] as Long).toInt()
                for (tensor in spec.outputs) {  // recorded per row in the order logits, new_self_k, new_self_v
                    val target = out.getValue(tensor.name).floatData()
                    if (tensor.name == "logits") {
                        System.arraycopy(floats, offset, target, row * logitsWidth, logitsWidth)
                        offset += logitsWidth
                        continue
                    }
                    val layers = tensor.shape[0]
                    val block = kvWidth / layers  // one row of one layer: [H,1,d_kv]
                    for (l in 0 until layers) System.arraycopy(floats, offset + l * block, target, (l * rows + row) * block, block)
                    offset += kvWidth
                }
            }
            return out
        }
    }

    /** Each value of one layer's cache weighted by its position + 1, as the Python side sums it (`[1,H,T,d_kv]`). */
    private fun positionWeightedSum(cache: Tensor): Double {
        val steps = cache.shape[2]
        val dkv = cache.shape[3]
        val data = cache.floatData()
        var sum = 0.0
        for (i in data.indices) sum += data[i].toDouble() * ((i / dkv) % steps + 1)
        return sum
    }

    @Test
    fun greedyAndBeamTokensAndTextMatchPython() {
        val export = File(golden["export"].toString())
        val problems = ArrayList<String>()
        val identical = HashMap<Int, Int>()
        val total = HashMap<Int, Int>()
        val languages = HashSet<String>()
        for (item in golden["cases"] as List<*>) {
            val case = item as Map<*, *>
            val beams = (case["beams"] as Long).toInt()
            val caseProblems = ArrayList<String>()
            val generator = T5Generator(export, Replay(case, caseProblems))
            val options = DecodingOptions(maxNewTokens = (case["max_new_tokens"] as Long).toInt(), numBeams = beams)
            val result = generator.generate(case["text"].toString(), options)
            if (!result.ids.contentEquals(Golden.ints(case["ids"]))) caseProblems.add("ids ${result.ids.toList()} != ${case["ids"]}")
            if (result.text != case["output"]) caseProblems.add("text '${result.text}' != '${case["output"]}'")
            total[beams] = (total[beams] ?: 0) + 1
            if (caseProblems.isEmpty()) identical[beams] = (identical[beams] ?: 0) + 1
            problems.addAll(caseProblems.map { "${case["text"]} (beams $beams): $it" })
            languages.add(case["lang"].toString())
        }
        for ((beams, count) in total.toSortedMap()) {
            println("decoding parity, ${if (beams == 1) "greedy" else "$beams-beam"}: ${identical[beams] ?: 0} of $count " +
                "token-identical (${languages.size} languages)")
        }
        assertTrue(problems.take(10).joinToString("\n"), problems.isEmpty())
    }
}
