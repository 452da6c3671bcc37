package dev.mt5lite.litert

import dev.mt5lite.core.DecodingOptions
import dev.mt5lite.core.Golden
import dev.mt5lite.core.T5Generator
import org.junit.Assert.assertTrue
import org.junit.Test
import java.io.File

/**
 * The whole Kotlin core (tokenizer, manifest checks, decoding loop, cache) on the real `.tflite` files, through
 * LiteRT's C API in the Python wheel's `libLiteRt.so`: the same ids as the Python LiteRT runtime, greedy and beam,
 * for every golden input of every export.
 */
class RealLiteRtTest {
    @Test
    fun theKotlinCoreOnRealLiteRtGivesPythonsTokens() {
        val golden = Golden.json("real.json")
        val problems = ArrayList<String>()
        LiteRtLoader(golden["library"].toString(), threads = 2).use { loader ->
            for ((name, path) in golden["exports"] as Map<*, *>) {
                val generator = T5Generator(File(path.toString()), loader)
                val counts = HashMap<Int, IntArray>()
                val tokens = HashMap<Int, Int>()  // per beam count: generated tokens and the ms they took
                val millis = HashMap<Int, Double>()
                for (item in golden["cases"] as List<*>) {
                    val case = item as Map<*, *>
                    if (case["export"] != name) continue
                    val beams = (case["beams"] as Long).toInt()
                    val options = DecodingOptions(maxNewTokens = (case["max_new_tokens"] as Long).toInt(), numBeams = beams)
                    val result = generator.generate(case["text"].toString(), options)
                    val count = counts.getOrPut(beams) { IntArray(2) }
                    count[1]++
                    if (result.ids.toList() == (case["ids"] as List<*>).map { (it as Long).toInt() } &&
                        result.text == case["output"]) {
                        count[0]++
                    } else {
                        problems.add("$name ${case["text"]} (beams $beams): ${result.ids.toList()} != ${case["ids"]}")
                    }
                    tokens[beams] = (tokens[beams] ?: 0) + result.steps
                    millis[beams] = (millis[beams] ?: 0.0) + result.encoderMs + result.msPerStep * result.steps
                }
                for ((beams, count) in counts.toSortedMap()) {
                    println("real LiteRT, $name export, ${if (beams == 1) "greedy" else "$beams-beam"}: " +
                        "${count[0]} of ${count[1]} token-identical")
                }
                val perToken = tokens.keys.sorted().joinToString(", ") { beams ->
                    "%.2f ms per %s token".format(millis.getValue(beams) / tokens.getValue(beams),
                        if (beams == 1) "greedy" else "$beams-beam")
                }
                println("real LiteRT, $name export: $perToken on the JVM (the beams in one call of " +
                    "${generator.manifest.decoderBatches.values.joinToString("/")})")
            }
        }
        assertTrue(problems.take(10).joinToString("\n"), problems.isEmpty())
    }
}
