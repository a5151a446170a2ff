"""The server under load: continuous batching against one request at a time, in one run.

    .venv/bin/python benchmarks/serve_load.py --preset small --quantize int8 --clients 1 2 4 8 16 --seconds 30
    .venv/bin/python benchmarks/serve_load.py --ckpt outputs/demo/model.pt --voices outputs/demo/voices

Starts `python -m valle.serve` twice on localhost, with `batching=true` and with `batching=false`
(`max_rows=1`: requests wait their turn), and for each number of concurrent clients runs that many client
threads for `--seconds`, each sending streamed requests (`stream=true`, pcm; `--whole`: `stream=false`)
back to back. Prints per
setting: throughput (seconds of audio delivered per second of wall time), p50/p95 time to first audio
(the first body byte) and p50/p95 total latency; then batching's throughput over sequential's.

Without `--ckpt`, the model is `--preset` with random weights and EnCodec's architecture at random init
(8 levels at 75 frames/s): the stop logit is masked, so every request says exactly `--frames` frames and
both servers get the same work. With `--ckpt` (e.g. the demo's model) requests say real sentences and
stop on their own.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
import torch

SENTENCES = [
    "The garden gate was left open all night.",
    "Please send me a message when you arrive.",
    "I was too excited to sleep last night.",
    "The train leaves the station at noon.",
]


def random_export(folder: Path, preset: str) -> Path:
    """A `preset` model with random weights (stop masked) and a random-init EnCodec, as an export file."""
    from valle.card import ModelCard
    from valle.codecs import build_codec
    from valle.export import save_export
    from valle.models.config import ValleConfig
    from valle.models.valle import Valle
    from valle.text import SymbolMap, phonemize

    codec = build_codec("encodec", bandwidth_kbps=6.0, weights="random")
    symbols = SymbolMap.build([phonemize(" ".join(SENTENCES))], ["en-us"])
    torch.manual_seed(0)
    model = Valle(getattr(ValleConfig, preset)().with_data(len(symbols), codec.n_levels, codec.codebook_size))
    with torch.no_grad():
        model.ar.heads.bias[0, -1] = -1e4
    return save_export(
        model.state_dict(), ModelCard(model.config, symbols, codec.info, {}), folder / "model.pt"
    )


def random_voice(folder: Path) -> Path:
    """A built-in voice folder with one 3 s recording (a real one from the repository's fixtures)."""
    import shutil

    source = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "real-speech"
    voices = folder / "voices"
    voices.mkdir()
    shutil.copy(sorted(source.glob("*.wav"))[0], voices / "speaker.wav")
    return voices


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """`python -m valle.serve` in a subprocess, until `close`."""

    def __init__(self, ckpt: Path, voices: Path, batching: bool, quantize: str | None, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [
            sys.executable, "-m", "valle.serve", f"ckpt={ckpt}", f"port={self.port}",
            f"builtin_voices={voices}", f"voices_dir={workdir / f'uploads-{self.port}'}",
            f"batching={str(batching).lower()}", "max_rows=16", "max_queue=256", "log_level=warning",
        ]  # fmt: skip
        if quantize:
            command.append(f"quantize={quantize}")
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the server exited: {self.process.stderr.read() if self.process.stderr else ''}"
                )
            try:
                if requests.get(f"{self.url}/health", timeout=1).ok:
                    return
            except requests.ConnectionError:
                time.sleep(0.5)
        raise RuntimeError("the server did not start in 180 s")

    def voice(self) -> str:
        return requests.get(f"{self.url}/v1/voices", timeout=30).json()["voices"][0]["id"]

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def client(url: str, voice: str, body: dict, until: float, rate: int, results: list, index: int) -> None:
    n = index
    while time.monotonic() < until:
        request = {**body, "input": SENTENCES[n % len(SENTENCES)], "voice": voice, "seed": n}
        n += 1
        start = time.monotonic()
        first, size = None, 0
        with requests.post(f"{url}/v1/audio/speech", json=request, stream=True, timeout=600) as response:
            response.raise_for_status()
            for chunk in response.iter_content(chunk_size=None):
                first = first or time.monotonic() - start
                size += len(chunk)
        results.append((first or 0.0, time.monotonic() - start, size / 2 / rate))


def run_load(served: Served, clients: int, seconds: float, body: dict) -> dict:
    voice, rate = served.voice(), requests.get(f"{served.url}/health", timeout=30).json()["sample_rate"]
    results: list = []
    start = time.monotonic()
    until = start + seconds
    threads = [
        threading.Thread(target=client, args=(served.url, voice, body, until, rate, results, i * 1000))
        for i in range(clients)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - start  # requests that started before `until` finish: counted whole
    firsts, totals = sorted(r[0] for r in results), sorted(r[1] for r in results)
    q = lambda values, p: values[min(len(values) - 1, int(p * len(values)))]  # noqa: E731
    return {
        "requests": len(results),
        "throughput": sum(r[2] for r in results) / wall,
        "ttfa50": statistics.median(firsts),
        "ttfa95": q(firsts, 0.95),
        "total50": statistics.median(totals),
        "total95": q(totals, 0.95),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ckpt", type=Path, help="a model file (default: --preset with random weights)")
    parser.add_argument("--voices", type=Path, help="built-in voices folder for --ckpt")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--quantize", default="int8", help="int8 or none")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--frames", type=int, default=150, help="frames per request (random model)")
    parser.add_argument(
        "--whole", action="store_true", help="ask for whole audio (stream=false): one NAR pass"
    )
    args = parser.parse_args()
    quantize = None if args.quantize == "none" else args.quantize
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        ckpt = args.ckpt or random_export(workdir, args.preset)
        voices = args.voices or random_voice(workdir)
        body = {"stream": not args.whole, "response_format": "pcm", "temperature": 0.8, "top_p": 0.9}
        if args.ckpt is None:
            body["sampler"] = {"max_ar_steps": args.frames}
        print(
            f"{ckpt if args.ckpt else f'{args.preset} (random weights)'}, quantize={quantize}; "
            f"{os.cpu_count()} CPUs; {args.seconds:g} s per setting"
        )
        table: dict[tuple[bool, int], dict] = {}
        for batching in (True, False):
            served = Served(ckpt, voices, batching, quantize, workdir)
            try:
                run_load(served, 1, min(5.0, args.seconds), body)  # warm-up
                for clients in args.clients:
                    row = run_load(served, clients, args.seconds, body)
                    table[batching, clients] = row
                    mode = "on " if batching else "off"
                    print(
                        f"batching={mode} clients={clients:2d} | {row['requests']:4d} requests | "
                        f"{row['throughput']:6.2f} audio s/s | TTFA p50 {row['ttfa50']:6.2f} s "
                        f"p95 {row['ttfa95']:6.2f} s | total p50 {row['total50']:6.2f} s "
                        f"p95 {row['total95']:6.2f} s",
                        flush=True,
                    )
            finally:
                served.close()
        for clients in args.clients:
            on, off = table[True, clients], table[False, clients]
            print(
                f"clients={clients:2d}: throughput batching / sequential = "
                f"{on['throughput'] / off['throughput']:.2f}x"
            )


if __name__ == "__main__":
    main()
