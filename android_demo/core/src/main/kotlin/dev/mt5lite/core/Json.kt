package dev.mt5lite.core

/**
 * A small strict JSON reader for `manifest.json`: objects become `Map<String, Any?>`, arrays `List<Any?>`, numbers
 * `Long` (integers) or `Double`, plus `String`, `Boolean` and `null`. Errors name the offset.
 */
class Json private constructor(private val text: String) {
    private var pos = 0

    companion object {
        /** Parse [text]; `ModelFileException` if it is not a single well-formed JSON value. */
        fun parse(text: String): Any? {
            val reader = Json(text)
            val value = reader.value()
            reader.whitespace()
            if (reader.pos != text.length) reader.fail("unexpected text after the value")
            return value
        }
    }

    private fun fail(why: String): Nothing = throw ModelFileException("not valid JSON at offset $pos: $why")

    private fun whitespace() {
        while (pos < text.length && text[pos] in " \t\r\n") pos++
    }

    private fun value(): Any? {
        whitespace()
        if (pos >= text.length) fail("unexpected end")
        return when (text[pos]) {
            '{' -> obj()
            '[' -> array()
            '"' -> string()
            't' -> literal("true", true)
            'f' -> literal("false", false)
            'n' -> literal("null", null)
            else -> number()
        }
    }

    private fun literal(word: String, result: Any?): Any? {
        if (!text.startsWith(word, pos)) fail("unexpected character '${text[pos]}'")
        pos += word.length
        return result
    }

    private fun obj(): Map<String, Any?> {
        val result = LinkedHashMap<String, Any?>()
        pos++
        whitespace()
        if (pos < text.length && text[pos] == '}') { pos++; return result }
        while (true) {
            whitespace()
            if (pos >= text.length || text[pos] != '"') fail("expected a key")
            val key = string()
            whitespace()
            if (pos >= text.length || text[pos] != ':') fail("expected ':'")
            pos++
            result[key] = value()
            whitespace()
            if (pos >= text.length) fail("unterminated object")
            when (text[pos++]) {
                ',' -> Unit
                '}' -> return result
                else -> { pos--; fail("expected ',' or '}'") }
            }
        }
    }

    private fun array(): List<Any?> {
        val result = ArrayList<Any?>()
        pos++
        whitespace()
        if (pos < text.length && text[pos] == ']') { pos++; return result }
        while (true) {
            result.add(value())
            whitespace()
            if (pos >= text.length) fail("unterminated array")
            when (text[pos++]) {
                ',' -> Unit
                ']' -> return result
                else -> { pos--; fail("expected ',' or ']'") }
            }
        }
    }

    private fun string(): String {
        val out = StringBuilder()
        pos++
        while (true) {
            if (pos >= text.length) fail("unterminated string")
            val c = text[pos++]
            when {
                c == '"' -> return out.toString()
                c == '\\' -> {
                    if (pos >= text.length) fail("unterminated escape")
                    when (val e = text[pos++]) {
                        '"', '\\', '/' -> out.append(e)
                        'b' -> out.append('\b')
                        'f' -> out.append('\u000C')
                        'n' -> out.append('\n')
                        'r' -> out.append('\r')
                        't' -> out.append('\t')
                        'u' -> {
                            if (pos + 4 > text.length) fail("short \\u escape")
                            out.append(text.substring(pos, pos + 4).toIntOrNull(16)?.toChar() ?: fail("bad \\u escape"))
                            pos += 4
                        }
                        else -> fail("bad escape '\\$e'")
                    }
                }
                c < ' ' -> fail("control character in a string")
                else -> out.append(c)
            }
        }
    }

    private fun number(): Any {
        val start = pos
        if (pos < text.length && text[pos] == '-') pos++
        while (pos < text.length && (text[pos].isDigit() || text[pos] in ".eE+-")) pos++
        val token = text.substring(start, pos)
        if (token.isEmpty() || token == "-") fail("unexpected character '${text[start]}'")
        val integer = token.toLongOrNull()
        return integer ?: token.toDoubleOrNull() ?: fail("bad number '$token'")
    }
}
