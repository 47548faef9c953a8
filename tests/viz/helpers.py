"""Synthetic inputs for the viz tests, and a tiny Chrome DevTools Protocol client.

The CDP client talks to headless Chromium over ``--remote-debugging-pipe`` (fds 3 and
4, NUL-terminated JSON), so it needs nothing beyond the standard library.
"""

from __future__ import annotations

import fcntl
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from patchvad.data.folder import GroundTruth, write_manifest, write_tracks
from patchvad.io.video import write_video
from patchvad.predictions import VideoPrediction, write_prediction


def square_frames(n: int, size: tuple[int, int] = (64, 48), square: int = 10, seed: int = 0
                  ) -> tuple[list[np.ndarray], np.ndarray]:
    """A bright square moving right over a flat grey background; its inclusive boxes ``(n, 4)``."""
    w, h = size
    rng = np.random.default_rng(seed)
    background = np.full((h, w, 3), 90, dtype=np.uint8) + rng.integers(0, 8, (h, w, 1), dtype=np.uint8)
    frames, boxes = [], []
    for t in range(n):
        f = background.copy()
        x0 = (2 + t) % (w - square)
        y0 = h // 2 - square // 2
        f[y0:y0 + square, x0:x0 + square] = (200, 200, 60)
        frames.append(f)
        boxes.append((x0, y0, x0 + square - 1, y0 + square - 1))
    return frames, np.asarray(boxes, dtype=np.int64)


