package dev.mt5lite.core

import java.io.File
import java.security.MessageDigest

/**
 * An export's `manifest.json`, checked as the Python runtimes check it: format and version, every file present,
 * inside the folder and with its recorded sha256, the graphs naming the contract's tensors. Everything the app
 * needs (graph files and signatures, tensor shapes, lengths, special ids) is read from here, never assumed.
 */
class Manifest private constructor(
    val root: File,
    val engine: String,
    val precision: String,
    val graphs: Map<String, GraphSpec>,
    val tokenizerFile: String,
    val maxSourceLength: Int,
    val maxTargetLength: Int,
    val vocabSize: Int,
    val padId: Int,
    val eosId: Int,
    val decoderStartId: Int,
    val files: Map<String, String>
) {
    /** The file inside [root] that [name] (from this manifest) refers to. */
    fun file(name: String): File = inside(root, name)

    /** The batch sizes the decoder steps serve, each with its graph's role: 1 is `decoder`, 4 `decoder_b4`. */
    val decoderBatches: Map<Int, String> = graphs.keys.mapNotNull { role -> Role.parse(role)?.let { Pair(it, role) } }
        .filter { it.first.kind == "decoder" && it.first.source == null }
        .associate { Pair(it.first.batch, it.second) }.toSortedMap()

    /**
     * The source lengths the graphs take, ascending: the source-length buckets (`encoder_s16` and the decoder steps
     * over 16 positions), then [maxSourceLength]. An input runs the shortest that holds it.
     */
    val sourceLengths: List<Int> = (graphs.keys.mapNotNull { Role.parse(it) }
        .filter { it.kind == "encoder" && it.source != null }.map { it.source!! } + maxSourceLength).distinct().sorted()

    /** The role of the graph of [kind] at [batch] over [source] positions ([maxSourceLength]: the full length). */
    fun roleAt(kind: String, batch: Int, source: Int): String =
        Role(kind, batch, if (source == maxSourceLength) null else source).name

    /** What a graph's role says: its kind, the batch it takes and its source-length bucket (null: the full length). */
    data class Role(val kind: String, val batch: Int = 1, val source: Int? = null) {
        val name: String get() = kind + (if (batch > 1) "_b$batch" else "") + (if (source != null) "_s$source" else "")

        companion object {
            /** The role [role] names, or null for a role the contract does not know. */
            fun parse(role: String): Role? {
                val found = GRAPH_ROLE.matchEntire(role) ?: return null
                val (kind, batch, source) = found.destructured
                if (batch.isNotEmpty() && (kind == "encoder" || batch.toInt() == 1)) return null
                return Role(kind, if (batch.isEmpty()) 1 else batch.toInt(), if (source.isEmpty()) null else source.toInt())
            }
        }
    }

    companion object {
        const val NAME = "manifest.json"
        const val FORMAT = "mt5lite-export"
        const val FORMAT_VERSION = 4L
        val ENCODER_INPUTS = listOf("input_ids", "attention_mask")
        val ENCODER_OUTPUTS = listOf("encoder_hidden_states", "cross_k", "cross_v")
        /** The decoder step's stacked tensors, which it takes one layer per input: `cross_k_0` ... `cross_k_{L-1}`. */
        val LAYERED = listOf("cross_k", "cross_v", "self_k_cache", "self_v_cache")
        val DECODER_OUTPUTS = listOf("logits", "new_self_k", "new_self_v")

        /** The decoder step's input names over [layers] decoder layers (`mt5lite.contract.graph_names`). */
        fun decoderInputs(layers: Int): List<String> = listOf("decoder_input_ids", "position", "encoder_attention_mask") +
            LAYERED.flatMap { name -> (0 until layers).map { "${name}_$it" } }
        /**
         * A graph's role: `encoder`, `decoder`, and a static export's further graphs of the same weights: `decoder_b4`
         * runs 4 rows (beams) in one call, `encoder_s16` and `decoder_s16` take 16 source positions, `decoder_b4_s16`
         * both.
         */
        val GRAPH_ROLE = Regex("(encoder|decoder)(?:_b([1-9][0-9]*))?(?:_s([1-9][0-9]*))?")
        private val REQUIRED = listOf("format", "format_version", "engine", "export_id", "graphs", "files",
            "tokenizer", "special_tokens", "max_source_length", "max_target_length", "vocab_size")

        /**
         * Read and check `manifest.json` in [directory]; with [verifyHashes] every file's sha256 is compared with
         * the manifest before any engine opens it. Throws `ModelFileException` naming each problem.
         */
        fun load(directory: File, verifyHashes: Boolean = true): Manifest {
            if (!directory.isDirectory) throw ModelFileException("$directory: no such export directory")
            val path = File(directory, NAME)
            if (!path.isFile) throw ModelFileException("$directory: no $NAME; is this an mt5lite export directory?")
            val json = try {
                Json.parse(String(path.readBytes(), Charsets.UTF_8))
            } catch (e: ModelFileException) {
                throw ModelFileException("$path: ${e.message}")
            }
            val top = json as? Map<*, *> ?: throw ModelFileException("$path: not a JSON object; re-export the model")
            val missing = REQUIRED.filter { it !in top }
            if (missing.isNotEmpty()) {
                throw ModelFileException("$path: missing keys ${missing.joinToString(", ")}; re-export the model")
            }
            if (top["format"] != FORMAT || top["format_version"] != FORMAT_VERSION) {
                throw ModelFileException("$path: format '${top["format"]}' version ${top["format_version"]}; " +
                    "this app reads '$FORMAT' version $FORMAT_VERSION; re-export the model")
            }
            val problems = ArrayList<String>()
            val files = LinkedHashMap<String, String>()
            for ((name, hash) in asMap(top["files"], "files", path)) {
                val file = inside(directory, name.toString())
                when {
                    !file.isFile -> problems.add("$name: missing")
                    verifyHashes && sha256(file) != hash -> problems.add("$name: sha256 does not match the " +
                        "manifest (truncated, modified, or from another export)")
                }
                files[name.toString()] = hash.toString()
            }
            val graphs = LinkedHashMap<String, GraphSpec>()
            val rawGraphs = asMap(top["graphs"], "graphs", path)
            for (role in listOf("encoder", "decoder")) if (rawGraphs[role] !is Map<*, *>) problems.add("graphs: no $role graph")
            graphs@ for ((key, graph) in rawGraphs) {
                val role = key.toString()
                val parsed = Role.parse(role)
                if (parsed == null) {
                    problems.add("graphs: unknown graph '$role' (the contract's are encoder, decoder, decoder_bN, " +
                        "encoder_sN, decoder_sN and decoder_bN_sN)")
                    continue@graphs
                }
                if (graph !is Map<*, *>) continue
                val spec = graphSpec(role, graph, path)
                val (inputs, outputs) = if (parsed.kind == "encoder") Pair(ENCODER_INPUTS, ENCODER_OUTPUTS)
                    else Pair(decoderInputs(spec.layers), DECODER_OUTPUTS)
                if (spec.file !in files) problems.add("graphs.$role: file ${spec.file} is not listed in files")
                if (spec.inputs.map { it.name }.sorted() != inputs.sorted() ||
                    spec.outputs.map { it.name }.sorted() != outputs.sorted()) {
                    problems.add("graphs.$role: tensor names are not the contract's")
                }
                val batch = spec.inputs.firstOrNull { it.name == "decoder_input_ids" }?.shape?.get(0)
                if (parsed.kind == "decoder" && batch != null && batch != parsed.batch) {
                    problems.add("graphs.$role: decoder_input_ids has batch $batch, not ${parsed.batch}")
                }
                val mask = spec.inputs.firstOrNull { it.name.endsWith("attention_mask") }?.shape?.get(1)
                val source = parsed.source ?: (top["max_source_length"] as? Long)?.toInt()
                if (mask != null && mask != source) {
                    problems.add("graphs.$role: ${spec.inputs.first { it.name.endsWith("attention_mask") }.name} " +
                        "has $mask source positions, not $source")
                }
                graphs[role] = spec
            }
            val parsedRoles = graphs.keys.mapNotNull { Role.parse(it) }
            for (bucket in parsedRoles.mapNotNull { it.source }.distinct().sorted()) {  // each bucket has every graph
                val missing = parsedRoles.filter { it.source == null }.map { Role(it.kind, it.batch, bucket).name }
                    .filter { it !in graphs }
                if (missing.isNotEmpty()) {
                    problems.add("graphs: source-length bucket $bucket has no ${missing.joinToString(", ")}")
                }
            }
            if (problems.isNotEmpty()) throw ModelFileException("$directory: " + problems.joinToString("; "))
            val special = asMap(top["special_tokens"], "special_tokens", path)
            val tokenizer = asMap(top["tokenizer"], "tokenizer", path)
            if (tokenizer["file"]?.toString() !in files) {
                throw ModelFileException("$path: the tokenizer file ${tokenizer["file"]} is not among the hashed files; " +
                    "re-export the model")
            }
            return Manifest(directory, top["engine"].toString(), (top["precision"] ?: "").toString(), graphs,
                tokenizer["file"]?.toString() ?: throw ModelFileException("$path: tokenizer names no file"),
                int(top["max_source_length"], "max_source_length", path),
                int(top["max_target_length"], "max_target_length", path), int(top["vocab_size"], "vocab_size", path),
                int(special["pad"], "special_tokens.pad", path), int(special["eos"], "special_tokens.eos", path),
                int(special["decoder_start"], "special_tokens.decoder_start", path), files)
        }

        /** `root/name`, refusing absolute names and names that escape [root] (`..`, symlinks). */
        fun inside(root: File, name: String): File {
            val candidate = File(root, name).canonicalFile
            val base = root.canonicalFile
            if (File(name).isAbsolute || !candidate.path.startsWith(base.path + File.separator)) {
                throw ModelFileException("$root: file name '$name' points outside the model folder; refusing it")
            }
            return candidate
        }

        /** The sha256 hex digest of [file], read in chunks. */
        fun sha256(file: File): String {
            val digest = MessageDigest.getInstance("SHA-256")
            file.inputStream().use { stream ->
                val buffer = ByteArray(1 shl 20)
                while (true) {
                    val read = stream.read(buffer)
                    if (read < 0) break
                    digest.update(buffer, 0, read)
                }
            }
            return digest.digest().joinToString("") { String.format("%02x", it.toInt() and 0xFF) }
        }

        private fun graphSpec(role: String, graph: Map<*, *>, path: File): GraphSpec {
            val file = graph["file"]?.toString() ?: throw ModelFileException("$path: graphs.$role names no file")
            val signature = graph["signature"]?.toString() ?: throw ModelFileException(
                "$path: graphs.$role names no signature; re-export with mt5lite export tflite")
            return GraphSpec(role, file, signature, tensors(graph["inputs"], "$role inputs", path),
                tensors(graph["outputs"], "$role outputs", path))
        }

        private fun tensors(value: Any?, what: String, path: File): List<TensorSpec> {
            val list = value as? List<*> ?: throw ModelFileException("$path: graphs $what is not a list")
            return list.map { item ->
                val tensor = item as? Map<*, *> ?: throw ModelFileException("$path: graphs $what has a non-object")
                val shape = (tensor["shape"] as? List<*>)?.map { (it as? Long)?.toInt() ?: -1 }
                if (shape == null || shape.any { it < 1 }) {
                    throw ModelFileException("$path: ${tensor["name"]} in $what needs a static shape; re-export " +
                        "with mt5lite export onnx --static-shapes, then export tflite")
                }
                TensorSpec(tensor["name"].toString(), shape.toIntArray(), Tensor.DType.of(tensor["dtype"].toString()))
            }
        }

        private fun asMap(value: Any?, key: String, path: File): Map<*, *> =
            value as? Map<*, *> ?: throw ModelFileException("$path: '$key' is not an object; re-export the model")

        private fun int(value: Any?, key: String, path: File): Int =
            (value as? Long)?.toInt() ?: throw ModelFileException("$path: '$key' is not an integer")
    }
}
