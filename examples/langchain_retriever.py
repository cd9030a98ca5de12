"""deepseek-rag retrieval in a LangChain (LCEL) chain: retriever → cited context → prompt → chat model.

    python examples/langchain_retriever.py

Pass any LangChain chat model as ``main(llm=...)`` (ChatOpenAI pointed at vLLM/Ollama, ChatDeepSeek, ...).
Without one, it runs offline: it prints the retrieved passages and an extractive answer.
Needs: pip install -e . -e adapters/langchain
"""

from __future__ import annotations

import logging
from typing import Any

from langchain_core.documents import Document
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnablePassthrough
from langchain_deepseek_rag import DeepSeekRAGRetriever

from deepseek_rag.generation import answer

QUESTION = "How quickly must a data breach be reported?"

POLICY = """# Information Security Policy

This policy protects the confidentiality, integrity and availability of company and customer data. It
applies to employees, contractors and every system that stores or processes company data.

# Incident reporting

Anyone who notices a suspected security incident reports it to the security team immediately. A personal
data breach is reported to the data protection officer within twenty-four hours, and the officer notifies
the supervisory authority within seventy-two hours where the law requires it.

# Access control

Access rights follow the principle of least privilege and are reviewed every quarter by system owners.
Leavers lose all access on their last working day. Shared accounts are not allowed.

# Encryption

Laptops use full-disk encryption. Customer data is encrypted at rest with AES-256 and in transit with TLS 1.2
or later. Encryption keys are rotated every year and stored in the key management service.
"""

RETENTION = """# Records Retention Schedule

Invoices and accounting records are kept for seven years after the end of the financial year. Employment
records are kept for six years after employment ends. Customer support tickets are deleted two years after
they are closed, unless a legal hold applies.

# Legal holds

When litigation is expected, the legal team issues a legal hold, and the affected records are kept until the
hold is lifted, whatever the schedule says.
"""

PROMPT = ChatPromptTemplate.from_messages([
    ("system", "Answer from the context only and cite passages by their [doc:start-end] label.\n\n{context}"),
    ("human", "{question}"),
])


def format_docs(docs: list[Document]) -> str:
    """Each passage with the citation label made from its offsets."""
    return "\n\n".join(f"[{d.metadata['doc_id']}:{d.metadata['start']}-{d.metadata['end']}] {d.page_content}" for d in docs)


def main(llm: Any = None, question: str = QUESTION) -> Any:
    logging.basicConfig(level=logging.WARNING)
    retriever = DeepSeekRAGRetriever.from_documents(
        [Document(page_content=POLICY, id="security.md", metadata={"kind": "policy"}),
         Document(page_content=RETENTION, id="retention.md", metadata={"kind": "schedule"})],
        k=3,
    )
    if llm is None:
        for doc in retriever.invoke(question):
            m = doc.metadata
            print(f"[{m['doc_id']}:{m['start']}-{m['end']}] score={m['score']:.3f} section={m['section']!r}")
        result = answer(retriever.index, question, top_k=3)
        print("\n" + result.text)
        return result
    chain = {"context": retriever | format_docs, "question": RunnablePassthrough()} | PROMPT | llm | StrOutputParser()
    reply = chain.invoke(question)
    print(reply)
    return reply


if __name__ == "__main__":
    main()
