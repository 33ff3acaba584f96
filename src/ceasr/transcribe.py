"""Transcribe files one line each: ``path<TAB>text`` or JSON lines. A bad file is one error line."""

from __future__ import annotations

import json
import sys

from ceasr.api import Recognizer
from ceasr.errors import AudioError


def transcribe_files(recognizer: Recognizer, files: list[str], fmt: str = "text", out=sys.stdout) -> int:
    """Print one result per readable file; returns how many files failed (each reported on stderr)."""
    failed = 0
    for path in files:
        try:
            result = recognizer.transcribe(path)
        except AudioError as e:
            print(f"ceasr transcribe: error: {e}", file=sys.stderr)
            failed += 1
            continue
        if fmt == "json":
            row = {
                "path": path,
                "text": result.text,
                "tokens": list(result.tokens),
                "token_scores": [round(s, 4) for s in result.token_scores],
                "language": result.language,
                "token_languages": list(result.token_languages),
            }
            print(json.dumps(row, ensure_ascii=False), file=out, flush=True)
        else:
            print(f"{path}\t{result.text}", file=out, flush=True)
    return failed
