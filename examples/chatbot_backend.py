"""A chatbot backend over a long-document index: one retriever, one chat engine per conversation.

    python examples/chatbot_backend.py

Each conversation gets LlamaIndex's CondensePlusContextChatEngine: a follow-up ("and how fast?") is first
rewritten into a standalone question from the chat history, then answered from freshly retrieved passages.
A web handler would call ``backend.reply(session_id, message)`` (or ``await backend.areply(...)``).
The LLM comes from DEEPSEEK_API_KEY or DEEPSEEK_RAG_LLM_BASE_URL (+ DEEPSEEK_RAG_LLM_MODEL); without one the
backend answers each message extractively (no history rewriting). Needs: pip install -e . -e adapters/llama-index
"""

from __future__ import annotations

import logging
from typing import Any

from llama_index.core import Document
from llama_index.core.chat_engine import CondensePlusContextChatEngine
from llama_index.retrievers.deepseek_rag import DeepSeekRAGRetriever

from deepseek_rag.generation import answer, resolve_llm

SYSTEM_PROMPT = (
    "You answer questions about the employee handbook. Use only the context given, and say which "
    "section an answer comes from. If the context does not answer the question, say so."
)

HANDBOOK = """# Employee Handbook

Welcome to Fabrikam. This handbook explains how we work, what you can expect from us, and what we expect
from you. It applies to every employee in every office, and it is updated each January.

# Working hours

Core hours are ten to four, Monday to Friday. Outside core hours you may organise your time freely, as
long as your team knows when you are reachable. Overtime must be agreed in advance with your manager.

# Remote work

Employees may work remotely up to three days a week. Fully remote arrangements need the approval of the
department head and are reviewed every six months. Company laptops must be used on a secured network.

# Annual leave

Full-time employees receive twenty-five days of paid annual leave per calendar year, plus public holidays.
Up to five unused days may be carried over into the first quarter of the next year. Leave requests should
be submitted at least two weeks in advance through the HR portal.

# Expenses

Travel and accommodation booked through the travel desk are paid directly by the company. Other business
expenses are reimbursed within thirty days of a claim with receipts. Claims older than ninety days are not
reimbursed.

# Security incidents

Report a lost device or a suspected security incident to the IT service desk immediately, and in any case
within one hour. The service desk can lock and wipe company devices remotely.
"""


class ChatBackend:
    """What a chat server holds: the retriever (shared, thread-safe) and a chat engine per session."""

    def __init__(self, retriever: DeepSeekRAGRetriever, llm: Any = None) -> None:
        self.retriever = retriever
        self.llm = llm
        self._sessions: dict[str, CondensePlusContextChatEngine] = {}

    def _engine(self, session_id: str) -> CondensePlusContextChatEngine:
        if session_id not in self._sessions:
            self._sessions[session_id] = CondensePlusContextChatEngine.from_defaults(
                self.retriever, llm=self.llm, system_prompt=SYSTEM_PROMPT
            )
        return self._sessions[session_id]

    def reply(self, session_id: str, message: str) -> dict[str, Any]:
        """The assistant's reply and the passages it drew on (doc id, character range, score)."""
        if self.llm is None:
            result = answer(self.retriever, message, top_k=3)
            return {"reply": result.text, "sources": [s.citation for s in result.sources]}
        response = self._engine(session_id).chat(message)
        return {"reply": str(response), "sources": _citations(response.source_nodes)}

    async def areply(self, session_id: str, message: str) -> dict[str, Any]:
        """:meth:`reply` for async servers: retrieval runs in a worker thread, the loop stays free."""
        if self.llm is None:
            return self.reply(session_id, message)
        response = await self._engine(session_id).achat(message)
        return {"reply": str(response), "sources": _citations(response.source_nodes)}

    def reset(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)


def _citations(source_nodes: list[Any]) -> list[str]:
    return [f"[{n.node.ref_doc_id}:{n.node.start_char_idx}-{n.node.end_char_idx}]" for n in source_nodes]


def main(llm: Any = None) -> list[dict[str, Any]]:
    logging.basicConfig(level=logging.WARNING)
    retriever = DeepSeekRAGRetriever.from_defaults(
        documents=[Document(text=HANDBOOK, id_="handbook.md", metadata={"kind": "policy"})], similarity_top_k=3
    )
    backend = ChatBackend(retriever, resolve_llm(llm))
    if backend.llm is None:
        print("No LLM configured: answering extractively, one message at a time.\n")
    replies = []
    for message in ("How many days of annual leave do I get?", "And how many of them can I carry over?"):
        result = backend.reply("session-1", message)
        print(f"user: {message}\nassistant: {result['reply']}\n  sources: {' '.join(result['sources'])}\n")
        replies.append(result)
    return replies


if __name__ == "__main__":
    main()
