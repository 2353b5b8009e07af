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


# the gateway's own screens (rdp-gateway/draw.c): the background and the panel
WAIT_COLOURS = ([0x1d, 0x2b, 0x3a], [0x2c, 0x3e, 0x50])

PIXEL = """(() => {
  const c = document.querySelector('#screen canvas');
  if (!c || !c.width) return null;
  const d = c.getContext('2d').getImageData(%d, %d, 1, 1).data;
  return [d[0], d[1], d[2]];
})()"""


def wait_for(b, expr, what, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = b.js(expr)
        if v:
            return v
        time.sleep(0.2)
    raise RuntimeError("%s: not within %d s" % (what, timeout))


def key(b, code, key_, text, vk):
    for t in ("keyDown", "keyUp"):
        p = {"type": t, "code": code, "key": key_, "windowsVirtualKeyCode": vk}
        if t == "keyDown" and text:
            p["text"] = text
        b.call("Input.dispatchKeyEvent", **p)
        time.sleep(0.03)


def launch(b, base, a, names, failures):
    """The app in the browser: the wait screen, the guest, typed text, the ticket once."""
    if not b.js("!!document.querySelector('a[href=\"/launch/%s\"]')" % a.launch):
        failures.append("the apps page has no 'In the browser' for " + a.launch)
    b.call("Page.navigate", url=base + "launch/" + a.launch)
    b.wait_event("Page.loadEventFired")
    ws = b.js("document.getElementById('screen').dataset.ws")
    if not ws or "ticket=" not in ws:
        failures.append("the launch page has no WebSocket address with a ticket: %r" % ws)
        return
    wait_for(b, "document.getElementById('status').textContent === 'connected'",
             "noVNC connected", 30)
    trace = []
    deadline = time.time() + 30
    while True:
        px = b.js(PIXEL % (8, 8))
        trace.append(px)
        if px in WAIT_COLOURS:
            break
        if time.time() > deadline:
            b.shot(os.path.join(a.out, names[2] + "-failed.png"))
            raise RuntimeError("no wait screen in the browser within 30 s: pixels %r" % trace[-5:])
        time.sleep(0.2)
    b.shot(os.path.join(a.out, names[2] + ".png"))
    # the guest's console: no longer the wait screen's colour
    wait_for(b, "(() => { const p = %s; return p && !%s.some(c => JSON.stringify(c) === "
                "JSON.stringify(p)); })()" % (PIXEL % (8, 8), json.dumps(WAIT_COLOURS)),
             "the guest's pixels in the browser", a.timeout)
    time.sleep(1.0)
    b.shot(os.path.join(a.out, names[3] + ".png"))
    if a.type:
        # a click to give the canvas the focus, then the keys (noVNC sends scancodes)
        b.call("Input.dispatchMouseEvent", type="mousePressed", x=300, y=300, button="left",
               clickCount=1)
        b.call("Input.dispatchMouseEvent", type="mouseReleased", x=300, y=300, button="left",
               clickCount=1)
        for ch in a.type:
            if ch.isalpha():
                key(b, "Key" + ch.upper(), ch, ch, ord(ch.upper()))
            elif ch.isdigit():
                key(b, "Digit" + ch, ch, ch, ord(ch))
        key(b, "Enter", "Enter", "\r", 13)
        time.sleep(2.0)
    # the same ticket again: nestord refuses it (the gateway shows its login screen)
    b.js("""(async () => {
      const { default: RFB } = await import('/novnc/core/rfb.js');
      const div = document.createElement('div');
      document.body.appendChild(div);
      window.second = new RFB(div, %s, {wsProtocols: ['binary']});
    })()""" % json.dumps(ws))
    time.sleep(4.0)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--expect", required=True, help="text the apps page must show")
    ap.add_argument("--out", required=True, help="directory for the screenshots")
    ap.add_argument("--shots", default="portal-signin,portal-apps",
                    help="the screenshots' names (without .png): sign-in and apps; with "
                         "--launch also the wait screen and the guest")
    ap.add_argument("--launch", help="then open this app in the browser (noVNC)")
    ap.add_argument("--type", default="", help="with --launch: type this line into the guest")
    ap.add_argument("--timeout", type=int, default=120,
                    help="with --launch: seconds to wait for the guest's pixels")
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
        if a.launch:
            launch(b, base, a, names, failures)
    except Exception as e:  # the reason goes to the test's log
        failures.append("browser: %s" % e)
    finally:
        b.close()
    for f in failures:
        print("FAIL " + f, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
