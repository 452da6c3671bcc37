"""Bundle a TFLite export into the Android demo app's assets (``make android-assets``).

The app's assets folder is rebuilt as a whole, beside itself, and renamed into place:

- ``model/``: exactly the files the export's manifest lists, plus the manifest, each copy checked against the
  manifest's sha256 (the app checks them again after unpacking, before LiteRT opens anything);
- ``samples.json``: sample inputs per task and language from held-out pairs, and the prompt template the screen
  fills (``{task} {lang}: {text}`` for the demo task; ``{text}`` for pairs in another form);
- ``golden.json``: what the Python LiteRT runtime generates for some of those inputs, greedy and 4-beam, for the
  instrumented test that runs the app's engine on a device.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from mt5lite.data import TaskPair
from mt5lite.demo.task import PROMPT, PROMPT_PATTERN
from mt5lite.errors import InputError, ModelFileError
from mt5lite.manifest import MANIFEST_NAME, inside, load_manifest, sha256_file
from mt5lite.staging import staged_directory

#: Where the app reads its bundled export, relative to the app module.
ASSETS = Path("src") / "main" / "assets"
MODEL_DIR = "model"


def _samples(pairs: list[TaskPair], per_language: int) -> dict:
    """Sample inputs per (task, language) and the prompt template that rebuilds a model input from them."""
    parsed = [PROMPT_PATTERN.match(p.source) for p in pairs]
    if all(m and m.group(2) == p.lang for m, p in zip(parsed, pairs, strict=True)):
        rows = [{"task": m.group(1), "lang": m.group(2), "text": m.group(3)} for m in parsed]
        prompt = PROMPT
    else:
        rows = [{"task": "text", "lang": p.lang, "text": p.source} for p in pairs]
        prompt = "{text}"
    counts: dict[tuple, int] = {}
    samples = []
    for row in rows:
        key = (row["task"], row["lang"])
        counts[key] = counts.get(key, 0) + 1
        if counts[key] <= per_language:
            samples.append(row)
    return {"prompt": prompt, "tasks": sorted({r["task"] for r in rows}),
            "languages": sorted({r["lang"] for r in rows}), "samples": samples}


def _golden(export: Path, pairs: list[TaskPair], max_new_tokens: int) -> dict:
    """The Python LiteRT runtime's ids for ``pairs``, greedy and 4-beam."""
    from mt5lite.runtimes.litert import LiteRTGenerator
    from mt5lite.runtimes.options import DecodingOptions

    generator = LiteRTGenerator(export)
    steps = min(max_new_tokens, int(generator.manifest.max_target_length))
    cases = []
    for beams in (1, 4):
        options = DecodingOptions(max_new_tokens=steps, num_beams=beams)
        for pair, ids in zip(pairs, generator.generate_ids([p.source for p in pairs], options), strict=True):
            cases.append({"text": pair.source, "lang": pair.lang, "beams": beams, "max_new_tokens": steps,
                          "ids": ids, "output": generator.tokenizer.decode(ids)})
    return {"export_id": generator.manifest.export_id, "cases": cases}


def bundle_for_android(export_dir: str | os.PathLike, app_dir: str | os.PathLike, pairs: list[TaskPair],
                       per_language: int = 5, golden_inputs: int = 30, max_new_tokens: int = 32) -> dict:
    """Rebuild ``app_dir``'s assets from the TFLite export in ``export_dir`` (hashes checked before and after
    copying), with samples and golden outputs drawn from ``pairs``. Returns what was written."""
    export, app = Path(export_dir), Path(app_dir)
    if not (app / "src" / "main" / "AndroidManifest.xml").is_file():
        raise InputError(f"{app} is not an Android app module (no src/main/AndroidManifest.xml); give "
                         "android_demo/app")
    manifest = load_manifest(export)
    if manifest.engine != "litert":
        raise InputError(f"{export} is an {manifest.engine} export; the app runs LiteRT: convert it with "
                         "mt5lite export tflite first")
    if not pairs:
        raise InputError("no sample pairs given; give a task-pair TSV with --data")
    chosen = pairs[:: max(1, len(pairs) // golden_inputs)][:golden_inputs]
    golden = _golden(export, chosen, max_new_tokens)
    with staged_directory(app / ASSETS, force=True) as staging:
        model = staging / MODEL_DIR
        model.mkdir()
        for name, expected in [*manifest.files.items(), (MANIFEST_NAME, None)]:
            shutil.copy2(inside(export, name), model / name)
            if expected is not None and sha256_file(model / name) != expected:
                raise ModelFileError(f"{export / name}: the copy in the app's assets does not match the manifest's "
                                     "sha256; is the export being rewritten?")
        (staging / "samples.json").write_text(json.dumps(_samples(pairs, per_language), ensure_ascii=False, indent=1),
                                              encoding="utf-8")
        (staging / "golden.json").write_text(json.dumps(golden, ensure_ascii=False), encoding="utf-8")
    size = sum(f.stat().st_size for f in (app / ASSETS / MODEL_DIR).iterdir())
    return {"assets": str(app / ASSETS), "files": len(manifest.files) + 1, "bytes": size,
            "golden_cases": len(golden["cases"]), "export_id": manifest.export_id}
