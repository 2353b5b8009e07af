#!/usr/bin/python3
"""Drive headless Chromium through the portal over the DevTools protocol.

Opens https://127.0.0.1:PORT/, takes a screenshot of the sign-in page, fills
in the form and submits it the way a user would (the page itself has no
JavaScript), waits for the apps page, checks its text and takes a second
screenshot. Exits 0 when every check passed, 1 otherwise (the reason on
stderr). Uses Debian's chromium and python3-websocket only.
"""
import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import websocket


class Browser:
    def __init__(self, width, height):
        self.dir = tempfile.mkdtemp(prefix="nestor-chromium-")
        self.proc = subprocess.Popen(
            ["chromium", "--headless=new", "--no-sandbox", "--disable-gpu",
             "--ignore-certificate-errors", "--no-first-run", "--disable-extensions",
             "--remote-debugging-port=0", "--remote-allow-origins=*",
             "--user-data-dir=" + self.dir, "--window-size=%d,%d" % (width, height),
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = os.path.join(self.dir, "DevToolsActivePort")
        deadline = time.time() + 30
        while not os.path.exists(port_file) or os.path.getsize(port_file) == 0:
            if time.time() > deadline or self.proc.poll() is not None:
                raise RuntimeError("chromium did not start")
            time.sleep(0.1)
        time.sleep(0.2)
        port = open(port_file).read().split()[0]
        with urllib.request.urlopen("http://127.0.0.1:%s/json/list" % port, timeout=10) as r:
            targets = json.load(r)
        page = next(t for t in targets if t["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30)
        self.next_id = 0
        self.events = []

    def call(self, method, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError("%s: %s" % (method, msg["error"]))
                return msg.get("result", {})
            self.events.append(msg)

    def wait_event(self, name, timeout=30):
        deadline = time.time() + timeout
        while True:
            for i, e in enumerate(self.events):
                if e.get("method") == name:
                    del self.events[: i + 1]
                    return e
            if time.time() > deadline:
                raise RuntimeError("no %s within %d s" % (name, timeout))
            self.ws.settimeout(max(0.1, deadline - time.time()))
            self.events.append(json.loads(self.ws.recv()))

    def js(self, expr):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True)
        return r.get("result", {}).get("value")

    def shot(self, path):
        data = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        with open(path, "wb") as f:
            f.write(data)
        return len(data)

    def close(self):
        try:
            self.call("Browser.close")
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--expect", required=True, help="text the apps page must show")
    ap.add_argument("--out", required=True, help="directory for the screenshots")
    ap.add_argument("--shots", default="portal-signin,portal-apps",
                    help="the two screenshots' names (without .png)")
    a = ap.parse_args()
    names = a.shots.split(",")
    base = "https://127.0.0.1:%d/" % a.port
    b = Browser(1024, 768)
    failures = []
    try:
        b.call("Page.enable")
        b.call("Page.navigate", url=base)
        b.wait_event("Page.loadEventFired")
        if not b.js("!!document.querySelector('form[action=\"/signin\"] input[name=password]')"):
            failures.append("no sign-in form at " + base)
        n = b.shot(os.path.join(a.out, names[0] + ".png"))
        if n < 2000:
            failures.append("the sign-in screenshot is only %d bytes" % n)
        b.js("document.getElementById('user').value = %s;"
             "document.getElementById('password').value = %s;"
             "document.querySelector('form[action=\"/signin\"]').requestSubmit();"
             % (json.dumps(a.user), json.dumps(a.password)))
        b.wait_event("Page.loadEventFired")
        text = b.js("document.body.innerText") or ""
        if a.expect not in text or "Sign out" not in text or a.user not in text:
            failures.append("the apps page does not show %r, %r and 'Sign out': %r"
                            % (a.expect, a.user, text[:400]))
        if not b.js("document.styleSheets.length > 0 && "
                    "getComputedStyle(document.body).backgroundColor !== 'rgba(0, 0, 0, 0)'"):
            failures.append("the stylesheet was not applied")
        n = b.shot(os.path.join(a.out, names[1] + ".png"))
        if n < 2000:
            failures.append("the apps screenshot is only %d bytes" % n)
    except Exception as e:  # the reason goes to the test's log
        failures.append("browser: %s" % e)
    finally:
        b.close()
    for f in failures:
        print("FAIL " + f, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
