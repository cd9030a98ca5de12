"""``deepseek-rag ask``: answer a question from an index, citing the passages used (see ``generation.py``)."""

from __future__ import annotations

import json
import os

import click

from ..errors import DeepSeekRAGError
from ..generation import DEEPSEEK_MODEL, ENV_API_KEY, ENV_BASE_URL, ENV_MODEL, answer
from .common import CONTEXT_SETTINGS


@click.command("ask", context_settings=CONTEXT_SETTINGS)
@click.argument("index_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("question")
@click.option("--top-k", type=int, default=5, show_default=True, help="Passages retrieved and cited.")
@click.option("--base-url", envvar=ENV_BASE_URL, default=None,
              help="OpenAI-compatible server (vLLM, Ollama, llama.cpp), e.g. http://localhost:11434/v1 "
                   f"[env: {ENV_BASE_URL}]; its key, if any, in ${ENV_API_KEY}.")
@click.option("--model-name", envvar=ENV_MODEL, default=None,
              help=f"LLM model name; required with --base-url, default {DEEPSEEK_MODEL} on DeepSeek's API "
                   f"[env: {ENV_MODEL}].")
@click.option("--stream", is_flag=True, help="Print the answer as it is generated.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: answer, mode, sources.")
def ask_command(index_dir, question, top_k, base_url, model_name, stream, as_json) -> None:
    """Answer a question from an index, citing the passages used.

    Uses DeepSeek's API when DEEPSEEK_API_KEY is set, an OpenAI-compatible server with --base-url, and
    otherwise answers offline with the most relevant sentences (an extractive answer).

    \b
    Examples:
      deepseek-rag ask contracts.idx "Who may terminate the agreement?"
      DEEPSEEK_API_KEY=sk-... deepseek-rag ask contracts.idx "Summarise the payment terms" --stream
      deepseek-rag ask contracts.idx "Which law governs?" --base-url http://localhost:11434/v1 --model-name qwen2.5:7b
    """
    try:
        result = answer(index_dir, question, top_k=top_k, stream=stream and not as_json,
                        base_url=base_url, model_name=model_name)
        if result.text_stream is not None:
            for delta in result.text_stream:
                click.echo(delta, nl=False)
            click.echo()
        elif not as_json:
            click.echo(result.text)
    except (DeepSeekRAGError, ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:
        if type(exc).__module__.split(".")[0] in ("openai", "httpx", "httpcore"):
            where = base_url or os.environ.get(ENV_BASE_URL) or "DeepSeek's API"
            raise click.ClickException(f"the LLM at {where} failed: {type(exc).__name__}: {exc}") from None
        raise
    if as_json:
        click.echo(json.dumps({"question": question, **result.to_dict()}, ensure_ascii=False))
        return
    click.echo("\n" + result.format_sources())
