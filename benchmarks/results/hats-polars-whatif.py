"""What-if for issue 14: formatting doubles as text, pyarrow (its cast, its CSV writer) vs polars' CSV writer.

Not part of qdask (polars is not one of its dependencies); run with a Python that has polars and pyarrow,
one thread:

    POLARS_MAX_THREADS=1 /work/hats-venv/bin/python benchmarks/results/hats-polars-whatif.py

Prints CPU ns per value for 500k x 40 doubles of 15-17 significant digits, and checks that polars' text
reads back as the same doubles (bit for bit) on the first 2,000 rows.
"""

import time

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.csv as csv

rng = np.random.default_rng(3)
n, k = 500_000, 40
cols = {f"c{i}": rng.lognormal(5, 2, n) * (1 + rng.standard_normal(n)) for i in range(k)}
t = pa.table(cols)


def cpu(f):
    c0 = time.process_time()
    out = f()
    return time.process_time() - c0, out


c, _ = cpu(lambda: [t.column(i).cast(pa.string()) for i in range(k)])
print(f"pyarrow cast            {c:.2f} CPU s  {1e9 * c / (n * k):.0f} ns/value")
opts = csv.WriteOptions(include_header=False, delimiter="\t", null_string="\\N", quoting_style="none")
c, _ = cpu(lambda: csv.write_csv(t, pa.BufferOutputStream(), opts))
print(f"pyarrow csv writer      {c:.2f} CPU s  {1e9 * c / (n * k):.0f} ns/value")
df = pl.from_arrow(t)
c, text = cpu(
    lambda: df.write_csv(separator="\t", include_header=False, null_value="\\N", quote_style="never")
)
threads = pl.thread_pool_size()
print(f"polars write_csv        {c:.2f} CPU s  {1e9 * c / (n * k):.0f} ns/value, threads {threads}")
lines = text.splitlines()[:2000]
back = np.array([[float(x) for x in line.split("\t")] for line in lines])
want = np.column_stack([cols[f"c{i}"][:2000] for i in range(k)])
print("polars round-trips exactly:", np.array_equal(back.view(np.int64), want.view(np.int64)))
