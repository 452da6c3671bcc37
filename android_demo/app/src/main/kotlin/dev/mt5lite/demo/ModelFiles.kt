package dev.mt5lite.demo

import android.content.Context
import dev.mt5lite.core.Json
import dev.mt5lite.core.Manifest
import dev.mt5lite.core.ModelFileException
import java.io.File

/** A sample input the screen offers: its language and text, and the prompt template it is sent with. */
class Sample(val language: String, val task: String, val text: String)

/** What `assets/samples.json` says about the bundled model's task (written by `make android-assets`). */
class Samples(val prompt: String, val tasks: List<String>, val languages: List<String>, val samples: List<Sample>) {
    /** The model input for [text] in [task] and [language], from the prompt template. */
    fun input(task: String, language: String, text: String): String =
        prompt.replace("{task}", task).replace("{lang}", language).replace("{text}", text)
}

/**
 * The export bundled in the APK's assets (`assets/model/`, copied there by `make android-assets`), unpacked into
 * the app's files so that LiteRT can memory-map it and the core can check every file's sha256 against the
 * manifest before anything runs. Unpacking is skipped when the unpacked manifest is already the bundled one.
 */
object ModelFiles {
    private const val ASSET_DIR = "model"

    /** The unpacked export directory. */
    fun unpack(context: Context): File {
        val target = File(context.filesDir, ASSET_DIR)
        val names = context.assets.list(ASSET_DIR).orEmpty()
        if (Manifest.NAME !in names) throw ModelFileException("no model bundled in the app; run make android-assets")
        val bundled = context.assets.open("$ASSET_DIR/${Manifest.NAME}").use { it.readBytes() }
        val current = File(target, Manifest.NAME)
        if (current.isFile && current.readBytes().contentEquals(bundled)) return target
        val staging = File(context.filesDir, "$ASSET_DIR.partial")
        staging.deleteRecursively()
        staging.mkdirs()
        for (name in names) {
            context.assets.open("$ASSET_DIR/$name").use { input ->
                File(staging, name).outputStream().use { output -> input.copyTo(output) }
            }
        }
        target.deleteRecursively()
        if (!staging.renameTo(target)) throw ModelFileException("could not unpack the model into ${target.path}")
        return target
    }

    /** The samples and prompt template bundled beside the model. */
    fun samples(context: Context): Samples {
        val json = Json.parse(context.assets.open("samples.json").use { String(it.readBytes(), Charsets.UTF_8) })
            as Map<*, *>
        val samples = (json["samples"] as List<*>).map {
            it as Map<*, *>
            Sample(it["lang"].toString(), it["task"].toString(), it["text"].toString())
        }
        return Samples(json["prompt"].toString(), (json["tasks"] as List<*>).map { it.toString() },
            (json["languages"] as List<*>).map { it.toString() }, samples)
    }
}
