package dev.mt5lite.demo

import androidx.test.ext.junit.runners.AndroidJUnit4
import androidx.test.platform.app.InstrumentationRegistry
import dev.mt5lite.core.DecodingOptions
import dev.mt5lite.core.Json
import dev.mt5lite.core.T5Generator
import org.junit.Assert.assertEquals
import org.junit.Test
import org.junit.runner.RunWith

/**
 * The app's engine (the core on LiteRT's CompiledModel) on the bundled export, against the outputs the Python
 * LiteRT runtime gave for the same inputs (`assets/golden.json`, written by `make android-assets`): the same ids,
 * greedy and beam, for every golden input.
 */
@RunWith(AndroidJUnit4::class)
class GoldenOnDeviceTest {
    @Test
    fun theDeviceGivesThePythonRuntimesTokens() {
        val context = InstrumentationRegistry.getInstrumentation().targetContext
        val golden = Json.parse(context.assets.open("golden.json").use { String(it.readBytes(), Charsets.UTF_8) })
            as Map<*, *>
        LiteRtGraphs().use { graphs ->
            val generator = T5Generator(ModelFiles.unpack(context), graphs)
            val mismatches = ArrayList<String>()
            val cases = golden["cases"] as List<*>
            for (item in cases) {
                val case = item as Map<*, *>
                val options = DecodingOptions(maxNewTokens = (case["max_new_tokens"] as Long).toInt(),
                    numBeams = (case["beams"] as Long).toInt())
                val expected = (case["ids"] as List<*>).map { (it as Long).toInt() }
                val ids = generator.generateIds(case["text"].toString(), options).toList()
                if (ids != expected) mismatches.add("${case["text"]} (beams ${options.numBeams}): $ids != $expected")
            }
            assertEquals(mismatches.take(5).joinToString("\n"), 0, mismatches.size)
        }
    }
}
