"use strict";
// Checks a session's evidence in the browser, with nothing but the evidence and WebCrypto
// (SHA-256, Ed25519): the checkpoint's signature under the collector's public key, each
// record's leaf hash recomputed from its stored parts (RFC 6962: SHA-256 of 0x00 and the
// entry), its inclusion proof up to the signed root, and the hash chain between consecutive
// records of a stream. The same checks as `recorder verify --bundle` (recorder-session, Rust).
const RecorderVerify = (() => {
  const FORMAT = "recorder-evidence/1";
  const ENTRY_VERSION = 1;
  const enc = new TextEncoder();

  const fromHex = (h) => {
    if (typeof h !== "string" || h.length % 2 !== 0 || /[^0-9a-f]/i.test(h)) return null;
    const out = new Uint8Array(h.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = parseInt(h.substr(2 * i, 2), 16);
    return out;
  };
  const toHex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  const concat = (...parts) => {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) { out.set(p, at); at += p.length; }
    return out;
  };
  const le = (bytes, write) => { const b = new Uint8Array(bytes); write(new DataView(b.buffer)); return b; };
  const u64 = (n) => le(8, (v) => v.setBigUint64(0, BigInt(n), true));
  const u32 = (n) => le(4, (v) => v.setUint32(0, n, true));
  const u16 = (n) => le(2, (v) => v.setUint16(0, n, true));
  const same = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
  const sha256 = async (bytes) => new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));

  // The entry the log hashed: version, index, host, stream (boot), sequence, chain link, line.
  async function leafHash(r) {
    const prev = fromHex(r.prev);
    if (!prev || prev.length !== 32) throw new Error("its chain link (prev) is not a 32-byte hex hash");
    const host = enc.encode(r.host), boot = enc.encode(r.boot), line = enc.encode(r.line);
    const entry = concat([ENTRY_VERSION], u64(r.index), u16(host.length), host, u16(boot.length),
      boot, u64(r.sequence), prev, u32(line.length), line);
    return sha256(concat([0], entry));
  }
  const nodeHash = (l, r) => sha256(concat([1], l, r));

  // RFC 9162 section 2.1.3.2.
  async function verifyInclusion(leaf, index, size, path, root) {
    let fn = BigInt(index), sn = BigInt(size) - 1n;
    if (fn > sn) return false;
    let r = leaf;
    for (const p of path) {
      if (sn === 0n) return false;
      if ((fn & 1n) === 1n || fn === sn) {
        r = await nodeHash(p, r);
        while ((fn & 1n) === 0n && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
      } else {
        r = await nodeHash(r, p);
      }
      fn >>= 1n; sn >>= 1n;
    }
    return sn === 0n && same(r, root);
  }

  async function verifyCheckpoint(cp, keyHex) {
    const key = fromHex(keyHex), sig = fromHex(cp.signature), root = fromHex(cp.root);
    if (!key || key.length !== 32 || !sig || !root || root.length !== 32) return false;
    const text = `recorder checkpoint v1\ntree_size ${cp.tree_size}\nroot ${toHex(root)}\ntime ${cp.time}\n`;
    const k = await crypto.subtle.importKey("raw", key, { name: "Ed25519" }, false, ["verify"]);
    return crypto.subtle.verify({ name: "Ed25519" }, k, sig, enc.encode(text));
  }

  // { ok, proven, pending, problems: [{ index, what }] }; ok needs every record proven.
  async function check(e) {
    const problems = [];
    const add = (index, what) => problems.push({ index, what });
    if (e.format !== FORMAT) add(null, `format ${JSON.stringify(e.format)} is not ${FORMAT}`);
    let signed = null;
    if (!e.checkpoint) {
      add(null, "no signed checkpoint: nothing can be proven");
    } else {
      let good;
      try { good = await verifyCheckpoint(e.checkpoint, e.public_key); } catch (err) {
        add(null, `this browser cannot check an Ed25519 signature (${err.message})`);
        good = null;
      }
      if (good === false) {
        add(null, `the checkpoint of tree size ${e.checkpoint.tree_size} is not signed by the public key ${e.public_key}`);
      } else if (good) {
        signed = { size: e.checkpoint.tree_size, root: fromHex(e.checkpoint.root) };
      }
    }
    let proven = 0, pending = 0, prevIndex = null;
    const last = new Map();
    const all = e.records.map((r) => [r, true]).concat((e.context || []).map((r) => [r, false]));
    for (const [r, own] of all) {
      let rec;
      try { rec = JSON.parse(r.line); } catch (err) { add(r.index, `its line is not a record: ${err.message}`); continue; }
      if (own) {
        if (prevIndex !== null && prevIndex >= r.index) add(r.index, "records are not in log order");
        prevIndex = r.index;
        if (rec.session !== e.session.session || rec.host !== e.session.host) {
          add(r.index, `belongs to session ${JSON.stringify(rec.session)} on ${JSON.stringify(rec.host)}, not this one`);
        }
      }
      if (rec.host !== r.host) add(r.index, `its line names host ${JSON.stringify(rec.host)}, its entry ${JSON.stringify(r.host)}`);
      let leaf;
      try { leaf = await leafHash(r); } catch (err) { add(r.index, err.message); continue; }
      const stream = `${r.host}\u0000${r.boot}`;
      const before = last.get(stream);
      if (before && before.sequence + 1 === r.sequence && !same(before.leaf, fromHex(r.prev))) {
        add(r.index, "its chain link does not match the stream's previous record");
      }
      last.set(stream, { sequence: r.sequence, leaf });
      if (!r.proof) { pending++; continue; }
      if (!signed) continue;
      const path = r.proof.map(fromHex);
      if (path.some((p) => !p || p.length !== 32)) { add(r.index, "its proof holds a malformed hash"); continue; }
      if (await verifyInclusion(leaf, r.index, signed.size, path, signed.root)) {
        proven++;
      } else {
        add(r.index, `not included in the signed checkpoint of tree size ${signed.size}: the record differs from the one that was signed (leaf ${toHex(leaf)})`);
      }
    }
    return { ok: problems.length === 0 && pending === 0, proven, pending, problems };
  }

  return { check, leafHash, verifyInclusion, verifyCheckpoint };
})();
