"""``python -m deepseek_rag.cli``: the same as the ``deepseek-rag`` command."""

from . import main

main()
