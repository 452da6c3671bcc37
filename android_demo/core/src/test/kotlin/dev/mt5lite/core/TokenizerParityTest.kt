package dev.mt5lite.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test
import java.io.File

/** Ids and decoded text identical to Python's sentencepiece, for every golden text of every golden model. */
class TokenizerParityTest {
    @Test
    fun idsAndTextMatchPythonSentencepiece() {
        val golden = Golden.json("tokenizer.json")
        val models = (golden["models"] as Map<*, *>).mapValues { (_, path) ->
            SentencePiece.parse(File(path.toString()).readBytes())
        }
        val mismatches = ArrayList<String>()
        val perModel = HashMap<String, Int>()
        val languages = HashSet<String>()
        for (case in golden["cases"] as List<*>) {
            case as Map<*, *>
            val model = case["model"].toString()
            val tokenizer = models.getValue(model)
            val text = case["text"].toString()
            val expected = Golden.ints(case["ids"])
            val ids = tokenizer.encode(text)
            if (!ids.contentEquals(expected)) {
                mismatches.add("$model ids ${text.take(40)}: ${ids.toList()} != ${expected.toList()}")
            }
            val decoded = tokenizer.decode(expected)
            if (decoded != case["decoded"]) mismatches.add("$model decode ${text.take(40)}: '$decoded' != '${case["decoded"]}'")
            perModel[model] = (perModel[model] ?: 0) + 1
            languages.add("$model/${case["lang"]}")
        }
        println("tokenizer parity: ${golden["cases"].let { (it as List<*>).size }} texts, " +
            "${perModel.toSortedMap()} per model, ${languages.size} model/language pairs, ${mismatches.size} mismatches")
        assertTrue(mismatches.take(10).joinToString("\n"), mismatches.isEmpty())
    }

    @Test
    fun byteFallbackSpellsUncoveredCharactersInBytes() {
        val golden = Golden.json("tokenizer.json")
        val demo = SentencePiece.parse(File((golden["models"] as Map<*, *>)["demo"].toString()).readBytes())
        val ids = demo.encode("\uD83E\uDD8A")  // a fox emoji: no piece covers it
        assertEquals(4, ids.count { it in 3..258 })
        assertEquals("\uD83E\uDD8A", demo.decode(ids))
    }

    @Test(expected = ModelFileException::class)
    fun aFileThatIsNotSentencepieceIsRefused() {
        SentencePiece.parse("{\"not\": \"a model\"}".toByteArray())
    }
}
