#!/usr/bin/env python3
"""explorer_browser.py — the explorer page in a real browser: headless Chromium, driven through the
DevTools protocol over a pipe (--remote-debugging-pipe: NUL-terminated JSON messages on file
descriptors 3 and 4), with nothing but Python's standard library.

    explorer_browser.py TEST_EXPLORER [SCREENSHOT.png]

TEST_EXPLORER is the test_explorer program, which writes the fixture page and what must be seen in it
(expect.json). The page is loaded from its file; the test then checks, in the DOM and in screenshots:
the hostile labels read back as typed (and the script in one of them never ran); the choosers; pointing
at a query word highlights exactly its row of cells, its lines and its word, and lists its weights,
strongest first; the highlighted cells have the palette's exact colours and the others are dimmed;
the strongest line is drawn in the lines' colour; a cell shows its value; a key highlights its column;
the keyboard (focus) does what pointing does; a tap (click) pins a word until Escape; another head redraws the matrix in its colours.
The vision fixture (vision.html): the image with the class token's attention over its patches, numbers in
them; pointing at a patch shows that patch's attention (DOM and screenshot); the rollout's own values.
Exit status 0 when all pass, 1 on a failure, 77 (skipped) when no Chromium is installed.
"""
import base64
import fcntl
import json
import os
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib

SKIP = 77
TIMEOUT = 20.0          # seconds for any one answer from the browser
failures = []


def check(cond, what):
    print(("  ok    " if cond else "  FAIL  ") + what)
    if not cond:
        failures.append(what)
    return cond


class Browser:
    """Chromium with its DevTools protocol on a pipe; one page (a flattened session)."""

    def __init__(self, exe, profile, log):
        to_r, to_w = os.pipe()          # we write, Chromium reads on fd 3
        from_r, from_w = os.pipe()      # Chromium writes on fd 4, we read
        # out of the way of 3 and 4, so that the child's dup2 cannot overwrite one with the other
        hi_r = fcntl.fcntl(to_r, fcntl.F_DUPFD, 10)
        hi_w = fcntl.fcntl(from_w, fcntl.F_DUPFD, 10)
        os.close(to_r)
        os.close(from_w)

        def child():
            os.dup2(hi_r, 3)
            os.dup2(hi_w, 4)

        self.proc = subprocess.Popen(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--remote-debugging-pipe", "--user-data-dir=" + profile, "--hide-scrollbars", "--mute-audio",
             "--window-size=1200,900", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, preexec_fn=child, close_fds=False)
        os.close(hi_r)
        os.close(hi_w)
        self.w, self.r = to_w, from_r
        self.buf = b""
        self.next_id = 0
        self.events = []
        self.session = None

    def _read_message(self, deadline):
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from Chromium")
            ready, _, _ = select.select([self.r], [], [], left)
            if ready:
                chunk = os.read(self.r, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium closed its DevTools pipe (see its log)")
                self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method, params=None, browser=False):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if not browser:
            msg["sessionId"] = self.session
        os.write(self.w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT
        while True:
            m = self._read_message(deadline)
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def wait_event(self, name):
        deadline = time.monotonic() + TIMEOUT
        while True:
            for i, e in enumerate(self.events):
                if e.get("method") == name:
                    return self.events.pop(i)
            self.events.append(self._read_message(deadline))

    def open(self, url):
        target = self.call("Target.createTarget", {"url": "about:blank"}, browser=True)["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True},
                                 browser=True)["sessionId"]
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": 1200, "height": 900, "deviceScaleFactor": 1, "mobile": False})
        self.call("Page.navigate", {"url": url})
        self.wait_event("Page.loadEventFired")

    def js(self, expr):
        r = self.call("Runtime.evaluate", {"expression": expr, "returnByValue": True})
        if "exceptionDetails" in r:
            raise RuntimeError(f"script error in {expr!r}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def mouse(self, x, y):
        self.call("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y})

    def click(self, x, y):
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})

    def key(self, name):
        for kind in ("keyDown", "keyUp"):
            self.call("Input.dispatchKeyEvent", {"type": kind, "key": name, "code": name})

    def screenshot(self):
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        return base64.b64decode(data)

    def close(self):
        try:
            self.call("Browser.close", browser=True)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.w)
        os.close(self.r)


