package dev.mt5lite.demo

import android.os.Bundle
import android.view.View
import android.widget.AdapterView
import android.widget.ArrayAdapter
import android.widget.Button
import android.widget.CheckBox
import android.widget.EditText
import android.widget.ProgressBar
import android.widget.Spinner
import android.widget.TextView
import androidx.appcompat.app.AppCompatActivity
import androidx.lifecycle.lifecycleScope
import dev.mt5lite.core.DecodingOptions
import dev.mt5lite.core.Generation
import dev.mt5lite.core.Overflow
import dev.mt5lite.core.T5Generator
import kotlinx.coroutines.CancellationException
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.Job
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext

/**
 * One screen: pick the task, the language and a sample (or type), run the bundled export on-device with LiteRT,
 * and see the output, the time to the first token and the time per token. Loading and generation run off the main
 * thread; the progress bar shows while they do.
 */
class MainActivity : AppCompatActivity() {
    private var generator: T5Generator? = null
    private var graphs: LiteRtGraphs? = null
    private var running: Job? = null
    private lateinit var samples: Samples

    private lateinit var task: Spinner
    private lateinit var language: Spinner
    private lateinit var sample: Spinner
    private lateinit var input: EditText
    private lateinit var beams: CheckBox
    private lateinit var run: Button
    private lateinit var progress: ProgressBar
    private lateinit var output: TextView
    private lateinit var stats: TextView

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        task = findViewById(R.id.task)
        language = findViewById(R.id.language)
        sample = findViewById(R.id.sample)
        input = findViewById(R.id.input)
        beams = findViewById(R.id.beams)
        run = findViewById(R.id.run)
        progress = findViewById(R.id.progress)
        output = findViewById(R.id.output)
        stats = findViewById(R.id.stats)
        run.setOnClickListener { generate() }
        load()
    }

    override fun onDestroy() {
        val opened = graphs
        val job = running
        super.onDestroy()
        // LiteRT must not be closed under a generation still inside a native run: close once it has finished.
        if (job == null || job.isCompleted) opened?.close() else job.invokeOnCompletion { opened?.close() }
    }

    private fun busy(working: Boolean) {
        progress.visibility = if (working) View.VISIBLE else View.GONE
        run.isEnabled = !working && generator != null
    }

    /** Unpack and check the bundled export, then open it, off the main thread. */
    private fun load() {
        busy(true)
        stats.text = getString(R.string.loading)
        lifecycleScope.launch {
            try {
                val loaded = withContext(Dispatchers.IO) {
                    val directory = ModelFiles.unpack(this@MainActivity)
                    val opened = LiteRtGraphs()
                    graphs = opened
                    Pair(T5Generator(directory, opened), ModelFiles.samples(this@MainActivity))
                }
                generator = loaded.first
                samples = loaded.second
                bindChoices()
                val manifest = loaded.first.manifest
                stats.text = getString(R.string.loaded, manifest.precision, manifest.tokenizerFile,
                    loaded.first.tokenizer.pieceCount)
            } catch (e: Exception) {  // a missing, damaged or foreign model: say so, do not crash
                stats.text = getString(R.string.bad_model, e.message?.lines()?.first() ?: e.javaClass.simpleName)
            } finally {
                busy(false)
            }
        }
    }

    private fun bindChoices() {
        task.adapter = ArrayAdapter(this, android.R.layout.simple_spinner_dropdown_item, samples.tasks)
        language.adapter = ArrayAdapter(this, android.R.layout.simple_spinner_dropdown_item, samples.languages)
        val refresh = object : AdapterView.OnItemSelectedListener {
            override fun onItemSelected(parent: AdapterView<*>?, view: View?, position: Int, id: Long) = showSamples()
            override fun onNothingSelected(parent: AdapterView<*>?) = Unit
        }
        task.onItemSelectedListener = refresh
        language.onItemSelectedListener = refresh
        sample.onItemSelectedListener = object : AdapterView.OnItemSelectedListener {
            override fun onItemSelected(parent: AdapterView<*>?, view: View?, position: Int, id: Long) {
                input.setText(parent?.getItemAtPosition(position).toString())
            }
            override fun onNothingSelected(parent: AdapterView<*>?) = Unit
        }
    }

    private fun showSamples() {
        val texts = samples.samples.filter {
            it.task == task.selectedItem?.toString() && it.language == language.selectedItem?.toString()
        }.map { it.text }
        sample.adapter = ArrayAdapter(this, android.R.layout.simple_spinner_dropdown_item, texts)
    }

    /** Run the model on the typed text, off the main thread, and show the output and its timings. */
    private fun generate() {
        val model = generator ?: return
        val text = samples.input(task.selectedItem.toString(), language.selectedItem.toString(),
            input.text.toString())
        val options = DecodingOptions(maxNewTokens = minOf(32, model.manifest.maxTargetLength),
            numBeams = if (beams.isChecked) 4 else 1)
        busy(true)
        output.text = ""
        stats.text = getString(R.string.running)
        running = lifecycleScope.launch {
            try {
                val result: Generation = withContext(Dispatchers.Default) {
                    model.generate(text, options, Overflow.TRUNCATE)
                }
                output.text = result.text
                stats.text = getString(R.string.timings, result.firstTokenMs, result.msPerStep, result.steps,
                    result.encoderMs)
            } catch (e: CancellationException) {
                throw e
            } catch (e: Exception) {  // bad input, or the engine failing: one line on screen, no crash
                stats.text = e.message?.lines()?.first() ?: e.javaClass.simpleName
            } finally {
                busy(false)
            }
        }
    }
}