def synthetic_prediction(n: int, boxes: np.ndarray, gt_span: tuple[int, int], grid: tuple[int, int] = (6, 8),
                         snippet_len: int = 8, size: tuple[int, int] = (64, 48), seed: int = 0,
                         stem: str = "v") -> VideoPrediction:
    """Scores high inside ``gt_span``, one box per frame on the square, maps hot at the square."""
    rng = np.random.default_rng(seed)
    a, b = gt_span
    scores = np.clip(0.2 + 0.6 * ((np.arange(n) >= a) & (np.arange(n) < b)) + rng.normal(0, 0.03, n), 0, 1)
    t_count = -(-n // snippet_len)
    f2s = np.minimum(np.arange(n) // snippet_len, t_count - 1)
    maps = np.full((t_count, *grid), 0.05, dtype=np.float32)
    w, h = size
    for t in range(t_count):
        x1, y1, x2, y2 = boxes[min(t * snippet_len, n - 1)]
        maps[t, int((y1 + y2) / 2 * grid[0] / h), int((x1 + x2) / 2 * grid[1] / w)] = 0.95
    rows = np.column_stack([np.arange(n), boxes, scores]).astype(np.float64)
    return VideoPrediction(stem=stem, path=Path("."), frame_scores=scores, boxes=rows, maps=maps,
                           frame_to_snippet=f2s.astype(np.int64))


def ground_truth(n: int, boxes: np.ndarray, gt_span: tuple[int, int], size: tuple[int, int] = (64, 48)
                 ) -> GroundTruth:
    a, b = gt_span
    labels = np.zeros(n, dtype=np.uint8)
    labels[a:b] = 1
    regions = np.array([[0, f, *boxes[f]] for f in range(a, b)], dtype=np.int64).reshape(-1, 6)
    return GroundTruth(frame_labels=labels, regions=regions, width=size[0], height=size[1])


def tiny_dataset_with_predictions(root: Path, methods: dict[str, float], n_frames: int = 32
                                  ) -> tuple[Path, dict[str, Path]]:
    """Three test videos (two anomalous) and one predictions folder per method.

    ``methods`` maps a method name to its quality in [0, 1] (how well its scores and
    boxes follow the ground truth).
    """
    data = root / "data"
    rows, gts, squares = [], {}, {}
    for i in range(3):
        stem = f"test_{i:02d}"
        label = int(i != 1)
        frames, boxes = square_frames(n_frames, seed=i)
        write_video(data / "videos" / f"{stem}.mp4", frames, fps=25)
        rows.append({"video": f"videos/{stem}.mp4", "split": "test", "label": label,
                     "class": "square" if label else "normal"})
        span = (8, 24) if label else (0, 0)
        if label:
            write_tracks(data, stem, [(0, f, *boxes[f]) for f in range(*span)])
        gts[stem], squares[stem] = span, boxes
    write_manifest(data, rows)
    pred_dirs = {}
    for k, (method, q) in enumerate(methods.items()):
        d = root / "pred" / method
        for stem, span in gts.items():
            p = synthetic_prediction(n_frames, squares[stem], span, seed=k)
            rng = np.random.default_rng(100 + k)
            scores = np.clip(q * p.frame_scores + (1 - q) * rng.random(n_frames), 0, 1)
            boxes = p.boxes.copy()
            boxes[:, 5] = scores
            if q < 0.5:
                boxes[:, 1:5] = (0, 0, 20, 20)
            write_prediction(d, stem, scores, boxes, p.maps, p.frame_to_snippet)
        pred_dirs[method] = d
    return data, pred_dirs


# --- headless Chromium over the DevTools protocol ------------------------------------

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_chromium() -> str | None:
    """``$PATCHVAD_CHROMIUM`` or the first Chromium / Chrome on PATH."""
    env = os.environ.get("PATCHVAD_CHROMIUM")
    if env:
        return env
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


class CDPError(RuntimeError):
    pass


class Chromium:
    """Headless Chromium driven over ``--remote-debugging-pipe``.

    Usage::

        with Chromium(exe, tmp_path) as browser:
            page = browser.open("file:///.../report.html")
            value = browser.evaluate(page, "document.title")
            browser.errors          # console errors, exceptions, failed loads
    """

    def __init__(self, exe: str, workdir: Path, timeout: float = 30.0):
        self.timeout = timeout
        self.errors: list[str] = []
        self.messages: list[str] = []
        self._events: queue.Queue = queue.Queue()
        self._replies: dict[int, dict] = {}
        self._cond = threading.Condition()
        self._next_id = 0
        workdir.mkdir(parents=True, exist_ok=True)
        self.stderr_path = workdir / "chromium.stderr.txt"
        # Pipes kept at fd >= 10 in the parent so that the child's dup2 to 3 and 4
        # never overwrites one of them.
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        hi = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_child_r, from_child_w)]
        os.close(to_child_r)
        os.close(from_child_w)
        child_in, child_out = hi

        def wire() -> None:  # runs in the child before exec
            os.dup2(child_in, 3)
            os.dup2(child_out, 4)

        args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-extensions", "--no-first-run", "--no-default-browser-check", "--mute-audio",
                "--remote-debugging-pipe", f"--user-data-dir={workdir / 'profile'}", "about:blank"]
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                         pass_fds=(3, 4), preexec_fn=wire, start_new_session=True)
        os.close(child_in)
        os.close(child_out)
        self._w = os.fdopen(to_child_w, "wb", buffering=0)
        self._r = os.fdopen(from_child_r, "rb", buffering=0)
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()

    # -- transport --
    def _read_loop(self) -> None:
        buf = b""
        while True:
            try:
                chunk = self._r.read(65536)
            except OSError:
                chunk = b""
            if not chunk:
                with self._cond:
                    self._cond.notify_all()
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                if "id" in msg:
                    with self._cond:
                        self._replies[msg["id"]] = msg
                        self._cond.notify_all()
                else:
                    self._on_event(msg)

    def _on_event(self, msg: dict) -> None:
        method, params = msg.get("method", ""), msg.get("params", {})
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            self.messages.append(f"console.{params.get('type')}: {text}")
            if params.get("type") in ("error", "assert"):
                self.errors.append(f"console.{params.get('type')}: {text}")
        elif method == "Runtime.exceptionThrown":
            d = params.get("exceptionDetails", {})
            self.errors.append(f"exception: {d.get('text')} {d.get('exception', {}).get('description', '')}")
        elif method == "Log.entryAdded":
            e = params.get("entry", {})
            self.messages.append(f"log.{e.get('level')}: {e.get('text')} {e.get('url', '')}")
            if e.get("level") == "error":
                self.errors.append(f"log: {e.get('text')} {e.get('url', '')}")
        self._events.put(msg)

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float | None = None) -> dict:
        with self._cond:
            self._next_id += 1
            mid = self._next_id
        msg: dict[str, Any] = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self._w.write(json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + (timeout or self.timeout)
        with self._cond:
            while mid not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise CDPError(f"no reply to {method} (chromium stderr: {self.stderr_tail()})")
                self._cond.wait(min(left, 0.5))
            reply = self._replies.pop(mid)
        if "error" in reply:
            raise CDPError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def wait_event(self, method: str, session: str | None = None, timeout: float | None = None) -> dict:
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CDPError(f"timed out waiting for {method}")
            try:
                msg = self._events.get(timeout=min(left, 0.5))
            except queue.Empty:
                if self.proc.poll() is not None:
                    raise CDPError(f"chromium exited while waiting for {method}: {self.stderr_tail()}") from None
                continue
            if msg.get("method") == method and (session is None or msg.get("sessionId") == session):
                return msg.get("params", {})

    def stderr_tail(self, n: int = 2000) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    # -- pages --
    def open(self, url: str) -> str:
        """Open ``url`` in a new tab with console / log capture on; wait for its load event."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime.enable", "Log.enable", "Page.enable"):
            self.send(domain, session=session)
        self.send("Page.navigate", {"url": url}, session=session)
        self.wait_event("Page.loadEventFired", session=session)
        return session

    def evaluate(self, session: str, expression: str, timeout: float | None = None) -> Any:
        """Evaluate JS (promises awaited) and return its JSON value."""
        res = self.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                             "returnByValue": True}, session=session, timeout=timeout)
        if "exceptionDetails" in res:
            raise CDPError(f"evaluation failed: {res['exceptionDetails']}")
        return res.get("result", {}).get("value")

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.send("Browser.close", timeout=5)
        except (CDPError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for f in (self._w, self._r):
            try:
                f.close()
            except OSError:
                pass

    def __enter__(self) -> "Chromium":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# What the page looks like from inside the browser: tables, images decoded, video metadata.
PAGE_PROBE = r"""
(async () => {
  const imgs = [...document.images];
  await Promise.all(imgs.map(i => i.complete ? i.decode().catch(() => null)
                                             : new Promise(r => { i.onload = i.onerror = r; })));
  const vids = [...document.querySelectorAll('video')];
  const meta = await Promise.all(vids.map(v => new Promise(resolve => {
    const done = (why) => resolve({why, duration: v.duration, readyState: v.readyState,
                                   width: v.videoWidth, height: v.videoHeight,
                                   error: v.error ? v.error.code : null, src: v.currentSrc});
    if (v.error) return done('error');
    if (v.readyState >= 2) return done('ready');
    const timer = setTimeout(() => done('timeout'), 15000);
    v.addEventListener('loadeddata', () => { clearTimeout(timer); done('loadeddata'); }, {once: true});
    v.addEventListener('error', () => { clearTimeout(timer); done('error'); }, {once: true});
    if (v.preload === 'none') v.load();
  })));
  const table = document.getElementById('results');
  return {
    title: document.title,
    tableVisible: !!table && table.offsetHeight > 0,
    tableRows: table ? [...table.tBodies[0].rows].map(r => r.dataset.method || '') : [],
    cells: [...document.querySelectorAll('#results td[data-mean]')].map(td =>
      ({method: td.parentElement.dataset.method, metric: td.dataset.metric, mean: td.dataset.mean,
        text: td.textContent})),
    verdict: (document.getElementById('verdict') || {}).textContent || null,
    images: imgs.map(i => ({w: i.naturalWidth, h: i.naturalHeight, complete: i.complete,
                            shown: i.getBoundingClientRect().width, alt: i.alt})),
    videos: meta,
    h264Baseline: document.createElement('video').canPlayType('video/mp4; codecs="avc1.42E01E"'),
    h264High: document.createElement('video').canPlayType('video/mp4; codecs="avc1.64001F"'),
  };
})()
"""
