"""Writing a file so that a reader sees the old content or the new, never half of it.

The one way the project replaces a file others read while it runs (Prometheus' file_sd list,
rendered configs, secrets, resume markers, instance metadata, exports): a temporary file in
the same directory, flushed to disk, then renamed over the target.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: str | Path, data: str | bytes, *, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` atomically; parent directories are created. The file
    gets ``mode`` (a secret passes 0o600: its content is never readable by others, not even
    in the temporary file, which starts private)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_if_changed(path: str | Path, data: str, *, mode: int = 0o644) -> bool:
    """``write_atomic`` unless the file already holds ``data``; True when it was written."""
    try:
        if Path(path).read_text(encoding="utf-8") == data:
            return False
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    write_atomic(path, data, mode=mode)
    return True
