"""Re-make the README's TensorBoard screenshots (docs/screens/*.png) from fresh runs.

Run: make screenshots    (= python scripts/screenshots.py; needs `apt-get install chromium` and
                          the docs extra: pip install -e '.[docs]')
     python scripts/screenshots.py --only cnn   # the lesson 16 pictures only (one course_cnn run)

It trains the journal lessons and an lr sweep into a temporary folder, starts TensorBoard on it,
and drives headless Chromium over its DevTools protocol: Chromium's plain `--screenshot` draws
TensorBoard's charts empty, because their WebGL lines need real time to render. Then the same for
experiment=course_cnn in a folder of its own (so the journal pictures show the journal runs only):
its graph (expanded by double-clicks, as a person would), accuracy beside the loss, the input
images and the PR curves.
"""

from __future__ import annotations

import argparse
import base64
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = [
    ["experiment=journal_regression"],
    ["experiment=journal_autograd"],
    ["-m", "optimizer.lr=0.001,0.01,0.1", "trainer.max_epochs=200"],
]
PAGES = {  # file name: (TensorBoard page, JavaScript to run after it has drawn)
    "landing.png": ("/#timeseries", None),
    "journal_regression_fit.png": (
        "/?runFilter=journal_regression&tagFilter=train%2Fpictures%2Ffit#timeseries", None),
    "hparams.png": ("/#hparams", None),
    "text.png": ("/?runFilter=journal_regression#text", None),
    "custom_scalars.png": ("/#custom_scalars", None),
}
# The graph opens folded into one `CNN` box: double-click it open, down to the layers, then fit it
EXPAND_GRAPH = """(async () => {
  function deep(root, sel, out) { root.querySelectorAll(sel).forEach(e => out.push(e));
    root.querySelectorAll('*').forEach(e => { if (e.shadowRoot) deep(e.shadowRoot, sel, out); }); return out; }
  for (const name of ["CNN", "CNN/ConvNet[net]", "CNN/ConvNet[net]/Sequential[features]",
                      "CNN/ConvNet[net]/Sequential[head]"]) {
    for (const node of deep(document, 'g[data-name="' + name + '"]', [])) {
      (node.querySelector('.nodeshape') || node).dispatchEvent(
        new MouseEvent('dblclick', {bubbles: true, composed: true}));
    }
    await new Promise(r => setTimeout(r, 2500));
  }
  const fit = deep(document, '*', []).filter(e => !e.children.length && e.textContent.trim() === 'Fit to screen');
  for (const el of fit) {
    el.dispatchEvent(new MouseEvent('click', {bubbles: true, composed: true}));
  }
  await new Promise(r => setTimeout(r, 2500));
})()"""
CNN_RUNS = [["experiment=course_cnn"]]
CNN_PAGES = {  # the course's lesson 16 for a classifier
    "cnn_graph.png": ("/#graphs", EXPAND_GRAPH),
    "cnn_accuracy.png": ("/?tagFilter=%5Etrain%2F(loss%7Caccuracy)%24#timeseries", None),
    "cnn_images.png": ("/#images", None),
    "cnn_pr_curves.png": ("/#pr_curves", None),
}


def shoot(url: str, out: Path, size: tuple[int, int], wait: float, port: int = 9333,
          js: str | None = None) -> None:
    import websocket  # the docs extra

    profile = tempfile.mkdtemp(prefix="gradlab-shot-")
    chromium = subprocess.Popen(
        ["chromium", "--headless=new", "--no-sandbox", "--hide-scrollbars", "--use-angle=swiftshader",
         "--enable-unsafe-swiftshader", f"--window-size={size[0]},{size[1]}", f"--remote-debugging-port={port}",
         f"--remote-allow-origins=http://127.0.0.1:{port}",  # newer Chromium refuses the websocket otherwise
         f"--user-data-dir={profile}", "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                pages = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json"))
                ws_url = next(p["webSocketDebuggerUrl"] for p in pages if p.get("type") == "page")
                break
            except (OSError, StopIteration):
                time.sleep(0.2)
        else:
            raise SystemExit("chromium did not start: apt-get install chromium")
        ws = websocket.create_connection(ws_url, timeout=60)
        ids = iter(range(1, 10**6))

        def call(method: str, **params):
            i = next(ids)
            ws.send(json.dumps({"id": i, "method": method, "params": params}))
            while True:
                msg = json.loads(ws.recv())
                if msg.get("id") == i:
                    return msg.get("result", {})

        call("Page.enable")
        call("Emulation.setDeviceMetricsOverride", width=size[0], height=size[1], deviceScaleFactor=1,
             mobile=False)
        call("Page.navigate", url=url)
        time.sleep(wait)  # real time: TensorBoard loads, then WebGL draws
        if js:
            call("Runtime.evaluate", expression=js, awaitPromise=True)
            time.sleep(2)
        out.write_bytes(base64.b64decode(call("Page.captureScreenshot", format="png")["data"]))
        from PIL import Image  # matplotlib's dependency: 256 colours keep the committed files small

        Image.open(out).convert("RGB").quantize(256).save(out, optimize=True)
    finally:
        chromium.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "screens")
    ap.add_argument("--wait", type=float, default=14.0, help="seconds each page gets to draw")
    ap.add_argument("--port", type=int, default=6199)
    ap.add_argument("--only", choices=["journal", "cnn"], help="one set of pictures only")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    sets = {"journal": (RUNS, PAGES, (1400, 900)), "cnn": (CNN_RUNS, CNN_PAGES, (1400, 1100))}
    for name, (runs, pages, size) in sets.items():
        if args.only in (None, name):
            shoot_set(runs, pages, size, args)


def shoot_set(runs: list[list[str]], pages: dict, size: tuple[int, int], args) -> None:
    """Trains `runs` into a temporary folder, opens TensorBoard on it and shoots `pages`."""
    with tempfile.TemporaryDirectory(prefix="gradlab-screens-") as work:
        for overrides in runs:
            subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), *overrides], cwd=work,
                           check=True, stdout=subprocess.DEVNULL)
        board = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", "lightning_logs",
                                  "--host", "127.0.0.1", "--port", str(args.port)], cwd=work,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(6)
            for name, (page, js) in pages.items():
                shoot(f"http://127.0.0.1:{args.port}{page}", args.out / name, size, args.wait, js=js)
                print(f"wrote {args.out / name}")
        finally:
            board.terminate()


if __name__ == "__main__":
    main()
