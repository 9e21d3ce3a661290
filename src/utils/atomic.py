"""Atomic file writes: write a temp file beside the target, then `os.replace` (never a half-written file)."""
import json
import os
from typing import Callable


def atomic_write(path: str, write: Callable[[str], None], suffix: str = "") -> str:
    """`write(tmp_path)` fills a temp file that then replaces `path`; the temp file is removed on failure.

    `suffix` keeps an extension some writers need (matplotlib picks the format from it)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}{suffix}"
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def write_text_atomic(path: str, text: str) -> str:
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    return atomic_write(path, write)


def write_json_atomic(path: str, obj, indent=None) -> str:
    return write_text_atomic(path, json.dumps(obj, indent=indent) + ("\n" if indent else ""))
