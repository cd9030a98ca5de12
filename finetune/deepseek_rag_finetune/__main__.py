"""``python -m deepseek_rag_finetune ...`` = ``deepseek-rag finetune ...``; ``torchrun`` runs it this way."""

from .cli import main

main()
