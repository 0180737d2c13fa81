"""Reading ``.bnn`` files: size limit, UTF-8 decoding, hashing, file errors."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from bnnc.compiler.diagnostics import Diagnostic
from bnnc.compiler.ir import Span

MAX_BYTES = 1 << 20  # 1 MiB
"""Largest accepted source file (BNN005 beyond)."""

_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Source:
    """A decoded source file: its text and the SHA-256 of its raw bytes."""

    path: str
    text: str
    sha256: str


@dataclass(frozen=True)
class ReadFailure:
    """Why a file could not be turned into text; ``text`` is for rendering."""

    diagnostic: Diagnostic
    text: str | None = None


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def too_large(path: str, size: int, at: Span | None = None) -> Diagnostic:
    """BNN005 for a file over :data:`MAX_BYTES`."""
    return Diagnostic(
        "BNN005",
        f"`{path}` is {size} bytes; bnnc reads files up to {MAX_BYTES} bytes (1 MiB)",
        at,
        file=path,
    )


def read(path: str, at: Span | None = None) -> Source | ReadFailure:
    """Read and decode ``path``; ``at`` locates file-level errors (an import)."""
    file = Path(path)
    try:
        size = file.stat().st_size
        if size > MAX_BYTES:
            return ReadFailure(too_large(path, size, at))
        raw = file.read_bytes()
    except (OSError, ValueError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        return ReadFailure(
            Diagnostic("BNN001", f"cannot read `{path}`: {reason}", at, file=path)
        )
    if len(raw) > MAX_BYTES:  # grew between stat and read
        return ReadFailure(too_large(path, len(raw), at))
    return decode(path, raw)


def decode(path: str, raw: bytes) -> Source | ReadFailure:
    """Decode UTF-8 (a leading byte-order mark is dropped)."""
    body = raw[len(_BOM) :] if raw.startswith(_BOM) else raw
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        start = error.start
        line_start = body.rfind(b"\n", 0, start) + 1
        line = body.count(b"\n", 0, start) + 1
        column = len(body[line_start:start].decode("utf-8", "replace")) + 1
        span = Span(
            file=path, line=line, column=column, end_line=line, end_column=column + 1
        )
        offset = start + len(raw) - len(body)  # in the file, a BOM included
        message = (
            f"`{path}` is not valid UTF-8 (byte 0x{body[start]:02x} at offset {offset})"
        )
        diagnostic = Diagnostic("BNN002", message, span, file=path)
        return ReadFailure(diagnostic, body.decode("utf-8", "replace"))
    return Source(path, text, sha256_hex(raw))