def decode_png(data):
    """(width, height, rows of RGB tuples' bytes, channels): 8-bit RGB or RGBA, not interlaced."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, b""
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and ctype in (2, 6) and interlace == 0, (depth, ctype, interlace)
            ch = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    stride = w * ch
    rows, prev = [], bytearray(stride)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if f == 1:
            for i in range(ch, stride):
                line[i] = (line[i] + line[i - ch]) & 255
        elif f == 2:
            for i in range(stride):
                line[i] = (line[i] + prev[i]) & 255
        elif f == 3:
            for i in range(stride):
                line[i] = (line[i] + ((line[i - ch] if i >= ch else 0) + prev[i]) // 2) & 255
        elif f == 4:
            for i in range(stride):
                a = line[i - ch] if i >= ch else 0
                b = prev[i]
                c = prev[i - ch] if i >= ch else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(line)
        prev = line
    return w, h, rows, ch


def pixel(img, x, y):
    w, h, rows, ch = img
    x, y = int(round(x)), int(round(y))
    return tuple(rows[y][x * ch:x * ch + 3])


def near(a, b, tol):
    return all(abs(p - q) <= tol for p, q in zip(a, b))


# the page's state, read in one go
STATE = """(() => {
  const q = (s) => Array.from(document.querySelectorAll(s));
  return {
    on_cells: q('#grid td.cell.on').map(e => [Number(e.dataset.row), Number(e.dataset.col)]),
    on_toks: q('.tok.on').map(e => e.textContent),
    on_lines: q('#wires line.on').map(e => [Number(e.dataset.row), Number(e.dataset.col),
                                             Number(e.getAttribute('stroke-opacity'))]),
    focus: document.getElementById('grid').classList.contains('focus'),
    info_head: (document.querySelector('#info h3') || {}).textContent || null,
    info: q('#info li').map(e => [e.querySelector('.lab').textContent, e.querySelector('.v').textContent]),
    tip: document.getElementById('tip').hidden ? null : document.getElementById('tip').textContent,
    maptitle: document.getElementById('maptitle').textContent,
  };
})()"""


def rect(b, selector):
    r = b.js(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return null;"
             " e.scrollIntoView({block: 'nearest', inline: 'nearest'});"
             " const r = e.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; })()")
    if r is None:
        raise RuntimeError(f"no element {selector}")
    return r


def centre(r):
    return r[0] + r[2] / 2, r[1] + r[3] / 2


def cell_centres(b, rows, cols):
    return {(i, j): centre(rect(b, f'#grid td.cell[data-row="{i}"][data-col="{j}"]'))
            for i in range(rows) for j in range(cols)}


def main():
    if len(sys.argv) < 2:
        print("usage: explorer_browser.py TEST_EXPLORER [SCREENSHOT.png]", file=sys.stderr)
        return 2
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not exe:
        print("SKIP: no chromium on PATH (Debian: apt-get install chromium; `make test` installs it)")
        return SKIP
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="attn-explorer-") as d:
        subprocess.run([sys.argv[1], "page", d], check=True)
        expect = json.load(open(os.path.join(d, "expect.json"), encoding="utf-8"))
        page = os.path.join(d, "explorer.html")
        log = open(os.path.join(d, "chromium.log"), "wb")
        b = Browser(exe, os.path.join(d, "profile"), log)
        try:
            run(b, expect, page, sys.argv[2] if len(sys.argv) > 2 else None)
            run_vision(b, os.path.join(d, "vision.html"), sys.argv[2] if len(sys.argv) > 2 else None)
        except Exception as e:          # a broken protocol exchange is a failure, with the browser's log
            failures.append(f"{type(e).__name__}: {e}")
            print(f"  FAIL  {type(e).__name__}: {e}")
            log.flush()
            print(open(os.path.join(d, "chromium.log"), errors="replace").read()[-2000:])
        finally:
            b.close()
            log.close()
    print(f"explorer_browser: {len(failures)} failure(s), {time.monotonic() - t0:.1f} s")
    return 1 if failures else 0


def run(b, expect, page, shot_path):
    b.open("file://" + page)
    m0, m1, m2 = expect["maps"]
    check(b.js("document.body.dataset.ready") == "1", "the page's script ran to its end")
    exc = [e for e in b.events if e.get("method") == "Runtime.exceptionThrown"]
    check(not exc, "no script error" + (f": {exc[0]['params']}" if exc else ""))
    # the labels read back exactly as typed; the script inside one of them never ran
    check(b.js("document.title") == expect["title"], "the title, escaped, reads back as given")
    check(b.js("Array.from(document.querySelectorAll('#queries .tok'), e => e.textContent)") == m0["rows"],
          "the query words read back as typed (</script>, quotes, &, UTF-8)")
    check(b.js("Array.from(document.querySelectorAll('#keys .tok'), e => e.textContent)") == m0["cols"],
          "the key words read back as typed")
    check(b.js("typeof window.pwned") == "undefined", "the <script> inside a label did not run")
    check(b.js("document.getElementById('help').textContent").startswith("Point at a word"),
          "the help speaks of words")
    check(b.js("document.querySelectorAll('script').length") == 2, "no script element but the page's own two")
    # the choosers: two groups; one layer in the first group (hidden), two heads
    check(b.js("Array.from(document.getElementById('group').options, o => o.value)") ==
          ["cross-attention", "encoder self-attention"], "the group chooser lists both groups")
    check(b.js("document.getElementById('layer-pick').hidden") is True, "a single layer shows no chooser")
    check(b.js("Array.from(document.getElementById('head').options, o => o.text)") == ["head 1", "head 2"],
          "the head chooser lists the two heads")
    check(b.js("document.getElementById('maptitle').textContent") == m0["title"], "the first map is shown")

    # point at the second query word
    row = 1
    x, y = centre(rect(b, f'#queries .tok[data-row="{row}"]'))
    cells = cell_centres(b, 3, 4)
    b.mouse(x, y)
    s = b.js(STATE)
    want_cells = [[row, j] for j in range(4)]
    check(s["focus"] and sorted(s["on_cells"]) == want_cells,
          f"pointing at query {row}: exactly its row is highlighted ({s['on_cells']})")
    check(m0["rows"][row] in s["on_toks"] and all(t in m0["rows"] for t in s["on_toks"]),
          "its word is highlighted, in the line and beside the matrix, and no key")
    check(sorted((r, c) for r, c, _ in s["on_lines"]) == [(row, j) for j in range(4)],
          "its lines to the four keys, and no other, are drawn")
    vals = m0["values"][row]
    ok = all(abs(op - max(0.08, vals[c])) < 1e-3 for _, c, op in s["on_lines"])
    check(ok, "each line as strong as its weight")
    order = sorted(range(4), key=lambda j: -vals[j])
    want_info = [[m0["cols"][j], f"{vals[j]:.3f}"] for j in order]
    check(s["info"] == want_info, f"the weights listed, strongest first: {s['info']}")
    check(s["info_head"] is not None and m0["rows"][row] in s["info_head"], "the list names the word")
    img = decode_png(b.screenshot())
    if shot_path:
        shutil.copyfile(page, shot_path + ".html")
    bad = []
    for (i, j), (cx, cy) in cells.items():
        got = pixel(img, cx, cy)
        rgb = tuple(m0["rgb"][i][j])
        want = rgb if i == row else tuple(round(0.2 * c + 0.8 * 255) for c in rgb)   # dimmed: opacity 0.2 on white
        if not near(got, want, 0 if i == row else 3):
            bad.append(((i, j), got, want))
    check(not bad, "screenshot: the row's cells in the palette's exact colours, the others dimmed"
          + (f" ({bad[:3]})" if bad else ""))
    tx, ty, tw, th = rect(b, f'#queries .tok[data-row="{row}"]')
    check(near(pixel(img, tx + 2, ty + th / 2), (0xff, 0xe0, 0x66), 2), "screenshot: the word is highlighted")
    strongest = max(range(4), key=lambda j: vals[j])
    l = b.js(f"""(() => {{ const ln = document.querySelector('#wires line[data-row="{row}"][data-col="{strongest}"]');
               const s = ln.ownerSVGElement.getBoundingClientRect();
               return [s.left + (Number(ln.getAttribute('x1')) + Number(ln.getAttribute('x2'))) / 2,
                       s.top + (Number(ln.getAttribute('y1')) + Number(ln.getAttribute('y2'))) / 2]; }})()""")
    lp = pixel(img, l[0], l[1])
    check(lp[0] - lp[1] > 60 and lp[0] - lp[2] > 60, f"screenshot: the strongest line is drawn, red, at its middle {lp}")
    if shot_path:
        with open(shot_path, "wb") as f:
            f.write(b.screenshot())

    # a cell: its value beside it
    cx, cy = cells[(2, 3)]
    b.mouse(cx, cy)
    s = b.js(STATE)
    check(s["tip"] == f"{m0['rows'][2]} \u2192 {m0['cols'][3]}: {m0['values'][2][3]:.3f}",
          f"pointing at a cell shows its value: {s['tip']!r}")
    # a key: its column, and who attends to it
    x, y = centre(rect(b, '#keys .tok[data-col="2"]'))
    b.mouse(x, y)
    s = b.js(STATE)
    check(sorted(s["on_cells"]) == [[i, 2] for i in range(3)], "pointing at a key highlights its column")
    check([v for _, v in s["info"]] == sorted((f"{m0['values'][i][2]:.3f}" for i in range(3)), reverse=True),
          "and lists who attends to it")
    # the keyboard: focus does what pointing does
    b.mouse(5, 5)
    check(b.js(STATE)["on_cells"] == [], "pointing away clears the highlight")
    b.js("document.querySelector('#grid th.row[data-row=\"0\"]').focus()")
    check(sorted(b.js(STATE)["on_cells"]) == [[0, j] for j in range(4)], "focusing a word (Tab) highlights its row")
    b.js("document.activeElement.blur()")
    b.mouse(5, 5)
    # a tap (click) pins the word: it stays highlighted when the pointer leaves, until Escape
    x, y = centre(rect(b, '#queries .tok[data-row="2"]'))
    b.click(x, y)
    b.mouse(5, 5)
    check(sorted(b.js(STATE)["on_cells"]) == [[2, j] for j in range(4)], "a tapped word stays highlighted")
    b.key("Escape")
    check(b.js(STATE)["on_cells"] == [], "Escape lets it go")

    # another head: the matrix in its own colours
    b.js("(() => { const h = document.getElementById('head'); h.value = '2';"
         " h.dispatchEvent(new Event('change')); })()")
    check(b.js("document.getElementById('maptitle').textContent") == m1["title"], "head 2 chosen: its title")
    img = decode_png(b.screenshot())
    bad = [(k, pixel(img, *c), m1["rgb"][k[0]][k[1]]) for k, c in cell_centres(b, 3, 4).items()
           if pixel(img, *c) != tuple(m1["rgb"][k[0]][k[1]])]
    check(not bad, "screenshot: head 2's cells in its exact colours" + (f" ({bad[:3]})" if bad else ""))
    # the other group: its layer chooser, its words, its palette
    b.js("(() => { const g = document.getElementById('group'); g.value = 'encoder self-attention';"
         " g.dispatchEvent(new Event('change')); })()")
    check(b.js("document.getElementById('maptitle').textContent") == m2["title"], "the other group: its map")
    check(b.js("Array.from(document.querySelectorAll('#queries .tok'), e => e.textContent)") == m2["rows"],
          "its own words")
    img = decode_png(b.screenshot())
    bad = [(k, pixel(img, *c), m2["rgb"][k[0]][k[1]]) for k, c in cell_centres(b, 4, 4).items()
           if pixel(img, *c) != tuple(m2["rgb"][k[0]][k[1]])]
    check(not bad, "screenshot: its cells in its palette (magma)" + (f" ({bad[:3]})" if bad else ""))



def patch_texts(b):
    return b.js("Array.from(document.querySelectorAll('#picbox .patch'), e => e.textContent)")


def run_vision(b, page, shot_path):
    """The vision fixture of test_explorer.c: 8x8 pixels, 2x2 patches after [CLS]; self-attention rows
    [CLS] -> patch 3 strongest, token 2 (a hostile label) -> patch 2."""
    b.events.clear()
    b.open("file://" + page)
    check(b.js("document.body.dataset.ready") == "1", "vision: the page's script ran to its end")
    exc = [e for e in b.events if e.get("method") == "Runtime.exceptionThrown"]
    check(not exc, "vision: no script error" + (f": {exc[0]['params']}" if exc else ""))
    check(b.js("Array.from(document.getElementById('group').options, o => o.value)") == ["rollout", "self-attention"],
          "vision: the chooser offers the rollout and the self-attention")
    check(b.js("document.getElementById('picture').hidden") is False and b.js("document.getElementById('lines').hidden"),
          "vision: the image is shown, the word lines are not")
    check(b.js("document.getElementById('help').textContent").startswith("Point at a patch"),
          "vision: the help speaks of patches, not words")
    check(b.js("[document.getElementById('image').width, document.getElementById('image').height]") == [8, 8],
          "vision: the canvas holds the 8x8 image")
    check(patch_texts(b) == [".100", ".500", ".100", ".100"], f"vision: the rollout's values in the patches {patch_texts(b)}")
    b.js("(() => { const g = document.getElementById('group'); g.value = 'self-attention';"
         " g.dispatchEvent(new Event('change')); })()")
    check(b.js("document.getElementById('maptitle').textContent") == "block 1 head 1", "vision: block 1 head 1 chosen")
    check(patch_texts(b) == [".050", ".030", ".100", ".800"], f"vision: the class token's row in the patches {patch_texts(b)}")
    r2 = rect(b, '#picbox .patch[data-patch="2"]')
    probe = (r2[0] + 20, r2[1] + 20)                 # inside patch (1,0), away from its number and border
    before = pixel(decode_png(b.screenshot()), *probe)
    # point at patch (0,1), token 2, whose row puts 0.85 on patch (1,0)
    x, y = centre(rect(b, '#picbox .patch[data-patch="1"]'))
    b.mouse(x, y)
    st = b.js(STATE)
    check(patch_texts(b) == [".040", ".040", ".850", ".050"], f"vision: pointing at a patch shows its row {patch_texts(b)}")
    check(st["info_head"] is not None and "</script><b>p</b>" in st["info_head"],
          f"vision: the list names the patch, its label as typed: {st['info_head']!r}")
    check(sorted(st["on_cells"]) == [[2, j] for j in range(5)], "vision: its row of the matrix is highlighted")
    check(b.js("Array.from(document.querySelectorAll('#picbox .patch.on'), e => e.dataset.patch)") == ["1"],
          "vision: the patch pointed at is outlined")
    check(b.js("typeof window.pwned") == "undefined" and b.js("document.querySelectorAll('script').length") == 2,
          "vision: no script but the page's own")
    img = decode_png(b.screenshot())
    after = pixel(img, *probe)
    check(sum(after) - sum(before) > 250, f"screenshot: patch (1,0) lights up from {before} to {after}")
    r1 = rect(b, '#picbox .patch[data-patch="1"]')
    check(near(pixel(img, r1[0] + 1, r1[1] + r1[3] / 2), (0, 0, 0), 10), "screenshot: the patch pointed at is outlined")
    if shot_path:
        root, ext = os.path.splitext(shot_path)
        with open(root + "_vision" + ext, "wb") as f:
            f.write(b.screenshot())
    b.mouse(5, 5)
    check(patch_texts(b) == [".050", ".030", ".100", ".800"], "vision: pointing away brings back the class token's row")


if __name__ == "__main__":
    sys.exit(main())
