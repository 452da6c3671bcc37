package dev.mt5lite.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Rule
import org.junit.Test
import org.junit.rules.TemporaryFolder
import java.io.File

/** Bad exports are refused before any graph is opened, each with a one-line message naming the problem. */
class ManifestTest {
    @get:Rule
    val folder = TemporaryFolder()

    private val export = File(Golden.json("decoding.json")["export"].toString())

    private fun copy(): File {
        val target = folder.newFolder("export")
        export.listFiles()!!.forEach { it.copyTo(File(target, it.name)) }
        return target
    }

    private fun refused(directory: File, expected: String) {
        try {
            Manifest.load(directory)
            fail("expected a refusal containing '$expected'")
        } catch (e: ModelFileException) {
            val message = e.message ?: ""
            assertTrue("'$message' lacks '$expected'", message.contains(expected))
            assertEquals("one line: $message", 1, message.lines().size)
        }
    }

    @Test
    fun theExportLoadsWithItsGraphsAndSignatures() {
        val manifest = Manifest.load(export)
        assertEquals("encoder", manifest.graphs.getValue("encoder").signature)
        assertEquals(manifest.graphs.getValue("encoder").file, manifest.graphs.getValue("decoder").file)
        assertEquals(mapOf(1 to "decoder", 4 to "decoder_b4"), manifest.decoderBatches)
        assertEquals(listOf(16, manifest.maxSourceLength), manifest.sourceLengths)
        assertEquals("decoder_b4_s16", manifest.roleAt("decoder", 4, 16))
        assertEquals("encoder", manifest.roleAt("encoder", 1, manifest.maxSourceLength))
    }

    @Test
    fun aModifiedModelFailsItsHash() {
        val dir = copy()
        val model = File(dir, "model.tflite")
        val bytes = model.readBytes()
        bytes[bytes.size / 3] = (bytes[bytes.size / 3].toInt() xor 0x5A).toByte()
        model.writeBytes(bytes)
        refused(dir, "model.tflite: sha256 does not match")
    }

    @Test
    fun aTruncatedModelFailsItsHash() {
        val dir = copy()
        val model = File(dir, "model.tflite")
        model.writeBytes(model.readBytes().copyOf(1000))
        refused(dir, "model.tflite: sha256 does not match")
    }

    @Test
    fun aMissingFileIsNamed() {
        val dir = copy()
        File(dir, "spiece.model").delete()
        refused(dir, "spiece.model: missing")
    }

    @Test
    fun aBrokenOrForeignManifestIsRefused() {
        val dir = copy()
        val manifest = File(dir, "manifest.json")
        val text = manifest.readText()
        manifest.writeText(text.replace("\"format_version\": 4", "\"format_version\": 3"))
        refused(dir, "this app reads 'mt5lite-export' version 4; re-export the model")
        manifest.writeText(text.substring(0, text.length / 2))
        refused(dir, "not valid JSON")
        val edits = listOf(  // what is replaced in manifest.json -> by what -> what the refusal says
            Triple("\"spiece.model\":", "\"../spiece.model\":", "points outside the model folder"),
            Triple("\"signature\": \"decoder\"", "\"sig\": \"decoder\"", "graphs.decoder names no signature"),
            Triple("\"decoder_b4\": {", "\"decoder_b8\": {", "graphs.decoder_b8: decoder_input_ids has batch 4, not 8"),
            Triple("\"decoder_b4\": {", "\"decoder_x\": {", "graphs: unknown graph 'decoder_x'"),
            Triple("\"encoder_s16\": {", "\"encoder_s8\": {",
                "graphs.encoder_s8: attention_mask has 16 source positions, not 8"),
            Triple("\"encoder_s16\": {", "\"encoder_b2\": {", "graphs: unknown graph 'encoder_b2'"),
            Triple("\"decoder_b4_s16\": {", "\"decoder_b2_s16\": {",
                "graphs: source-length bucket 16 has no decoder_b4_s16"))
        for ((from, to, expected) in edits) {
            assertTrue("'$from' is not in the manifest", text.contains(from))
            manifest.writeText(text.replace(from, to))
            refused(dir, expected)
        }
    }

    @Test
    fun aMissingDirectoryIsNamed() {
        refused(File(folder.root, "nothing"), "no such export directory")
    }
}
