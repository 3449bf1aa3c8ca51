"""The web console and evidence bundles in a real browser: Debian's Chromium, headless, driven
through chromedriver by Selenium. Run by tests/tests/console.rs, which records real sessions
with the agent first and passes what it knows in a JSON file (argv[1]).

Each check prints one line; the first failed assertion ends the run with exit status 1.
Phases: `console` (everything on the intact store, then the live view), `tampered` (the store
changed on disk under the collector), `bundles` (evidence bundles opened from file://).
"""
import base64
import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.support.ui import WebDriverWait

CFG = json.load(open(sys.argv[1]))
BASE = CFG.get("base", "")


def say(what):
    print(f"browser: {what}", flush=True)


def browser():
    o = webdriver.ChromeOptions()
    for a in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
              "--window-size=1400,1100", "--ignore-certificate-errors",
              "--no-first-run", "--disable-extensions"]:
        o.add_argument(a)
    o.binary_location = "/usr/bin/chromium"
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)


def wait(d, what, cond, secs=20):
    try:
        return WebDriverWait(d, secs, poll_frequency=0.05).until(lambda _: cond())
    except Exception as e:
        raise AssertionError(f"timed out waiting for {what}; page: {d.current_url}\n"
                             f"{d.find_element(By.TAG_NAME, 'body').text[:3000]}") from e


def integrity_state(d):
    try:
        s = d.find_element(By.ID, "integrity").get_attribute("data-state")
    except Exception:
        return None
    return None if s == "checking" else s


def gone(element):
    """Whether `element` left the document. Chromium sometimes answers a look at a node of the
    page just replaced with "Node ... does not belong to the document" instead of a stale
    reference: the same fact."""
    try:
        return EC.staleness_of(element)(None)
    except WebDriverException as e:
        return "does not belong to the document" in str(e)


def click_and_load(d, element):
    """Clicks something that loads a new page, and waits until the new page has loaded."""
    old = d.find_element(By.TAG_NAME, "html")
    element.click()
    WebDriverWait(d, 20, poll_frequency=0.05).until(lambda _: gone(old))
    wait(d, "the page to load", lambda: d.execute_script("return document.readyState") == "complete")


def login(d, token):
    d.get(BASE + "/login")
    box = d.find_element(By.ID, "token")
    box.clear()
    box.send_keys(token)
    click_and_load(d, d.find_element(By.ID, "login"))


def rows(d):
    return d.find_elements(By.CSS_SELECTOR, "#sessions tr.session")


def row_sessions(d):
    return [r.get_attribute("data-session") for r in rows(d)]


# --- HTTP without a browser: the JSON endpoints' refusals ----------------------------------

