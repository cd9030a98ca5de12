"""The demo finds real licence texts in a site-packages folder."""

from __future__ import annotations

from deepseek_rag.cli.demo import find_licence_documents


def test_finds_distinct_licence_texts(tmp_path):
    apache = "Apache License Version 2.0. " * 40
    for dist, name, text in [("a-1.0", "LICENSE", apache), ("b-2.0", "LICENSE.txt", apache),
                             ("c-1.0", "COPYING", "GNU GPL text. " * 60), ("d-1.0", "LICENSE", "tiny")]:
        folder = tmp_path / f"{dist}.dist-info" / "licenses"
        folder.mkdir(parents=True)
        (folder / name).write_text(text)
    (tmp_path / "e-1.0.dist-info").mkdir()
    (tmp_path / "e-1.0.dist-info" / "METADATA").write_text("Name: e\n" * 100)
    docs = find_licence_documents(tmp_path)
    assert [d.id for d in docs] == ["a-1.0/licenses/LICENSE", "c-1.0/licenses/COPYING"]  # duplicates and stubs dropped
    assert docs[0].metadata["title"].startswith("LICENSE of a-1.0")
