"""Chinese medical answers, searched in hybrid mode (BM25 + vectors) with the bundled model, offline.

    python examples/medical_qa_chinese.py

The bundled all-MiniLM-L6-v2 is an English model: its vocabulary lacks most Chinese characters, so on
Chinese text its vectors carry little meaning. The BM25 side reads Chinese (character unigrams and
bigrams, traditional characters mapped to simplified), and hybrid mode fuses both rankings, so the
right answer comes first here even for a question in traditional characters. For real Chinese or
multilingual retrieval, index with a Chinese or multilingual encoder (``DualEncoder(model=...)``: bge-zh,
multilingual-e5, any local BERT or XLM-R folder) and keep the hybrid mode.
"""

from __future__ import annotations

from deepseek_rag import Document, DocumentIndex

ANSWERS = {
    "hypertension-diet": (
        "心血管科",
        "高血压患者首先要控制食盐摄入量，每天不超过六克。饮食宜清淡，多吃新鲜蔬菜和水果，"
        "少吃腌制食品。同时要戒烟限酒，保持规律作息，按时服用降压药，定期监测血压。",
    ),
    "hypertension-codonopsis": (
        "心血管科",
        "高血压病人可以适量服用党参。党参有益气养血、健脾补肺的作用，但不能代替降压药，"
        "服用前最好咨询医生，并继续监测血压变化。",
    ),
    "diabetes-symptoms": (
        "内分泌科",
        "糖尿病的典型症状是多饮、多尿、多食和体重下降，也就是常说的三多一少。"
        "出现这些症状应及时到医院检查空腹血糖和糖化血红蛋白。",
    ),
    "gastritis-diet": (
        "消化内科",
        "慢性胃炎患者要按时吃饭，避免辛辣刺激和过冷过热的食物，少喝浓茶和咖啡。"
        "胃痛反复发作时应做胃镜检查，必要时检测幽门螺杆菌。",
    ),
    "cold-fever": (
        "呼吸内科",
        "普通感冒发烧一般是病毒感染引起的，多喝水、注意休息即可，体温超过38.5度可以服用退烧药。"
        "抗生素对病毒没有作用，不要自行服用。",
    ),
    "insomnia": (
        "神经内科",
        "失眠的人睡前不要喝咖啡和浓茶，不要长时间看手机，每天固定时间上床和起床。"
        "长期失眠影响白天工作时，可以在医生指导下短期使用助眠药物。",
    ),
}

QUESTIONS = [
    "高血压平时饮食要注意什么？",
    "高血壓可以吃黨參嗎？",  # traditional characters: found through the simplified answer
    "总是口渴、尿多是不是糖尿病？",
    "感冒发烧要不要吃抗生素",
]


def build_index() -> DocumentIndex:
    documents = [Document(doc_id, text, {"title": department}) for doc_id, (department, text) in ANSWERS.items()]
    return DocumentIndex.build(documents)  # bundled model; metadata["language"] is detected as "zh"


def main() -> None:
    index = build_index()
    retriever = index.as_retriever(mode="hybrid", top_k=2)
    for question in QUESTIONS:
        print(f"Q: {question}")
        for hit in retriever.retrieve(question):
            print(f"   {hit.score:.4f}  {hit.doc_id} [{hit.metadata['title']}] {hit.text[:40]}…")


if __name__ == "__main__":
    main()
