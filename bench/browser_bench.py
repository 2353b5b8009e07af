#!/usr/bin/python3
"""browser_bench: the browser path's cost, measured inside the page.

Headless Chromium signs in on the portal, opens APP in the browser (noVNC
over the gateway's browser door) and, in the page itself, measures:
  - input round trip: noVNC sends a key; the time until the test RDP
    server's echo block for it shows in noVNC's canvas (N keys);
  - frame throughput: F9 starts the server's animation (its frame number is
    the animated box's top-left pixel); distinct frame numbers the canvas
    shows per second over SECONDS.
The app must be on the test RDP server's image (nestor-test-rdpsrv), as for
bench/proxy_bench.c. Prints one table row and one JSON line.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "portal"))
from browser import Browser, wait_for  # noqa: E402

MEASURE = """(async (n, seconds) => {
  const rfb = window.nestorRfb;
  const c = document.querySelector('#screen canvas');
  const g = c.getContext('2d', {willReadFrequently: true});
  const px = (x, y) => { const d = g.getImageData(x, y, 1, 1).data;
                         return (d[0] << 16) | (d[1] << 8) | d[2]; };
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const keys = [['KeyA', 0x61, 0x1e], ['KeyB', 0x62, 0x30], ['KeyC', 0x63, 0x2e],
                ['KeyD', 0x64, 0x20], ['KeyE', 0x65, 0x12], ['KeyF', 0x66, 0x21],
                ['KeyG', 0x67, 0x22], ['KeyH', 0x68, 0x23], ['KeyI', 0x69, 0x17],
                ['KeyJ', 0x6a, 0x24], ['KeyK', 0x6b, 0x25], ['KeyL', 0x6c, 0x26]];
  const colour = (code) => 0x200000 | (code << 8) | 0xa0; /* rdpsrv_key_colour */
  const rtt = [];
  for (let i = 0; i < n; i++) {
    const slot = i % 32, x = 8 + 12 * slot + 2, y = 8 + 2;
    let k = keys[i % 12];
    if (px(x, y) === colour(k[2])) k = keys[(i + 1) % 12];
    const t0 = performance.now();
    rfb.sendKey(k[1], k[0]);
    while (px(x, y) !== colour(k[2])) {
      if (performance.now() - t0 > 5000) return {error: 'key ' + i + ' never echoed'};
      await sleep(1);
    }
    rtt.push(performance.now() - t0);
    await sleep(50);
  }
  rtt.sort((a, b) => a - b);
  rfb.sendKey(0xffc6, 'F9');
  await sleep(1000);
  const seen = new Set();
  const t0 = performance.now();
  while (performance.now() - t0 < seconds * 1000) { seen.add(px(32, 32)); await sleep(4); }
  const fps = seen.size / ((performance.now() - t0) / 1000);
  rfb.sendKey(0xffc6, 'F9');
  return {keys: rtt.length, p50: rtt[rtt.length >> 1],
          p95: rtt[Math.min(rtt.length - 1, Math.floor(rtt.length * 0.95))],
          max: rtt[rtt.length - 1], fps: fps};
})(__KEYS__, __SECONDS__)"""


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, required=True, help="the portal's port")
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--app", required=True)
    ap.add_argument("--keys", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=5)
    a = ap.parse_args()
    base = "https://127.0.0.1:%d/" % a.port
    b = Browser(1280, 900)
    try:
        b.call("Page.enable")
        b.call("Page.navigate", url=base)
        b.wait_event("Page.loadEventFired")
        b.js("document.getElementById('user').value = %s;"
             "document.getElementById('password').value = %s;"
             "document.querySelector('form[action=\"/signin\"]').requestSubmit();"
             % (json.dumps(a.user), json.dumps(a.password)))
        b.wait_event("Page.loadEventFired")
        t0 = time.time()
        b.call("Page.navigate", url=base + "launch/" + a.app)
        b.wait_event("Page.loadEventFired")
        wait_for(b, "document.getElementById('status').textContent === 'connected'",
                 "noVNC connected", 30)
        connect_ms = (time.time() - t0) * 1000
        # the test server's pattern (rdpsrv_pattern at 300,300) shows: the guest is there
        wait_for(b, """(() => { const c = document.querySelector('#screen canvas');
                   if (!c || c.width < 400) return false;
                   const d = c.getContext('2d').getImageData(300, 300, 1, 1).data;
                   return d[0] === (300 & 255) && d[1] === (300 & 255); })()""",
                 "the guest's pattern", 120)
        r = b.call("Runtime.evaluate", expression=MEASURE.replace("__KEYS__", str(a.keys)).replace("__SECONDS__", str(a.seconds)),
                   awaitPromise=True, returnByValue=True)["result"]["value"]
    finally:
        b.close()
    if "error" in r:
        print("browser_bench: " + r["error"], file=sys.stderr)
        return 1
    print("%-22s %10s %10s %10s %10s %12s" % ("path", "connect", "rtt p50", "rtt p95", "rtt max",
                                              "frames/s"))
    print("%-22s %8.0fms %8.1fms %8.1fms %8.1fms %12.1f" % (
        "browser (noVNC, wss)", connect_ms, r["p50"], r["p95"], r["max"], r["fps"]))
    print(json.dumps({"keys": r["keys"], "seconds": a.seconds,
                      "browser": {"rtt_p50_ms": round(r["p50"], 1),
                                  "rtt_p95_ms": round(r["p95"], 1), "fps": round(r["fps"], 1)}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
