"use strict";
// One session, rendered from its evidence: the completeness verdict, the integrity check (run
// here, in the browser), the process tree, the timeline of every record with its gaps and
// alerts inline, a replay that steps through the commands in time order, and (in the console)
// the live view of a running session. The console's session page and an evidence bundle run
// this same script; every recorded value goes in as text, never as markup.
(() => {
  const main = document.getElementById("session");
  const inBundle = main.dataset.bundle === "1";
  const COMMANDS = new Set(["exec", "shell", "sql", "k8s"]);

  const el = (tag, attrs, ...children) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.className = v; else e.setAttribute(k, String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  };

  const failed = (r) =>
    (r.kind === "exit" && ((r.exit_code !== undefined && r.exit_code !== 0) || r.signal !== undefined)) ||
    (r.kind === "sql" && r.status === "error") ||
    (r.kind === "k8s" && typeof r.status === "number" && r.status >= 400);

  const exitText = (x) => {
    if (!x) return "running";
    if (x.signal !== undefined) return `killed by ${x.signal_name || "signal " + x.signal}`;
    return `exit ${x.exit_code}`;
  };
  const ms = (d) => (d >= 1000 ? `${(d / 1000).toFixed(2)} s` : `${d.toFixed(1)} ms`);

  // What one record says, in one line, and its details.
  function describe(r) {
    switch (r.kind) {
      case "exec": return [r.text, `pid ${r.pid} · uid ${r.uid} · cwd ${r.cwd}${r.adopted ? " · found running" : ""}`];
      case "exit": return [exitText(r), `pid ${r.pid} · after ${ms(r.duration_ms || 0)}`];
      case "shell": return [r.text, `pid ${r.pid}`];
      case "sql": {
        const params = r.params ? ` · params ${JSON.stringify(r.params)}` : "";
        return [r.text, `${r["db.system"]} ${r["db.user"] ?? "?"}@${r["db.server"]}/${r["db.name"] ?? "?"}${r.tls ? " (TLS)" : ""} · ${r.status}: ${r.result}${params}`];
      }
      case "k8s": {
        const what = [r.verb, r.resource, r.namespace ? `-n ${r.namespace}` : null, r.name].filter(Boolean).join(" ");
        const status = r.status === null || r.status === undefined ? "" : ` · status ${r.status}`;
        return [r.source === "api" ? `${r.method} ${r.path}` : r.text, `${what}${status}${r.source === "api" ? "" : " (kubectl)"}`];
      }
      case "loss": return [`${r.count} ${r.lost_kind || "record"}(s) lost`, r.reason];
      case "notice": return [r.reason, r.detail];
      case "approval": {
        const by = r.approver ? ` by ${r.approver}` : "";
        const held = r.held_ms ? ` · held ${ms(r.held_ms)}` : "";
        return [`approval ${r.state}${by}: ${r.text}`, `${r.action} · rule ${r.rule}${held}${r.detail ? " · " + r.detail : ""} · request ${r.request}`];
      }
      default: return [r.kind, ""];
    }
  }

  const recordLink = (index, line) => {
    if (!inBundle) return el("a", { class: "json", href: `/record/${index}`, target: "_blank" }, "JSON");
    const pre = el("pre", { class: "raw", hidden: true }, line);
    const toggle = el("button", { class: "json", type: "button" }, "JSON");
    toggle.addEventListener("click", () => { pre.hidden = !pre.hidden; });
    return el("span", {}, toggle, pre);
  };

  function timelineRow(item, gapWhat) {
    const r = item.rec;
    const [text, detail] = describe(r);
    const classes = ["rec", r.kind];
    if (failed(r)) classes.push("bad");
    if (gapWhat) classes.push("gap");
    if (!item.own) classes.push("context");
    if (!item.raw.proof) classes.push("unproven");
    return el("tr", { id: `r-${item.raw.index}`, class: classes.join(" "), "data-index": item.raw.index, "data-kind": r.kind },
      el("td", { class: "time" }, r.time),
      el("td", { class: "kind" }, r.kind),
      el("td", { class: "what" },
        el("div", { class: "text" }, text),
        el("div", { class: "detail" }, detail),
        gapWhat ? el("div", { class: "gapwhy" }, `gap: ${gapWhat}`) : null,
        item.own ? null : el("div", { class: "detail" }, "reported for the whole host while this session ran")),
      el("td", { class: "link" }, recordLink(item.raw.index, item.raw.line)));
  }

  const alertRow = (a) => el("tr", { class: "alert", "data-index": a.index },
    el("td", { class: "time" }, a.time), el("td", { class: "kind" }, "alert"),
    el("td", { class: "what" }, el("div", { class: "text" }, `${a.severity}: ${a.rule}`),
      el("div", { class: "detail" }, [a.description, a.detail].filter(Boolean).join(" · "))),
    el("td", {}));

  function processTree(items) {
    const procs = new Map();
    for (const it of items) if (it.own && it.rec.kind === "exec") procs.set(it.rec.exec_id, { exec: it.rec, index: it.raw.index, exit: null, children: [] });
    for (const it of items) if (it.own && it.rec.kind === "exit" && procs.has(it.rec.exec_id)) procs.get(it.rec.exec_id).exit = it.rec;
    const roots = [];
    for (const p of procs.values()) {
      const parent = p.exec.parent_exec_id && procs.get(p.exec.parent_exec_id);
      (parent ? parent.children : roots).push(p);
    }
    const node = (p) => {
      // A process that exec'd again (a wrapper such as Debian's psql) ends in its next image.
      const inPlace = !p.exit && p.children.some((c) => c.exec.pid === p.exec.pid);
      const status = inPlace ? "exec'd in place" : exitText(p.exit);
      const bad = p.exit && failed(p.exit);
      return el("li", { class: "proc", "data-exec-id": p.exec.exec_id, "data-pid": p.exec.pid, "data-exit": status },
        el("a", { class: "cmd", href: `#r-${p.index}` }, p.exec.text),
        el("span", { class: bad ? "status bad" : "status" }, status),
        el("span", { class: "meta" }, `pid ${p.exec.pid} · uid ${p.exec.uid} · cwd ${p.exec.cwd}${p.exit ? " · " + ms(p.exit.duration_ms || 0) : ""}`),
        p.children.length ? el("ul", {}, p.children.map(node)) : null);
    };
    return el("ul", { class: "tree", id: "tree" }, roots.map(node));
  }

  function render(evidence, server, alerts) {
    const items = [];
    const parse = (raw, own) => { try { items.push({ raw, own, rec: JSON.parse(raw.line) }); } catch (_) { /* shown as a problem by the check */ } };
    evidence.records.forEach((r) => parse(r, true));
    (evidence.context || []).forEach((r) => parse(r, false));
    const gaps = new Map(evidence.verdict.gaps.map((g) => [g.index, g.what]));
    const byTime = items.slice().sort((a, b) => (a.rec.time < b.rec.time ? -1 : a.rec.time > b.rec.time ? 1 : a.raw.index - b.raw.index));
    const s = evidence.session;

    main.replaceChildren();
    main.append(el("section", { class: "summary" },
      el("h1", {}, `${s.identity} · session ${s.session}`),
      el("p", {}, `host ${s.host}${s.pod ? ` · pod ${s.namespace}/${s.pod}` : ""} · ${s.first_time} – ${s.last_time} · ${evidence.records.length} records`)));

    const v = evidence.verdict;
    main.append(el("section", { id: "verdict", class: v.complete ? "verdict ok" : "verdict gap", "data-verdict": v.complete ? "complete" : "incomplete" },
      el("h2", {}, v.complete ? "Complete" : `Incomplete: ${v.gaps.length} gap${v.gaps.length === 1 ? "" : "s"}`),
      v.complete ? el("p", {}, "No loss, unhooked TLS, io_uring, late probe or cgroup escape was reported in this session or on its host while it ran.")
        : el("ul", {}, v.gaps.map((g) => el("li", {}, el("a", { href: `#r-${g.index}` }, `record ${g.index}`), ` ${g.time}: ${g.what}`)))));

    const integrity = el("section", { id: "integrity", class: "integrity checking", "data-state": "checking" },
      el("h2", {}, "Integrity"), el("p", { class: "state" }, "Checking the proofs in this browser…"));
    main.append(integrity);
    if (server) {
      integrity.append(el("p", { class: "server" }, server.problems.length === 0
        ? `Checked by the collector: ${server.proven} records included in the signed checkpoint${server.pending ? `, ${server.pending} not yet covered by one` : ""}.`
        : `The collector's check FAILED: ${server.problems.map((p) => (p.index === null ? p.what : `record ${p.index}: ${p.what}`)).join("; ")}`));
    }

    main.append(el("section", { class: "procs" }, el("h2", {}, "Processes"), processTree(items)));

    const replay = el("section", { id: "replay", class: "replay" }, el("h2", {}, "Replay"));
    const now = el("div", { id: "replay-now", class: "now" }, "Step through the commands in time order.");
    const prev = el("button", { id: "replay-prev", type: "button" }, "◀ previous");
    const next = el("button", { id: "replay-next", type: "button" }, "next ▶");
    replay.append(el("div", {}, prev, " ", next), now);
    main.append(replay);

    const tbody = el("tbody", {});
    main.append(el("section", { class: "timeline" }, el("h2", {}, "Timeline"),
      el("table", { id: "timeline", class: "timeline" }, el("thead", {}, el("tr", {}, el("th", {}, "time"), el("th", {}, "kind"), el("th", {}, "what"), el("th", {}, ""))), tbody)));
    const alertsAt = new Map();
    for (const a of alerts || []) { if (!alertsAt.has(a.index)) alertsAt.set(a.index, []); alertsAt.get(a.index).push(a); }
    for (const it of byTime) {
      tbody.append(timelineRow(it, gaps.get(it.raw.index)));
      for (const a of alertsAt.get(it.raw.index) || []) tbody.append(alertRow(a));
    }

    let step = -1;
    const commands = () => Array.from(tbody.querySelectorAll("tr.rec")).filter((tr) => COMMANDS.has(tr.dataset.kind));
    const show = (delta) => {
      const list = commands();
      if (!list.length) return;
      step = Math.min(list.length - 1, Math.max(0, step + delta));
      tbody.querySelectorAll("tr.current").forEach((tr) => tr.classList.remove("current"));
      const tr = list[step];
      tr.classList.add("current");
      tr.scrollIntoView({ block: "center" });
      now.replaceChildren(el("span", { class: "pos" }, `${step + 1} / ${list.length} · `), el("span", { class: "time" }, tr.cells[0].textContent, " "),
        el("b", {}, tr.cells[1].textContent), " ", el("span", { class: "text" }, tr.querySelector(".text").textContent));
    };
    prev.addEventListener("click", () => show(-1));
    next.addEventListener("click", () => show(+1));

    RecorderVerify.check(evidence).then((c) => {
      const good = c.problems.length === 0;
      integrity.className = `integrity ${good ? "ok" : "bad"}`;
      integrity.dataset.state = good ? (c.pending ? "verified-partly" : "verified") : "failed";
      const state = integrity.querySelector(".state");
      if (good) {
        const cp = evidence.checkpoint;
        state.textContent = `Verified in this browser: ${c.proven} records are included in the checkpoint of tree size ${cp.tree_size} signed ${cp.time} by key ${evidence.public_key}.` +
          (c.pending ? ` ${c.pending} newer records are not yet covered by a signed checkpoint.` : "");
        if (inBundle) {
          integrity.append(el("p", { class: "note" }, "A bundle carries the key it was signed with: compare it with the collector's published checkpoint-key.pub."));
        }
      } else {
        state.textContent = "FAILED: this evidence does not check.";
        integrity.append(el("ul", { class: "problems" }, c.problems.map((p) => el("li", { "data-index": p.index ?? "" },
          p.index === null ? p.what : el("span", {}, el("a", { href: `#r-${p.index}` }, `record ${p.index}`), `: ${p.what}`)))));
        for (const p of c.problems) { const tr = document.getElementById(`r-${p.index}`); if (tr) tr.classList.add("tampered"); }
      }
    }).catch((err) => {
      integrity.className = "integrity bad";
      integrity.dataset.state = "failed";
      integrity.querySelector(".state").textContent = `FAILED: the check could not run (${err.message})`;
    });

    if (!inBundle && main.dataset.live === "1") follow(s, tbody, evidence);
  }

  // New records of the session as the collector stores them.
  function follow(s, tbody, evidence) {
    const status = el("p", { id: "live", class: "live" }, "live: connecting…");
    main.insertBefore(status, main.children[1]);
    const source = new EventSource(`/api/live?host=${encodeURIComponent(s.host)}&session=${encodeURIComponent(s.session)}`);
    const seen = new Set(evidence.records.map((r) => r.index));
    source.onopen = () => { status.textContent = "live: following new records"; };
    source.onerror = () => { status.textContent = "live: disconnected, retrying…"; };
    source.addEventListener("record", (ev) => {
      const raw = JSON.parse(ev.data);
      if (seen.has(raw.index)) return;
      seen.add(raw.index);
      let rec;
      try { rec = JSON.parse(raw.line); } catch (_) { return; }
      const row = timelineRow({ raw, own: true, rec }, null);
      row.classList.add("new");
      tbody.append(row);
      status.textContent = `live: ${seen.size} records (last at ${rec.time})`;
    });
    source.addEventListener("alert", (ev) => tbody.append(alertRow(JSON.parse(ev.data))));
    source.addEventListener("lagged", () => location.reload());
  }

  function fail(text) {
    main.replaceChildren(el("p", { class: "error" }, text));
  }

  if (inBundle) {
    let evidence;
    try { evidence = JSON.parse(document.getElementById("evidence").textContent); } catch (err) { fail(`The evidence cannot be read: ${err.message}`); return; }
    render(evidence, null, []);
  } else {
    const q = `host=${encodeURIComponent(main.dataset.host)}&session=${encodeURIComponent(main.dataset.session)}`;
    fetch(`/api/evidence?${q}`, { credentials: "same-origin" })
      .then(async (r) => { const body = await r.json(); if (!r.ok) throw new Error(body.error || r.statusText); return body; })
      .then((page) => render(page.evidence, page.checked, page.alerts))
      .catch((err) => fail(`The session cannot be shown: ${err.message}`));
  }
})();
