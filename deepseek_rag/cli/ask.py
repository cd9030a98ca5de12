"""``deepseek-rag ask``: answer a question from an index, citing the passages used (see ``generation.py``)."""

from __future__ import annotations

import click

from ..errors import DeepSeekRAGError
from ..generation import DEEPSEEK_MODEL, ENV_API_KEY, ENV_BASE_URL, ENV_MODEL, answer
from ..llm_client import DEFAULT_TIMEOUT, ENV_TIMEOUT
from .common import CONTEXT_SETTINGS, echo_json


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
@click.option("--timeout", type=float, envvar=ENV_TIMEOUT, default=DEFAULT_TIMEOUT, show_default=True, metavar="SECONDS",
              help="Seconds to wait for the LLM server: to connect, and for each next part of the answer "
                   f"(the whole answer without --stream); then a clear error [env: {ENV_TIMEOUT}]. A refused "
                   "connection and HTTP 429/5xx are retried twice; a timeout, or a streamed answer once begun, never.")
@click.option("--stream", is_flag=True, help="Print the answer as it is generated.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: answer, mode, sources.")
def ask_command(index_dir, question, top_k, base_url, model_name, timeout, stream, as_json) -> None:
    """Answer a question from an index, citing the passages used.

    Uses DeepSeek's API when DEEPSEEK_API_KEY is set, an OpenAI-compatible server with --base-url, and
    otherwise answers offline with the most relevant sentences (an extractive answer).

    \b
    Examples:
      deepseek-rag ask contracts.idx "Who may terminate the agreement?"
      DEEPSEEK_API_KEY=sk-... deepseek-rag ask contracts.idx "Summarise the payment terms" --stream
      deepseek-rag ask contracts.idx "Which law governs?" --base-url http://localhost:11434/v1 --model-name qwen2.5:7b
      deepseek-rag ask contracts.idx "Which law governs?" --base-url http://gpu-box:8000/v1 --model-name m --timeout 300
    """
    streamed = False
    try:
        result = answer(index_dir, question, top_k=top_k, stream=stream and not as_json,
                        base_url=base_url, model_name=model_name, timeout=timeout)
        if result.text_stream is not None:
            for delta in result.text_stream:
                streamed = True
                click.echo(delta, nl=False)
            click.echo()
        elif not as_json:
            click.echo(result.text)
    except (DeepSeekRAGError, ValueError, FileNotFoundError) as exc:
        if streamed:
            click.echo()  # end the partial answer's line, so the error stands on its own
        raise click.ClickException(str(exc)) from None
    if as_json:
        echo_json({"question": question, **result.to_dict()})
        return
    click.echo("\n" + result.format_sources())
