"""Question answering over long documents: LlamaIndex's RetrieverQueryEngine on deepseek-rag retrieval.

    python examples/llamaindex_query_engine.py "Who may terminate the agreement, and how?"

The LLM is DeepSeek's API when DEEPSEEK_API_KEY is set, or any OpenAI-compatible server (vLLM, Ollama,
llama.cpp) when DEEPSEEK_RAG_LLM_BASE_URL and DEEPSEEK_RAG_LLM_MODEL are set. With neither, it runs offline
and prints an extractive answer (the most relevant sentences, cited) instead of a generated one.
Needs: pip install -e . -e adapters/llama-index
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from llama_index.core import Document
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.retrievers.deepseek_rag import DeepSeekRAGRetriever

from deepseek_rag.generation import answer, resolve_llm

QUESTION = "Who may terminate the agreement, and how much notice is needed?"

SERVICES_AGREEMENT = """# Master Services Agreement

This Master Services Agreement is entered into between Northwind Analytics Ltd. ("Provider") and
Contoso Retail Inc. ("Customer"). Provider will deliver the data engineering services described in each
statement of work. Each statement of work refers to this Agreement and is governed by it.

# Term

The Agreement starts on the effective date and runs for an initial term of three years. It renews
automatically for successive one-year terms unless either party gives notice of non-renewal at least
ninety days before the end of the then-current term.

# Termination

Either party may terminate this Agreement for convenience by giving the other party sixty days written
notice. Either party may terminate immediately if the other party commits a material breach that is not
cured within thirty days after written notice describing the breach. On termination, Customer pays for
all services performed up to the termination date, and Provider returns all Customer data within
fifteen days.

# Fees and payment

Customer pays the fees set out in each statement of work. Provider invoices monthly in arrears, and
invoices are due within forty-five days of receipt. Late payments bear interest at one percent per month.

# Governing law

This Agreement is governed by the laws of the State of New York, without regard to its conflict of laws
rules. The courts of New York County have exclusive jurisdiction over any dispute arising from it.
"""

DATA_PROCESSING_ADDENDUM = """# Data Processing Addendum

This addendum applies whenever Provider processes personal data on behalf of Customer. Provider processes
personal data only on documented instructions from Customer, including for transfers to third countries.

# Security

Provider keeps appropriate technical and organisational measures: encryption of personal data in transit
and at rest, role-based access control, and yearly penetration tests by an independent firm.

# Breach notification

Provider notifies Customer without undue delay, and in any case within forty-eight hours, after becoming
aware of a personal data breach. The notice describes the nature of the breach, the categories of data
concerned, and the measures taken to address it.

# Sub-processors

Provider may engage sub-processors only with Customer's prior written authorisation. Provider remains fully
liable to Customer for the performance of each sub-processor's obligations.
"""


def build_retriever(similarity_top_k: int = 3) -> DeepSeekRAGRetriever:
    """Index two contracts with the bundled all-MiniLM-L6-v2 (offline); ids and metadata are kept."""
    documents = [
        Document(text=SERVICES_AGREEMENT, id_="msa.md", metadata={"kind": "agreement", "party": "Contoso"}),
        Document(text=DATA_PROCESSING_ADDENDUM, id_="dpa.md", metadata={"kind": "addendum", "party": "Contoso"}),
    ]
    return DeepSeekRAGRetriever.from_defaults(documents=documents, similarity_top_k=similarity_top_k)


def main(llm: Any = None, question: str = QUESTION) -> Any:
    """Answer ``question``; returns the LlamaIndex Response (or the extractive Answer without an LLM)."""
    logging.basicConfig(level=logging.WARNING)
    retriever = build_retriever()
    llm = resolve_llm(llm)
    if llm is None:
        print("No LLM configured (set DEEPSEEK_API_KEY, or DEEPSEEK_RAG_LLM_BASE_URL + DEEPSEEK_RAG_LLM_MODEL).\n")
        result = answer(retriever, question, top_k=3)
        print(result.format())
        return result

    engine = RetrieverQueryEngine.from_args(retriever, llm=llm)
    response = engine.query(question)
    print(response.response, "\n\nSources:")
    for source in response.source_nodes:
        node = source.node
        print(f"  [{node.ref_doc_id}:{node.start_char_idx}-{node.end_char_idx}] score={source.score:.3f} "
              f"section={node.metadata.get('section')!r}")
    return response


if __name__ == "__main__":
    main(question=sys.argv[1] if len(sys.argv) > 1 else QUESTION)
