"""What a careful user tried on the first release, each now a test: concurrent commands, stale readers, a
read-only mount, a directory written by the first release."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deepseek_rag import Document, DocumentIndex, DualEncoder, ReadOnlyIndexError

FIXTURE = Path(__file__).parent / "fixtures" / "format1" / "index"


def cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deepseek_rag.cli", *args], capture_output=True, text=True, timeout=timeout)


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "deepseek_rag.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def write_files(folder: Path, prefix: str, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"{prefix}-{i}.txt").write_text(f"Clause {i} of {prefix}: the tenant repairs the roof. " * 4)
    return folder


@pytest.fixture
def built(tiny_model_dir, tmp_path):
    write_files(tmp_path / "base", "base", 3)
    result = cli("index", str(tmp_path / "base"), "--out", str(tmp_path / "idx"), "--model", str(tiny_model_dir))
    assert result.returncode == 0, result.stderr
    return tmp_path / "idx"


def consistent(index_dir: Path, encoder: DualEncoder) -> DocumentIndex:
    """The index loads, and every stored chunk has its vector and is found by dense search."""
    index = DocumentIndex.load(index_dir, encoder, writable=False)
    chunks = index.store.counts()[1]
    assert len(index.vectors) == chunks
    for doc_id in index.document_ids():
        hits = index.as_retriever(top_k=50, mode="dense").retrieve("roof clause tenant", filters={"doc_id": doc_id})
        assert {h.chunk_id for h in hits} == {c.id for c in index.store.chunks_of(doc_id)}, doc_id
    return index


def test_two_adds_at_once_both_land_or_one_is_told_who_writes(built, tiny_model_dir, tmp_path):
    encoder = DualEncoder(model=str(tiny_model_dir))
    a, b = write_files(tmp_path / "a", "a", 3), write_files(tmp_path / "b", "b", 3)
    first, second = start("add", str(built), str(a), "--wait", "120"), start("add", str(built), str(b), "--wait", "120")
    for proc in (first, second):
        proc.communicate(timeout=240)
        assert proc.returncode == 0
    index = consistent(built, encoder)
    assert len(index.document_ids()) == 9  # both batches are visible to dense search (first release: 6 of 9)
    first, second = start("add", str(built), str(a), "--upsert"), start("add", str(built), str(b), "--upsert")
    outputs = [p.communicate(timeout=240) for p in (first, second)]
    codes = [first.returncode, second.returncode]
    assert 0 in codes
    for code, (_, err) in zip(codes, outputs):
        assert code == 0 or ("is being written by process" in err and "Traceback" not in err), err
    consistent(built, encoder)


def test_a_delete_right_after_an_add_is_never_undone(built, tiny_model_dir, tmp_path):
    import time

    encoder = DualEncoder(model=str(tiny_model_dir))
    late = write_files(tmp_path / "late", "late", 1)
    adding = start("add", str(built), str(late), "--wait", "120")
    time.sleep(0.5)
    deleting = cli("delete", str(built), "--doc-id", "base-0.txt", "--wait", "120")
    adding.communicate(timeout=240)
    assert adding.returncode == 0 and deleting.returncode == 0, deleting.stderr
    index = consistent(built, encoder)
    assert "base-0.txt" not in index.document_ids() and "late-0.txt" in index.document_ids()


def test_add_while_a_rebuild_overwrites_the_directory(built, tiny_model_dir, tmp_path):
    encoder = DualEncoder(model=str(tiny_model_dir))
    many = write_files(tmp_path / "many", "many", 60)
    rebuild = start("index", str(tmp_path / "base"), "--out", str(built), "--overwrite", "--model", str(tiny_model_dir),
                    "--wait", "120")
    adding = cli("add", str(built), str(many), "--wait", "120")
    rebuild.communicate(timeout=240)
    assert rebuild.returncode == 0 and adding.returncode == 0, adding.stderr
    index = consistent(built, encoder)  # first release: "vectors.faiss does not match chunks.sqlite"
    assert {"base-0.txt", "base-1.txt", "base-2.txt"} <= set(index.document_ids())
    assert cli("info", str(built)).returncode == 0


def test_a_long_lived_reader_sees_one_version_until_it_refreshes(built, tiny_model_dir, tmp_path):
    encoder = DualEncoder(model=str(tiny_model_dir))
    reader = DocumentIndex.load(built, encoder, writable=False)
    old = reader.get_document("base-1.txt").text
    (tmp_path / "upd").mkdir()
    (tmp_path / "upd" / "base-1.txt").write_text("Entirely new text about parking spaces and lotteries.")
    assert cli("add", str(built), str(tmp_path / "upd"), "--upsert").returncode == 0
    hits = reader.as_retriever(top_k=20, mode="dense").retrieve("parking", filters={"doc_id": "base-1.txt"})
    sparse = reader.as_retriever(top_k=20, mode="sparse").retrieve("roof tenant", filters={"doc_id": "base-1.txt"})
    assert reader.get_document("base-1.txt").text == old  # every side still the old version: dense, BM25, the store
    assert hits and all(h.text in old for h in hits) and sparse and all(h.text in old for h in sparse)
    assert reader.refresh()
    new = reader.get_document("base-1.txt").text
    assert new.startswith("Entirely new")
    assert all(h.text in new for h in reader.as_retriever(top_k=20, mode="dense").retrieve("parking", filters={"doc_id": "base-1.txt"}))
    assert reader.as_retriever(top_k=5, mode="sparse").retrieve("lotteries")[0].doc_id == "base-1.txt"


def test_an_unsaved_python_writer_makes_a_cli_add_say_so(built, tiny_model_dir, tmp_path):
    holder = DocumentIndex.load(built, DualEncoder(model=str(tiny_model_dir)))
    holder.delete_documents(["base-2.txt"])
    result = cli("add", str(built), str(write_files(tmp_path / "x", "x", 1)))
    assert result.returncode == 1 and "Traceback" not in result.stderr and "database is locked" not in result.stderr
    assert "is being written by" in result.stderr and "changes not yet saved" in result.stderr
    holder.close()


def read_only_copy(source: Path, target: Path) -> list[str]:
    """A command prefix that runs with ``target`` as a read-only view of ``source``."""
    shutil.copytree(source, target)
    if os.geteuid() != 0:
        for path in [target, *target.rglob("*")]:
            path.chmod(path.stat().st_mode & ~0o222)
        return []
    # root ignores permissions: run in a private mount namespace with a read-only bind mount
    return ["unshare", "-m", "sh", "-c", f'mount --bind "{target}" "{target}" && mount -o remount,bind,ro "{target}" && exec "$@"', "sh"]


def test_an_index_on_a_read_only_mount_answers_queries_and_refuses_writes(built, tmp_path):
    prefix = read_only_copy(built, tmp_path / "ro")
    run = lambda *args: subprocess.run([*prefix, sys.executable, "-m", "deepseek_rag.cli", *args],  # noqa: E731
                                       capture_output=True, text=True, timeout=240)
    query = run("query", str(tmp_path / "ro"), "who repairs the roof?", "--json")
    assert query.returncode == 0, query.stderr
    assert json.loads(query.stdout)["hits"]
    info = run("info", str(tmp_path / "ro"))
    assert info.returncode == 0 and json.loads(info.stdout)["documents"] == 3
    (tmp_path / "new.txt").write_text("A clause that cannot be added.")
    add = run("add", str(tmp_path / "ro"), str(tmp_path / "new.txt"))
    assert add.returncode == 1 and "read-only" in add.stderr and "Traceback" not in add.stderr


def test_a_directory_written_by_the_first_release_opens_and_upgrades(tiny_model_dir, tmp_path):
    encoder = DualEncoder(model=str(tiny_model_dir))
    listing = {p.name: p.stat().st_mtime_ns for p in FIXTURE.iterdir()}
    old = DocumentIndex.load(FIXTURE, encoder, writable=False)
    assert old.document_ids() == ["lease.txt", "nda.txt", "clinic.txt"] and old.store.counts() == (3, 8)
    hits = old.as_retriever(top_k=3).retrieve("who repairs the roof?")
    assert hits[0].doc_id == "lease.txt" and "roof" in hits[0].text
    assert old.get_document("nda.txt").metadata["party"] == "globex"
    assert {p.name: p.stat().st_mtime_ns for p in FIXTURE.iterdir()} == listing  # reading wrote nothing
    with pytest.raises(ReadOnlyIndexError):
        old.delete_documents(["nda.txt"])
    copy = tmp_path / "upgraded"
    shutil.copytree(FIXTURE, copy)
    index = DocumentIndex.load(copy, encoder)
    index.add_documents([Document("extra.txt", "A new clause on audit rights.")])
    index.save()
    upgraded = DocumentIndex.load(copy, encoder)
    assert upgraded.version == 1 and upgraded.document_ids() == ["lease.txt", "nda.txt", "clinic.txt", "extra.txt"]
    assert not (copy / "chunks.sqlite").exists() and not (copy / "vectors.faiss").exists()
    assert json.loads((copy / "manifest.json").read_text())["format_version"] == 2
    assert upgraded.as_retriever(top_k=1).retrieve("who repairs the roof?")[0].doc_id == "lease.txt"
