"""Decode a text file's bytes: marked Unicode, UTF-8, GB18030, then a legacy encoding detected by charset-normalizer.

The order, first match wins:

1. a byte-order mark: UTF-8, UTF-16 or UTF-32 as marked;
2. binary data (NUL bytes, many control characters) is refused;
3. UTF-8 (a file cut off inside its last character loses that character; under 1% damaged sequences are kept
   as U+FFFD rather than read as GB18030 mojibake);
4. GB18030, unless charset-normalizer finds the bytes read better in another encoding: a Latin-1 text such as
   ``Größe`` is valid GB18030 too, but as mojibake (``Gr鲞e``);
5. the encoding charset-normalizer detects (Windows-1252, Latin-1, Windows-1251...). A short text fits many
   single-byte code pages equally well; among those tied for best, Windows-1252 (the commonest legacy code page,
   a superset of Latin-1's printable characters) is preferred.

:func:`decode_text` returns the text with the encoding it chose, so a loader can report it; this module reads
no files.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

from ..errors import InvalidInputError

logger = logging.getLogger(__name__)

# Bytes that never occur in text (everything below 0x20 except \t \n \v \f \r and ESC).
_CONTROL_BYTES = bytes(b for b in range(32) if b not in (9, 10, 11, 12, 13, 27))
_ASCII_BYTES = bytes(range(128))
_MAX_CONTROL_RATIO = 0.05
_BOMS = (
    (b"\xef\xbb\xbf", "utf-8"),
    (b"\xff\xfe\x00\x00", "utf-32-le"),  # before UTF-16 LE: it starts with the same two bytes
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)
_CHINESE = ("gb18030", "gbk", "gb2312")
_WESTERN = "cp1252"
_TIE = 0.01  # chaos / coherence differences below this are a tie
_DETECTION_BYTES = 4 << 20  # charset-normalizer reads samples; a bigger prefix only costs time


class DecodedText(NamedTuple):
    """Decoded text and the codec name it was read with (``"utf-8"``, ``"gb18030"``, ``"cp1252"``...)."""

    text: str
    encoding: str


def decode_bytes(data: bytes) -> str:
    """The text of ``data``; see :func:`decode_text` (which also says which encoding it used)."""
    return decode_text(data).text


def decode_text(data: bytes) -> DecodedText:
    """Decode file bytes as text (the module docstring gives the order) and name the encoding used.

    Raises :class:`InvalidInputError` for binary data, for bytes marked UTF-16/32 or UTF-8 that are not, and for
    bytes no encoding fits.
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return DecodedText(data[len(bom) :].decode(encoding), encoding)
            except UnicodeDecodeError as exc:
                raise InvalidInputError(
                    f"bytes start with a {encoding} byte-order mark but are not valid {encoding} ({exc.reason} "
                    f"at byte {exc.start}); re-save the file as UTF-8"
                ) from None
    sample = data[: 1 << 20]
    if b"\x00" in sample:
        raise InvalidInputError("data contains NUL bytes, so it is binary, not text; convert it to text first")
    controls = len(sample) - len(sample.translate(None, _CONTROL_BYTES))
    if sample and controls / len(sample) > _MAX_CONTROL_RATIO:
        raise InvalidInputError(
            f"data looks binary ({controls} control bytes in the first {len(sample)}); convert it to text first"
        )
    try:
        return DecodedText(data.decode("utf-8"), "utf-8")
    except UnicodeDecodeError as exc:
        if exc.reason == "unexpected end of data" and exc.start >= len(data) - 3:
            return DecodedText(data[: exc.start].decode("utf-8"), "utf-8")  # cut off inside its last character
    # UTF-8 with a few damaged bytes would decode as mojibake in any other encoding; keep it and mark the damage.
    replaced = data.decode("utf-8", errors="replace")
    damaged = replaced.count("\ufffd")
    non_ascii = len(data.translate(None, _ASCII_BYTES))
    if damaged * 100 <= non_ascii:
        logger.warning("replaced %d invalid byte sequence(s) in otherwise valid UTF-8 text with U+FFFD", damaged)
        return DecodedText(replaced, "utf-8")
    try:
        chinese = data.decode("gb18030")
    except UnicodeDecodeError:
        chinese = None
    detected = detect_encoding(data)
    if detected is not None and detected not in _CHINESE:
        try:
            return DecodedText(data.decode(detected), detected)
        except (UnicodeDecodeError, LookupError):  # detection reads a prefix; the rest may not fit
            pass
    if chinese is not None:
        return DecodedText(chinese, "gb18030")
    raise InvalidInputError(
        "data is not UTF-8 (nor marked UTF-16/32), not GB18030, and no legacy encoding fits it; re-save it as UTF-8"
    )


def detect_encoding(data: bytes) -> str | None:
    """The legacy encoding charset-normalizer finds best for ``data`` (a Python codec name), or None.

    Among encodings tied for best, a Chinese one (GB18030 reads all of them) wins, then Windows-1252.
    """
    from charset_normalizer import from_bytes

    matches = list(from_bytes(data[:_DETECTION_BYTES]))
    if not matches:
        return None
    best = min(matches, key=lambda m: (m.chaos, -m.coherence))
    tied = [m for m in matches if m.chaos - best.chaos < _TIE and best.coherence - m.coherence < _TIE]
    names = {name for match in tied for name in (match.encoding, *match.could_be_from_charset)}
    for preferred in (*_CHINESE, _WESTERN):
        if preferred in names:
            return "gb18030" if preferred in _CHINESE else preferred
    return best.encoding


def lone_surrogate(text: str) -> int | None:
    """The position of the first lone surrogate in ``text`` (a character no UTF-8 can hold), or None.

    Python makes them of invalid UTF-8 in file names and command-line arguments (``surrogateescape``) and of
    a JSON escape such as ``"\\ud83d"`` without its other half; a tokenizer or SQLite refuses them.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def describe_surrogate(text: str, position: int) -> str:
    """What the lone surrogate at ``position`` is, for an error message."""
    code = ord(text[position])
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: one byte of invalid UTF-8
        return f"byte 0x{code - 0xDC00:02X} at character {position}, which is not valid UTF-8"
    return f"U+{code:04X} at character {position}, half of a UTF-16 surrogate pair without its other half"
