// The pure-Kotlin core: no Android imports, so it runs on any JVM. Its sources are also compiled at Kotlin
// language level 1.3 by the repository's JVM tests (tests/test_android_core.py, Debian's kotlinc 1.3.31).
plugins {
    alias(libs.plugins.kotlin.jvm)
}

java {
    sourceCompatibility = JavaVersion.VERSION_17
    targetCompatibility = JavaVersion.VERSION_17
}

kotlin {
    jvmToolchain(17)
}

dependencies {
    testImplementation(libs.junit)
}

// The JVM tests read golden files the Python side writes; run them through `make test` in the repository root.
tasks.test {
    enabled = System.getProperty("golden.dir") != null
    systemProperty("golden.dir", System.getProperty("golden.dir") ?: "")
}
