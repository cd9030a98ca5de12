// The deepseek-rag inspector: retrieve, see each passage highlighted in its source, ask with streamed answers.
//
// Talks only to this server's public API. Every text that comes from the index (documents, passages, answers,
// ids, metadata) is inserted as a text node (append(string) / textContent), never parsed as HTML.
// Offsets from the server count Unicode code points, so text is sliced by code points, not UTF-16 units.
"use strict";

(() => {
  const KEY_STORAGE = "deepseek-rag-key";
  const CONTEXT_CHARS = 300;
  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------------------------------------- HTTP
  function headers(json) {
    const result = {};
    if (json) result["Content-Type"] = "application/json";
    const key = sessionStorage.getItem(KEY_STORAGE);
    if (key) result["Authorization"] = "Bearer " + key;
    return result;
  }

  async function describe(response) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const detail = (await response.json()).detail;
      message += ": " + (detail && detail.message ? detail.message : JSON.stringify(detail));
    } catch (ignored) { /* not JSON: the status says enough */ }
    return message;
  }

  async function request(path, body) {
    const init = body === undefined
      ? { headers: headers(false) }
      : { method: "POST", headers: headers(true), body: JSON.stringify(body) };
    const response = await fetch(path, init);
    if (!response.ok) throw new Error(await describe(response));
    return response;
  }

  const getJSON = async (path) => (await request(path)).json();
  const postJSON = async (path, body) => (await request(path, body)).json();
  const docPath = (docId) => docId.split("/").map(encodeURIComponent).join("/");

  // ---------------------------------------------------------------------------------------------- DOM
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    Object.assign(node, props || {});
    node.append(...children.filter((c) => c !== null && c !== undefined));  // strings become text nodes
    return node;
  }

  function showError(error) {
    $("error").textContent = error ? String(error.message || error) : "";
  }

  function goTo(id) {
    const target = $(id);
    if (!target) return;
    target.scrollIntoView({ block: "center" });
    target.focus({ preventScroll: true });
    target.classList.remove("flash");
    void target.offsetWidth;  // restart the animation
    target.classList.add("flash");
  }

  // The passage [start, end) marked inside its neighbour window (context from GET /v1/context).
  function passageText(passage, context) {
    const paragraph = el("p", { className: "context" });
    if (!context) {
      paragraph.append(el("mark", {}, passage.text));
      return paragraph;
    }
    const chars = Array.from(context.text);
    const from = passage.start - context.window_start;
    const to = passage.end - context.window_start;
    if (context.window_start > 0) paragraph.append("…");
    paragraph.append(chars.slice(0, from).join(""), el("mark", {}, chars.slice(from, to).join("")),
                     chars.slice(to).join(""));
    if (context.window_end - passage.end >= CONTEXT_CHARS) paragraph.append("…");
    return paragraph;
  }

  async function contextOf(passage) {
    const query = `start=${passage.start}&end=${passage.end}&chars=${CONTEXT_CHARS}`;
    try {
      return await getJSON(`/v1/context/${docPath(passage.doc_id)}?${query}`);
    } catch (error) {
      return null;  // the document changed since retrieval: show the passage alone
    }
  }

  function passageCard(passage, rank, idPrefix, context) {
    const facts = [
      el("span", { className: "rank" }, String(rank)),
      el("button", { type: "button", className: "doc-link", title: "Open the document",
                     onclick: () => openDocument(passage.doc_id, passage.start, passage.end) }, passage.doc_id),
    ];
    if (passage.section) facts.push(el("span", { className: "section" }, "§ " + passage.section));
    facts.push(el("span", { className: "range" }, `characters ${passage.start}–${passage.end}`),
               el("span", { className: "score" }, `score ${Number(passage.score).toFixed(4)}`));
    if (passage.chunk_id !== undefined) facts.push(el("span", { className: "subtle" }, `chunk ${passage.chunk_id}`));
    const card = el("li", { className: "hit", id: `${idPrefix}-${rank}`, tabIndex: -1 },
                    el("div", { className: "hit-head" }, ...facts), passageText(passage, context));
    card.dataset.docId = passage.doc_id;
    return card;
  }

  async function renderPassages(list, passages, idPrefix) {
    const contexts = await Promise.all(passages.map(contextOf));
    list.replaceChildren(...passages.map((p, i) => passageCard(p, i + 1, idPrefix, contexts[i])));
  }

  // ---------------------------------------------------------------------------------------------- retrieve
  async function search(event) {
    event.preventDefault();
    showError(null);
    const body = { query: $("query").value, top_k: Number($("top-k").value) || 5, level: $("level").value };
    if ($("mode").value) body.mode = $("mode").value;
    $("search-status").textContent = "searching…";
    try {
      const result = await postJSON("/v1/retrieve", body);
      await renderPassages($("results"), result.hits, "hit");
      $("search-status").textContent =
        `${result.hits.length} hits · index_version ${result.index_version} · arm ${result.arm}`;
    } catch (error) {
      $("search-status").textContent = "";
      showError(error);
    }
  }

  // ---------------------------------------------------------------------------------------------- document
  async function openDocument(docId, start, end) {
    showError(null);
    try {
      const doc = await getJSON(`/v1/documents/${docPath(docId)}`);
      const chars = Array.from(doc.text);
      const mark = el("mark", { id: "document-mark", tabIndex: -1 }, chars.slice(start, end).join(""));
      $("document-text").replaceChildren(chars.slice(0, start).join(""), mark, chars.slice(end).join(""));
      $("document-title").textContent = "Document " + doc.id;
      $("document-meta").textContent =
        `characters ${start}–${end} of ${chars.length} · index_version ${doc.index_version} · metadata ${JSON.stringify(doc.metadata)}`;
      $("document-view").hidden = false;
      $("document-title").focus();
      mark.scrollIntoView({ block: "center" });
    } catch (error) {
      showError(error);
    }
  }

  // ---------------------------------------------------------------------------------------------- ask
  // Citations: [doc_id:start-end] (extractive answers) or [n] (LLM answers told to number their sources).
  const CITATION = /\[([^\]]+):(\d+)-(\d+)\]|\[(\d+)\]/g;

  function sourceNumber(match, sources) {
    if (match[4] !== undefined) {
      const n = Number(match[4]);
      return n >= 1 && n <= sources.length ? n : 0;
    }
    const [docId, start, end] = [match[1], Number(match[2]), Number(match[3])];
    const found = sources.findIndex((s) => s.doc_id === docId && s.start < end && start < s.end);
    return found + 1;
  }

  function linkCitations(container, text, sources) {
    const parts = [];
    let last = 0;
    for (const match of text.matchAll(CITATION)) {
      parts.push(text.slice(last, match.index));
      const n = sourceNumber(match, sources);
      if (n) {
        parts.push(el("a", { href: `#source-${n}`, className: "cite", title: `source ${n}`,
                             onclick: (event) => { event.preventDefault(); goTo(`source-${n}`); } }, match[0]));
      } else {
        parts.push(match[0]);
      }
      last = match.index + match[0].length;
    }
    parts.push(text.slice(last));
    container.replaceChildren(...parts);
  }

  async function* serverSentEvents(response) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let event = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) event = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
        }
        if (data.length) yield { event, data: JSON.parse(data.join("\n")) };
      }
    }
  }

  async function ask(event) {
    event.preventDefault();
    showError(null);
    const answer = $("answer");
    answer.replaceChildren();
    $("sources").replaceChildren();
    $("answer-meta").textContent = "";
    $("ask-status").textContent = "asking…";
    let text = "";
    try {
      const body = { question: $("question").value, top_k: Number($("ask-top-k").value) || 5, stream: true };
      const response = await request("/v1/ask", body);
      for await (const { event: kind, data } of serverSentEvents(response)) {
        if (kind === "token") {
          text += data.text;
          answer.append(data.text);
          $("ask-status").textContent = "streaming…";
        } else if (kind === "sources") {
          $("answer-meta").textContent =
            `arm ${data.arm} · index_version ${data.index_version} · ${data.mode} · request ${data.request_id}`;
          await renderPassages($("sources"), data.sources, "source");
          linkCitations(answer, text, data.sources);
        } else if (kind === "done") {
          $("ask-status").textContent = "done";
        } else if (kind === "error") {
          throw new Error(data.message || JSON.stringify(data));
        }
      }
    } catch (error) {
      $("ask-status").textContent = "";
      showError(error);
    }
  }

  // ---------------------------------------------------------------------------------------------- index, key
  async function showIndex() {
    try {
      const info = await getJSON("/v1/index");
      $("index-info").textContent =
        `index_version ${info.version} · ${info.documents} documents · ${info.chunks} chunks · ${info.index_spec}`;
    } catch (error) {
      $("index-info").textContent = "index: " + error.message;
    }
  }

  function useKey(event) {
    event.preventDefault();
    const key = $("key").value.trim();
    if (key) sessionStorage.setItem(KEY_STORAGE, key);
    else sessionStorage.removeItem(KEY_STORAGE);
    showIndex();
  }

  function closeDocument() {
    $("document-view").hidden = true;
    $("document-text").replaceChildren();
    $("query").focus();
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("key").value = sessionStorage.getItem(KEY_STORAGE) || "";
    $("key-form").addEventListener("submit", useKey);
    $("search-form").addEventListener("submit", search);
    $("ask-form").addEventListener("submit", ask);
    $("document-close").addEventListener("click", closeDocument);
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && !$("document-view").hidden) closeDocument();
    });
    showIndex();
    $("query").focus();
  });
})();
