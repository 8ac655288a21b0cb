#!/usr/bin/env python3
"""Renders bench/run's plot from a fixed sample JSON and checks the PNG ImageMagick makes.

Fails if bench/run cannot draw the plot, if ImageMagick cannot render the SVG, or if the PNG
is small, blank, or has an empty panel (the plot has two: throughput above, latency below).
"""
import argparse
import os
import subprocess
import sys


def fail(msg):
    print(f"check_bench_plot: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench-run", required=True)
    ap.add_argument("--sample", required=True)
    ap.add_argument("--convert", required=True)
    ap.add_argument("--out-dir", required=True)
    a = ap.parse_args()
    if not a.convert or a.convert.endswith("NOTFOUND"):
        fail("ImageMagick's convert was not found (apt-get install imagemagick)")
    os.makedirs(a.out_dir, exist_ok=True)
    svg = os.path.join(a.out_dir, "bench.svg")
    png = os.path.join(a.out_dir, "bench.png")
    for p in (svg, png):
        if os.path.exists(p):
            os.remove(p)
    r = subprocess.run([sys.executable, a.bench_run, "--plot-from", a.sample, "--plot", svg])
    if r.returncode != 0 or not os.path.exists(svg):
        fail(f"bench/run --plot-from exited {r.returncode}")
    r = subprocess.run([a.convert, svg, png], capture_output=True, text=True)
    if r.returncode != 0 or not os.path.exists(png):
        fail(f"convert exited {r.returncode}: {r.stderr.strip()}")
    size = os.path.getsize(png)
    with open(png, "rb") as fh:
        if fh.read(8) != b"\x89PNG\r\n\x1a\n":
            fail("convert's output is not a PNG")
    if size < 10000:
        fail(f"the PNG is only {size} bytes")
    # Pixels as text: width, height, then one grey byte per pixel (PGM, 8 bit).
    r = subprocess.run([a.convert, png, "-colorspace", "Gray", "-depth", "8", "pgm:-"], capture_output=True)
    if r.returncode != 0:
        fail("convert cannot read the PNG back")
    data = r.stdout
    parts = data.split(maxsplit=4)
    if parts[0] != b"P5" or len(parts) < 5:
        fail("unexpected PGM output")
    w, h, pix = int(parts[1]), int(parts[2]), parts[4]
    if w < 600 or h < 500:
        fail(f"the PNG is {w}x{h}, expected the full plot")
    pix = pix[-w * h:]

    def inked(y0, y1):
        rows = pix[y0 * w:y1 * w]
        return sum(1 for v in rows if v < 128)

    total = inked(0, h)
    top, bottom = inked(h // 10, h // 2), inked(h // 2, h * 9 // 10)
    print(f"check_bench_plot: {png}: {w}x{h}, {size} bytes, dark pixels {total} (top half {top}, bottom {bottom})")
    if total < w * h // 200:
        fail("the PNG is (nearly) blank")
    if top < w * h // 400 or bottom < w * h // 400:
        fail("a panel is empty")


if __name__ == "__main__":
    main()
