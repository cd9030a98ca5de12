"""User dictionaries for jieba: the words of a field (medicine, law) that its general dictionary cuts apart.

A dictionary is a UTF-8 text file in jieba's format, one word a line, optionally followed by a frequency and a
part-of-speech tag (``幽门螺杆菌 20 n``). Each dictionary gets its own ``jieba.Tokenizer`` (jieba's global one is
left alone, so two indexes with different dictionaries live in one process). An index records the dictionary's
path and the checksum of its content: postings cut with other words are refused when opened, as postings written
under other analysis settings are, and a dictionary that changed or went missing is a clear error.

What it does not do: decide which words belong in a dictionary, or split text (``analysis.py`` does).
"""

from __future__ import annotations

import logging
import threading
import zlib
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError

logger = logging.getLogger(__name__)

_tokenizers: dict[tuple[str, str], Any] = {}
_lock = threading.Lock()


def dictionary_checksum(path: str | Path) -> str:
    """CRC32 and word count of a user dictionary's words (blank lines and surrounding spaces ignored)."""
    words = _read_words(path)
    return f"{zlib.crc32(chr(10).join(words).encode('utf-8')):08x}-{len(words)}"


def _read_words(path: str | Path) -> list[str]:
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InvalidInputError(f"user dictionary {str(file)!r} does not exist; give a jieba dictionary file "
                                "(one word a line, optionally a frequency and a tag)") from None
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"user dictionary {str(file)!r} is not UTF-8 ({exc}); save it as UTF-8") from None
    except OSError as exc:
        raise InvalidInputError(f"user dictionary {str(file)!r} cannot be read ({exc.strerror or exc})") from None
    lines = [line.strip() for line in text.splitlines()]
    return [line for line in lines if line]


def jieba_tokenizer(user_dictionary: str | None = None) -> Any:
    """jieba's default tokenizer, or one that also knows the words of ``user_dictionary`` (built once per
    dictionary content and reused)."""
    import jieba

    jieba.setLogLevel(logging.WARNING)  # jieba logs its dictionary loading through its own stderr handler
    if user_dictionary is None:
        jieba.initialize()
        return jieba.dt
    key = (str(Path(user_dictionary).resolve()), dictionary_checksum(user_dictionary))
    with _lock:
        tokenizer = _tokenizers.get(key)
        if tokenizer is None:
            tokenizer = jieba.Tokenizer()
            tokenizer.initialize()
            for line in _read_words(user_dictionary):
                word, *rest = line.split()
                frequency = int(rest[0]) if rest and rest[0].isdigit() else None
                tokenizer.add_word(word, frequency, rest[1] if len(rest) > 1 else None)
            _tokenizers[key] = tokenizer
            logger.info("jieba user dictionary %s: %s words", user_dictionary, key[1].split("-")[1])
    return tokenizer
