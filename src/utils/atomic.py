"""Atomic file writes: write a temp file beside the target, then `os.replace` (never a half-written file)."""
import fcntl
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


def update_json_locked(path: str, update: Callable):
    """Read-modify-write of a JSON file under an exclusive lock on `path` + `.lock`, so that processes sharing
    the file keep each other's entries: writes `update(current)` (current = None when the file is missing)
    and returns it."""
    with open(f"{os.path.splitext(path)[0]}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        current = json.loads(open(path).read()) if os.path.isfile(path) else None
        new = update(current)
        write_json_atomic(path, new, indent=1)
    return new
