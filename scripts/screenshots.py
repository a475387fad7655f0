"""Re-make the README's TensorBoard screenshots (docs/screens/*.png) from fresh runs.

Run: make screenshots    (= python scripts/screenshots.py; needs `apt-get install chromium` and
                          the docs extra: pip install -e '.[docs]')

It trains the journal lessons and an lr sweep into a temporary folder, starts TensorBoard on it,
and drives headless Chromium over its DevTools protocol: Chromium's plain `--screenshot` draws
TensorBoard's charts empty, because their WebGL lines need real time to render.
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


def shoot(url: str, out: Path, size: tuple[int, int], wait: float, port: int = 9333) -> None:
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
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gradlab-screens-") as work:
        for overrides in RUNS:
            subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), *overrides], cwd=work,
                           check=True, stdout=subprocess.DEVNULL)
        board = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", "lightning_logs",
                                  "--host", "127.0.0.1", "--port", str(args.port)], cwd=work,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(6)
            for name, (page, _) in PAGES.items():
                shoot(f"http://127.0.0.1:{args.port}{page}", args.out / name, (1400, 900), args.wait)
                print(f"wrote {args.out / name}")
        finally:
            board.terminate()


if __name__ == "__main__":
    main()
