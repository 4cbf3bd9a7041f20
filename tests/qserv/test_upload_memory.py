"""A contribution is streamed from disk: uploading a 320 MiB file grows the client's memory by far less.

The upload runs in a fresh subprocess (so nothing else in the test session pollutes its memory) to a real
loopback HTTP server that reads the multipart body in 64 KiB pieces. The child resets the kernel's peak-RSS
mark just before the upload (`peak_memory`), then reports its resident size, the peak after the upload
(`VmHWM`) and the highest of psutil samples taken every 5 ms during it.
A control run makes the same child buffer the file first, proving the measure would catch buffering.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from peak_memory import CHILD_SOURCE

SIZE = 320 * 2**20
BOUND = 64 * 2**20

CHILD = r"""
import json, sys, threading
import psutil
import qdask.qserv.transport as transport
from qdask.qserv import QservClient

url, worker, path, mode = sys.argv[1:5]
if mode == "buffered":  # what a client reading the whole file would do
    class Buffered:
        def __init__(self, fh, digest=None):
            self.data = fh.read()
            self.pos = 0
            self.digest = digest
        def read(self, size=-1):
            size = len(self.data) if size is None or size < 0 else size
            out = self.data[self.pos:self.pos + size]
            self.pos += len(out)
            if self.digest is not None:
                self.digest.update(out)
            return out
        def seek(self, *a):
            self.pos = 0
        def fileno(self):
            raise OSError
        def tell(self):
            return self.pos
    transport._BlockReader = Buffered
qc = QservClient(url, "key")
qc.check_version(worker)
proc = psutil.Process()
samples, done = [], threading.Event()

def sample():  # a second, independent measure: resident size every 5 ms during the upload
    while not done.wait(0.005):
        samples.append(proc.memory_info().rss)

before = mark_peak()  # the peak from here on covers the upload only
sampler = threading.Thread(target=sample)
sampler.start()
c = qc.ingest_csv(worker, 7, "Object", path, chunk=57)
done.set()
sampler.join()
peak = peak_since_mark()
print(json.dumps({"before": before, "peak": peak, "sampled": max(samples, default=before),
                  "num_bytes": c.num_bytes}))
"""


def run_child(server, path, mode: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD_SOURCE + CHILD, server.url, server.worker_url, str(path), mode],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("upload") / "chunk_57.txt"
    line = b"123456789\t0.1234567890123\t-45.678901234567\tsome text\n"
    block = line * (2**20 // len(line))
    with open(path, "wb") as fh:
        while fh.tell() < SIZE:
            fh.write(block)
    return path


def test_csv_upload_memory_stays_far_below_file_size(fake_qserv, big_file):
    size = big_file.stat().st_size
    fake_qserv.route(
        "POST",
        "/ingest/csv",
        lambda rec: {"contrib": {"status": "FINISHED", "num_bytes": rec.parts[-1]["size"]}},
    )
    streamed = run_child(fake_qserv, big_file, "streamed")
    assert streamed["num_bytes"] == size  # the server received the whole file
    for measure in ("peak", "sampled"):
        growth = streamed[measure] - streamed["before"]
        assert growth < BOUND, f"{measure}: grew {growth / 2**20:.0f} MiB for a {size / 2**20:.0f} MiB upload"

    buffered = run_child(fake_qserv, big_file, "buffered")
    assert buffered["num_bytes"] == size
    for measure in ("peak", "sampled"):  # both measures do catch a buffering client
        assert buffered[measure] - buffered["before"] > size