def https(path, cert=None, token=None):
    ctx = ssl.create_default_context(cafile=CFG["ca"])
    if cert:
        ctx.load_cert_chain(cert[0], cert[1])
    req = urllib.request.Request(BASE + path)
    if token:
        req.add_header("Authorization", "Bearer " + token)

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **k):
            return None

    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx), NoRedirect)
    try:
        with opener.open(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def forge_agent_token():
    """A token in the right format, signed by the agent certificate's own key: well formed and
    genuinely signed, refused only because the certificate is not an operator's."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    cert = x509.load_pem_x509_certificate(open(CFG["agent_cert"], "rb").read())
    key = serialization.load_pem_private_key(open(CFG["agent_key"], "rb").read(), None)
    now = int(time.time())
    claims = {"sub": CFG["host"], "role": "operator", "aud": "recorder-console",
              "iat": now, "exp": now + 3600, "jti": "0" * 32}
    head = "rct1." + b64(json.dumps(claims).encode()) + "." + b64(
        cert.public_bytes(serialization.Encoding.DER))
    sig = key.sign(head.encode(), ec.ECDSA(hashes.SHA256()))
    return head + "." + b64(sig)


def endpoints():
    main = CFG["main"]
    q = f"/api/evidence?host={CFG['host']}&session={main['session']}"
    status, body = https("/api/sessions")
    assert status == 401, f"no credentials: {status} {body}"
    status, body = https(q)
    assert status == 401, f"no credentials on evidence: {status} {body}"
    status, body = https("/api/sessions", cert=(CFG["agent_cert"], CFG["agent_key"]))
    assert status == 403 and "operator" in body, f"agent certificate: {status} {body}"
    status, body = https("/api/sessions", token=forge_agent_token())
    assert status == 403 and "operator" in body, f"agent token: {status} {body}"
    status, body = https("/api/sessions", token=CFG["token"])
    assert status == 200 and json.loads(body)["total"] >= 3, f"operator token: {status} {body}"
    status, body = https("/api/sessions", cert=(CFG["alice_cert"], CFG["alice_key"]))
    assert status == 200, f"operator certificate: {status} {body}"
    # Paths outside the store.
    for path in ["/record/99999999", "/record/-1", "/record/..%2F..%2Fetc%2Fpasswd",
                 "/assets/..%2F..%2F..%2Fetc%2Fpasswd", "/assets/../../etc/passwd",
                 "/api/../../../etc/passwd", "/etc/passwd"]:
        status, body = https(path, token=CFG["token"])
        assert status == 404 and "root:" not in body, f"{path}: {status} {body[:200]}"
    status, body = https("/record/99999999", token=CFG["token"])
    assert "the log holds" in body, body
    say("JSON endpoints: 401 without credentials, 403 for an agent certificate and an agent's "
        "token, 404 for paths outside the store")


# --- phase console -------------------------------------------------------------------------

def console_phase():
    endpoints()
    main, storm, live = CFG["main"], CFG["storm"], CFG["live"]
    d = browser()
    try:
        d.get(BASE + "/")
        assert "/login" in d.current_url, f"without a token the list is not shown: {d.current_url}"
        login(d, "rct1.garbage")
        err = d.find_element(By.ID, "login-error").text
        assert "refused" in err, err
        login(d, forge_agent_token())
        err = d.find_element(By.ID, "login-error").text
        assert "operator" in err, err
        assert not d.find_elements(By.ID, "sessions")
        say(f"login refused without a token, with garbage and with an agent's token ({err})")

        login(d, CFG["token"])
        wait(d, "the sessions list", lambda: d.find_elements(By.ID, "sessions"))
        everyone = set(row_sessions(d))
        assert {main["session"], storm["session"], live["session"]} <= everyone, everyone
        d.save_screenshot(os.path.join(CFG["shots"], "sessions.png"))
        say(f"logged in with an operator token: {len(everyone)} sessions listed")

        # Filter by identity and time.
        d.get(BASE + "/?identity=claude")
        got = set(row_sessions(d))
        assert got == {main["session"], live["session"]}, got
        for r in rows(d):
            assert r.find_elements(By.TAG_NAME, "td")[0].text == "claude"
        d.get(BASE + "/?identity=claude&from=2099-01-01T00:00")
        assert row_sessions(d) == [], row_sessions(d)
        d.get(BASE + f"/?identity=claude&from={CFG['before']}&to={CFG['after']}")
        assert set(row_sessions(d)) == {main["session"], live["session"]}
        d.get(BASE + "/?gaps=1")
        assert storm["session"] in row_sessions(d) and main["session"] not in row_sessions(d)
        d.get(BASE + "/?failed=1&identity=claude")
        assert row_sessions(d) == [main["session"]], row_sessions(d)
        say("filters: identity, time range, has gaps, has errors")

        # Search for a statement and open its session.
        d.get(BASE + "/")
        box = d.find_element(By.NAME, "q")
        box.send_keys(main["error_sql"])
        click_and_load(d, d.find_element(By.ID, "apply"))
        assert "q=" in d.current_url, d.current_url
        assert row_sessions(d) == [main["session"]], row_sessions(d)
        click_and_load(d, rows(d)[0].find_element(By.CSS_SELECTOR, "a.open"))
        wait(d, "the session's integrity check", lambda: integrity_state(d))
        state = integrity_state(d)
        assert state == "verified", d.find_element(By.ID, "integrity").text
        say(f"search for {main['error_sql']!r} found its session; integrity in the browser: {state}")

        # The process tree: sh -c 'exit 3' is a child of the session's bash, and exited 3.
        procs = d.find_elements(By.CSS_SELECTOR, "#tree li.proc")
        sh = [p for p in procs if p.find_element(By.CSS_SELECTOR, ".cmd").text == main["sh_text"]]
        assert len(sh) == 1, [p.find_element(By.CSS_SELECTOR, ".cmd").text for p in procs]
        assert sh[0].get_attribute("data-exit") == "exit 3", sh[0].get_attribute("data-exit")
        parent = sh[0].find_element(By.XPATH, "./ancestor::li[1]")
        assert parent.find_element(By.CSS_SELECTOR, ".cmd").text == main["bash_text"], \
            parent.find_element(By.CSS_SELECTOR, ".cmd").text
        root = d.find_elements(By.CSS_SELECTOR, "#tree > li.proc")
        assert [r.find_element(By.CSS_SELECTOR, ".cmd").text for r in root] == [main["bash_text"]]
        assert root[0].get_attribute("data-exit") == "exit 0", root[0].get_attribute("data-exit")
        say(f"process tree: {main['sh_text']!r} under {main['bash_text']!r}, exit 3")

        # The SQL error shows its status; the alert shows where it fired.
        sqls = d.find_elements(By.CSS_SELECTOR, "#timeline tr.rec.sql")
        bad = [r for r in sqls if r.find_element(By.CSS_SELECTOR, ".text").text == main["error_sql"]]
        assert len(bad) == 1, [r.text for r in sqls]
        assert "bad" in bad[0].get_attribute("class").split()
        assert "error" in bad[0].find_element(By.CSS_SELECTOR, ".detail").text
        ok = [r for r in sqls if r.find_element(By.CSS_SELECTOR, ".text").text == main["ok_sql"]]
        assert len(ok) == 1 and "bad" not in ok[0].get_attribute("class").split()
        alerts = d.find_elements(By.CSS_SELECTOR, "#timeline tr.alert")
        assert any(main["alert_rule"] in a.text for a in alerts), [a.text for a in alerts]
        index = ok[0].get_attribute("data-index")
        following = ok[0].find_element(By.XPATH, "following-sibling::tr[1]")
        assert "alert" in following.get_attribute("class").split(), following.text
        say("SQL error shown with its status; the alert is inline after the statement that fired it")

        d.execute_script("window.scrollTo(0, 0)")
        d.save_screenshot(os.path.join(CFG["shots"], "session.png"))

        # Replay steps through the commands in time order.
        d.find_element(By.ID, "replay-next").click()
        first = d.find_element(By.CSS_SELECTOR, "#timeline tr.current")
        d.find_element(By.ID, "replay-next").click()
        second = d.find_element(By.CSS_SELECTOR, "#timeline tr.current")
        t1 = first.find_element(By.CSS_SELECTOR, "td.time").text
        t2 = second.find_element(By.CSS_SELECTOR, "td.time").text
        assert t1 <= t2 and first.get_attribute("data-index") != second.get_attribute("data-index")
        say("replay steps through the commands in time order")

        # A record's JSON.
        link = ok[0].find_element(By.CSS_SELECTOR, "a.json").get_attribute("href")
        d.get(link)
        record = json.loads(d.find_element(By.TAG_NAME, "body").text)
        assert record["index"] == int(index) and record["record"]["text"] == main["ok_sql"], record
        say(f"record {index}'s JSON: {record['record']['kind']} {record['record']['text']!r}")

        # The storm's session: a ring buffer loss, a verdict other than complete.
        d.get(BASE + f"/session?host={CFG['host']}&session={storm['session']}")
        wait(d, "the storm session", lambda: integrity_state(d))
        verdict = d.find_element(By.ID, "verdict")
        assert verdict.get_attribute("data-verdict") == "incomplete", verdict.text
        assert "ring buffer loss" in verdict.text, verdict.text
        gaps = d.find_elements(By.CSS_SELECTOR, "#timeline tr.gap")
        assert gaps and all("loss" == g.get_attribute("data-kind") for g in gaps), [g.text for g in gaps]
        say(f"storm session: {verdict.text.splitlines()[0]}; {len(gaps)} gap rows in the timeline")

        # Live: a command run after the page opened.
        d.get(BASE + f"/session?host={CFG['host']}&session={live['session']}")
        wait(d, "the live session", lambda: integrity_state(d))
        wait(d, "the live stream", lambda: "following" in d.find_element(By.ID, "live").text)
        before = len(d.find_elements(By.CSS_SELECTOR, "#timeline tr.rec"))
        started = time.monotonic()
        with open(live["fifo"], "w") as f:
            f.write("go\n")
        texts = lambda: [r.text for r in d.find_elements(By.CSS_SELECTOR, "#timeline tr.rec.new .text")]
        wait(d, f"{live['marker_text']!r} in the live view",
             lambda: live["marker_text"] in texts(), secs=10)
        took = time.monotonic() - started
        assert len(d.find_elements(By.CSS_SELECTOR, "#timeline tr.rec")) > before
        say(f"live view: {live['marker_text']!r} appeared {took:.2f} s after it ran")
        print(json.dumps({"live_seconds": took}), flush=True)
    finally:
        d.quit()


def tampered_phase():
    d = browser()
    try:
        login(d, CFG["token"])
        main = CFG["main"]
        d.get(BASE + f"/session?host={CFG['host']}&session={main['session']}")
        wait(d, "the check of the tampered session", lambda: integrity_state(d))
        integrity = d.find_element(By.ID, "integrity")
        assert integrity_state(d) == "failed", integrity.text
        named = [li.get_attribute("data-index") for li in
                 integrity.find_elements(By.CSS_SELECTOR, "ul.problems li")]
        assert str(CFG["tampered_index"]) in named, (named, integrity.text)
        row = d.find_element(By.ID, f"r-{CFG['tampered_index']}")
        assert "tampered" in row.get_attribute("class").split()
        assert "FAILED" in integrity.find_element(By.CSS_SELECTOR, ".server").text
        say(f"tampered store: the browser and the collector both fail record {CFG['tampered_index']}")
    finally:
        d.quit()


def bundles_phase():
    d = browser()
    try:
        for path, want in [(CFG["bundle_good"], "verified"), (CFG["bundle_bad"], "failed")]:
            d.get("file://" + path)
            wait(d, f"the check of {path}", lambda: integrity_state(d))
            state = integrity_state(d)
            text = d.find_element(By.ID, "integrity").text
            assert state == want, f"{path}: {state}: {text}"
            if want == "failed":
                named = [li.get_attribute("data-index") for li in
                         d.find_elements(By.CSS_SELECTOR, "#integrity ul.problems li")]
                assert str(CFG["bundle_bad_index"]) in named, (named, text)
            else:
                assert d.find_elements(By.CSS_SELECTOR, "#tree li.proc"), "the bundle shows the session"
            say(f"bundle {os.path.basename(path)} from file://: {state}")
    finally:
        d.quit()


def approve_phase():
    """An operator approves one held action from the Approvals page (tests/tests/approvals.rs)."""
    d = browser()
    try:
        login(d, CFG["token"])
        d.get(BASE + "/approvals")
        row = wait(d, f"a pending request for {CFG['needle']!r}", lambda: next(
            (r for r in d.find_elements(By.CSS_SELECTOR, "#approvals tr.approval")
             if CFG["needle"] in r.find_element(By.CSS_SELECTOR, "td.text").text), None))
        request = row.get_attribute("data-id")
        say(f"approvals page lists {request} for {CFG['needle']}")
        row.find_element(By.NAME, "reason").send_keys(CFG["reason"])
        click_and_load(d, row.find_element(By.CSS_SELECTOR, "button.approve"))
        done = wait(d, "the decision", lambda: d.find_elements(By.ID, "decided")
                    or d.find_elements(By.ID, "decide-error"))[0]
        assert done.get_attribute("id") == "decided", done.text
        assert "approved" in done.text and request in done.text and "alice" in done.text, done.text
        assert not [r for r in d.find_elements(By.CSS_SELECTOR, "#approvals tr.approval")
                    if r.get_attribute("data-id") == request], "a decided request leaves the list"
        say(f"approved in the browser: {done.text}")
        print(json.dumps({"request": request}), flush=True)
    finally:
        d.quit()


{"console": console_phase, "tampered": tampered_phase, "bundles": bundles_phase,
 "approve": approve_phase}[CFG["phase"]]()
