"""`fastrec bench`: the sweep's rows, its outputs, its metrics (against scikit-image) and its errors."""
from __future__ import annotations

import csv
import io
import itertools
import json
import math

import numpy as np
import pytest
from PIL import Image

from fastrec.reports import bench, margins
from fastrec.reports.bench import BenchError, BenchOptions, Row, Setting
from fastrec.cli import main
from fastrec.reports.metrics import PSNR_CAP, psnr, ssim, ssim_window
from fastrec.demo.samples import make_tree

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SWEEP = dict(quality="80,95", subsampling="420,444", dct="accurate,fast", filter="lanczos",
             upscale="yes,no", passes=1, metric_sample=6, progress="off", out=None)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench") / "images"
    make_tree(root, classes=2, per_class=(4, 5), sizes="mixed", seed=0)
    return root


@pytest.fixture(scope="module")
def result(tree):
    return bench.sweep(str(tree), **SWEEP)


def _by(rows, **kw):
    return [r for r in rows if all(getattr(r, k) == v for k, v in kw.items())]


# ---------------------------------------------------------------- the sweep
def test_one_row_per_combination(result, tree):
    opts = result.options
    combos = list(itertools.product((80, 95), (420, 444), ("accurate", "fast"), ("lanczos",), (True, False)))
    assert [(r.quality, r.subsampling, r.dct, r.filter, r.upscale) for r in result.rows] == combos
    n_files = sum(1 for _ in tree.rglob("*.JPEG"))
    assert result.total_images == n_files
    assert len(result.sampled) + len(result.excluded) == min(opts.sample, n_files)
    for r in result.rows:
        assert r.images == len(result.sampled) and r.failed == 0
        assert r.metric_images == min(6, len(result.sampled))
        assert r.images_per_s_per_core > 0
        assert 1024 < r.bytes_per_image < 2 ** 20
        assert r.projected_bytes == pytest.approx(r.bytes_per_image * n_files)
        assert 25 < r.psnr_db < 70, r
        assert 0.7 < r.ssim <= 1.0, r


def test_quality_buys_bytes_and_fidelity(result):
    for sub, dct, up in itertools.product((420, 444), ("accurate", "fast"), (True, False)):
        lo, = _by(result.rows, quality=80, subsampling=sub, dct=dct, upscale=up)
        hi, = _by(result.rows, quality=95, subsampling=sub, dct=dct, upscale=up)
        assert hi.bytes_per_image > lo.bytes_per_image * 1.3
        assert hi.psnr_db > lo.psnr_db + 1
        assert hi.ssim > lo.ssim


def test_444_costs_more_bytes_than_420(result):
    for q, dct, up in itertools.product((80, 95), ("accurate", "fast"), (True, False)):
        s420, = _by(result.rows, quality=q, subsampling=420, dct=dct, upscale=up)
        s444, = _by(result.rows, quality=q, subsampling=444, dct=dct, upscale=up)
        assert s444.bytes_per_image > s420.bytes_per_image
        assert s444.psnr_db > s420.psnr_db


def test_no_upscale_stores_fewer_bytes(result):
    # the mixed tree has images smaller than 480 on the short edge; kept small, they cost less
    for q, sub, dct in itertools.product((80, 95), (420, 444), ("accurate", "fast")):
        up, = _by(result.rows, quality=q, subsampling=sub, dct=dct, upscale=True)
        keep, = _by(result.rows, quality=q, subsampling=sub, dct=dct, upscale=False)
        assert keep.bytes_per_image < up.bytes_per_image


def test_pareto_front_is_the_undominated_set_per_upscale_mode(result):
    """Upscaling and keeping small images measure PSNR against different references: two fronts."""
    for up in (True, False):
        group = _by(result.rows, upscale=up)
        assert any(r.pareto for r in group)
        for r in group:
            dominated = any(q.bytes_per_image <= r.bytes_per_image and q.psnr_db >= r.psnr_db and
                            (q.bytes_per_image < r.bytes_per_image or q.psnr_db > r.psnr_db) for q in group)
            assert r.pareto == (not dominated)


def test_plot_has_a_panel_and_a_front_per_upscale_mode_and_marks_both_defaults(tree):
    pytest.importorskip("matplotlib")
    res = bench.sweep(str(tree), **dict(SWEEP, quality="90,95", subsampling="420", dct="accurate",
                                        filter="auto", metric_sample=3))
    fig = bench.plot_figure(res)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == [title for _, title, _ in bench.PANELS]
    for ax in panels:
        notes = " ".join(t.get_text() for t in ax.texts)
        assert "seed default" in notes and "im2rec default (q95)" in notes, notes
        assert [line.get_label() for line in ax.get_lines()] == ["Pareto front (size vs PSNR)"]


def test_sample_is_seeded_and_bounded(tree):
    kw = dict(SWEEP, quality=90, subsampling=420, dct="accurate", upscale="yes", sample=4)
    a = bench.sweep(str(tree), **kw)
    b = bench.sweep(str(tree), **kw)
    c = bench.sweep(str(tree), **dict(kw, seed=1))
    assert a.sampled == b.sampled and len(a.sampled) == 4
    assert c.sampled != a.sampled
    assert a.rows[0].seed_default and a.rows[0].metric_images == 4


def test_marks_defaults():
    def row(q, sub=420, dct="accurate", filt="auto", up=True, size=1000.0, db=40.0):
        return Row(q, sub, dct, filt, up, 100.0, size, size * 10, db, 0.9, 10, 10, 10)
    rows = [row(90), row(90, filt="triangle"), row(95, size=2000, db=42), row(90, up=False, size=500, db=39)]
    bench.mark(rows)
    assert [r.seed_default for r in rows] == [True, False, False, False]
    assert [r.im2rec_default for r in rows] == [False, False, True, False]
    assert [r.pareto for r in rows] == [True, True, True, True]
    rows = [row(90), row(90, up=False, size=500, db=41)]   # a smaller, "better" no-upscale row
    bench.mark(rows)                                        # does not dominate: another reference
    assert [r.pareto for r in rows] == [True, True]
    rows = [row(90, filt="triangle"), row(90, filt="bicubic", size=900)]  # no exact seed setting
    bench.mark(rows)
    assert [r.seed_default for r in rows] == [True, True]
    assert [r.pareto for r in rows] == [False, True]


def test_unreadable_files_are_left_out(tmp_path):
    make_tree(tmp_path, classes=1, per_class=(2, 2), sizes="imagenet", seed=3)
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg at all" * 10)
    res = bench.sweep(str(tmp_path), **dict(SWEEP, quality=90, subsampling=420, dct="accurate", upscale="yes"))
    assert res.total_images == 3 and len(res.sampled) == 2
    assert [e[0] for e in res.excluded] == ["broken.jpg"]
    assert res.rows[0].images == 2


# ---------------------------------------------------------------- outputs
def test_outputs_csv_json_png(result, tmp_path):
    pytest.importorskip("matplotlib")
    csv_path, json_path, png_path = bench.write_outputs(result, str(tmp_path / "out"))
    data = open(png_path, "rb").read()
    assert data[:8] == PNG_SIGNATURE
    with Image.open(io.BytesIO(data)) as im:
        im.verify()
    with Image.open(png_path) as im:
        assert im.format == "PNG" and im.size[0] > 400 and im.size[1] > 300
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(result.rows)
    assert {r["subsampling"] for r in rows} == {"4:2:0", "4:4:4"}
    assert float(rows[0]["kib_per_image"]) == pytest.approx(result.rows[0].kib_per_image)
    doc = json.load(open(json_path))
    assert len(doc["rows"]) == len(result.rows)
    assert doc["total_images"] == result.total_images and doc["metric_images"] == 6
    assert doc["rows"][0]["psnr_db"] == pytest.approx(result.rows[0].psnr_db)


def test_cli_prints_table_and_writes_files(tree, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "res"
    rc = main(["bench", str(tree), "--quality", "90", "--subsampling", "420", "--dct", "accurate",
               "--filter", "lanczos,triangle", "--upscale", "yes", "--passes", "1", "--metric-sample", "3",
               "--sample", "5", "--out", str(out), "--progress", "off"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "img/s/core" in text and "seed default" in text and "PSNR/SSIM on 3 of 5 images" in text
    assert sorted(p.name for p in out.iterdir()) == ["bench.csv", "bench.json", "bench.png"]
    assert (out / "bench.png").read_bytes()[:8] == PNG_SIGNATURE


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("kw, words", [
    (dict(subsampling="411"), ["subsampling", "411", "420"]),
    (dict(subsampling="420,4:1:1"), ["subsampling", "4:1:1"]),
    (dict(quality="0"), ["quality", "0", "1..100"]),
    (dict(quality="90,101"), ["quality", "101", "1..100"]),
    (dict(quality="high"), ["quality", "high"]),
    (dict(quality=""), ["quality", "at least one"]),
    (dict(dct="medium"), ["dct", "medium", "accurate"]),
    (dict(filter="nearest"), ["filter", "nearest", "lanczos"]),
    (dict(upscale="maybe"), ["upscale", "maybe", "yes"]),
    (dict(reference="cubic"), ["reference", "cubic"]),
    (dict(sample=0), ["sample", "at least 1"]),
    (dict(threads=0), ["threads", "at least 1"]),
    (dict(resize=-1), ["resize", "at least 0"]),
    (dict(progress="sometimes"), ["progress", "sometimes"]),
])
def test_bad_options(kw, words):
    with pytest.raises(BenchError) as err:
        BenchOptions.make(**kw)
    for w in words:
        assert w in str(err.value)


def test_options_accept_python_values():
    o = BenchOptions.make(quality=[95, 90, 95], subsampling=["4:4:4", 420], upscale=False, dct="FAST")
    assert o.quality == (95, 90) and o.subsampling == (444, 420) and o.upscale == (False,)
    assert o.dct == ("fast",)
    assert o.settings()[0] == Setting(95, 444, "fast", "auto", False)


def test_empty_or_missing_tree(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(BenchError, match="no images"):
        bench.sweep(str(tmp_path / "empty"), progress="off", out=None)
    with pytest.raises(BenchError, match="does not exist"):
        bench.sweep(str(tmp_path / "missing"), progress="off", out=None)


@pytest.mark.parametrize("args, words", [
    (["--subsampling", "411"], ["subsampling", "411"]),
    (["--quality", "0"], ["quality", "1..100"]),
    (["--sample", "0"], ["sample"]),
    (["--dct", "slow"], ["dct"]),
])
def test_cli_errors_exit_2_without_traceback(tree, args, words, capsys):
    assert main(["bench", str(tree), "--progress", "off", "--out", ""] + args) == 2
    err = capsys.readouterr().err
    assert err.startswith("fastrec bench: error:") and "Traceback" not in err
    for w in words:
        assert w in err


def test_cli_empty_tree_exit_2(tmp_path, capsys):
    assert main(["bench", str(tmp_path), "--progress", "off", "--out", ""]) == 2
    err = capsys.readouterr().err
    assert "no images" in err and "Traceback" not in err


# ---------------------------------------------------------------- metrics vs scikit-image
def _pairs():
    rng = np.random.default_rng(7)
    for shape in [(480, 640, 3), (37, 53, 3), (7, 9, 3), (5, 6, 3), (33, 20)]:
        a = rng.integers(0, 256, shape).astype(np.uint8)
        for noise in (1, 12, 200):
            b = np.clip(a.astype(int) + rng.integers(-noise, noise + 1, shape), 0, 255).astype(np.uint8)
            yield a, b
    # a real photo-like image and its JPEG re-encode
    root_img = Image.fromarray(rng.integers(0, 256, (60, 80, 3)).astype(np.uint8)).resize((320, 240))
    buf = io.BytesIO()
    root_img.save(buf, "JPEG", quality=70)
    yield np.asarray(root_img), np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def test_metrics_equal_scikit_image():
    skm = pytest.importorskip("skimage.metrics")
    for a, b in _pairs():
        win = ssim_window(a.shape)
        kw = {"channel_axis": 2} if a.ndim == 3 else {}
        want = skm.structural_similarity(a, b, data_range=255, win_size=win, **kw)
        assert ssim(a, b, win) == pytest.approx(want, abs=1e-6)
        assert psnr(a, b) == pytest.approx(skm.peak_signal_noise_ratio(a, b, data_range=255), rel=1e-12)


def test_metric_edge_cases():
    a = np.full((20, 30, 3), 200, np.uint8)
    assert psnr(a, a) == PSNR_CAP and ssim(a, a) == pytest.approx(1.0)
    assert ssim_window((2, 100, 3)) == 0 and ssim_window((4, 100)) == 3 and ssim_window((480, 640, 3)) == 7
    with pytest.raises(ValueError):
        psnr(a, a[:, :29])
    with pytest.raises(ValueError):
        ssim(a, a, win=4)
    assert not math.isnan(psnr(a, 255 - a))


# ---------------------------------------------------------------- advice beyond noise
def _stub(q=90, sub=420, filt="auto", rates=(100.0,) * 5, sizes=(), psnrs=(), ssims=()):
    """A row with per-round rates and per-image values, as sweep() fills them."""
    r = Row(q, sub, "accurate", filt, True, float(np.median(rates)), float(np.mean(sizes)), 0.0,
            float(np.mean(psnrs)), float(np.mean(ssims)), len(sizes), len(psnrs), len(ssims))
    r.rates, r.image_bytes, r.image_psnr, r.image_ssim = list(rates), list(sizes), list(psnrs), list(ssims)
    return r


def _judged(*rows):
    rows = list(rows)
    bench.mark(rows)
    bench.judge(rows, margins.Bootstrap(len(rows[0].image_bytes), seed=0))
    return rows


def test_same_setting_twice_is_not_recommended(tmp_path, capsys, monkeypatch):
    """The seed's setting swept twice: identical outputs, timings that differ only by noise."""
    root = tmp_path / "img"
    make_tree(root, classes=1, per_class=(8, 8), sizes="imagenet", seed=5)
    out = tmp_path / "res"
    monkeypatch.setattr(BenchOptions, "settings", lambda self: [bench.SEED_DEFAULT, bench.SEED_DEFAULT])
    assert main(["bench", str(root), "--passes", "5", "--sample", "8", "--metric-sample", "8",
                 "--out", str(out), "--progress", "off"]) == 0
    text = capsys.readouterr().out
    doc = json.load(open(out / "bench.json"))
    base, twin = doc["rows"]
    assert base["baseline"] and not twin["baseline"]
    assert twin["image_bytes"] == base["image_bytes"] and twin["image_psnr"] == base["image_psnr"]
    assert twin["size_change_pct"] == 0 and twin["psnr_diff_db"] == 0
    assert twin["size_verdict"] == twin["psnr_verdict"] == twin["ssim_verdict"] == "within noise"
    assert len(twin["rates"]) == 5 and twin["speed_ratio_lo"] <= twin["speed_ratio"] <= twin["speed_ratio_hi"]
    assert not twin["recommended"] and not base["recommended"]
    assert "no setting beats q90 4:2:0 beyond noise on these 8 images; sample more with --sample" in text
    assert "to pack with it" not in text
    with open(out / "bench.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows[1]["size_verdict"] == "within noise" and rows[1]["recommended"] == "False"
    assert float(rows[1]["speed_ratio_lo"]) <= float(rows[1]["speed_ratio_hi"])


def test_a_tiny_quality_gain_inside_the_interval_is_noise():
    """The issue's case: 41.76 vs 41.74 dB is no gain when the per-image differences scatter."""
    rng = np.random.default_rng(1)
    sizes = rng.uniform(60e3, 90e3, 20)
    psnrs = rng.uniform(38, 44, 20)
    base = _stub(sizes=sizes, psnrs=psnrs, ssims=np.full(20, 0.95))
    other = _stub(q=91, sizes=sizes * rng.uniform(0.97, 1.03, 20), psnrs=psnrs + 0.02 + rng.normal(0, 0.3, 20),
                  ssims=np.full(20, 0.95))
    base, other = _judged(base, other)
    assert other.margins.psnr_diff.lo < 0 < other.margins.psnr_diff.hi
    assert not other.recommended and bench.recommendation_lines(bench.BenchResult(
        ".", BenchOptions(), 20, ["x"] * 20, rows=[base, other]))[0].startswith("no setting beats q90 4:2:0")


def test_clearly_smaller_without_loss_is_recommended_but_not_when_slower():
    rng = np.random.default_rng(2)
    sizes, psnrs, ssims = rng.uniform(60e3, 90e3, 20), rng.uniform(38, 44, 20), rng.uniform(0.9, 0.97, 20)
    base = _stub(sizes=sizes, psnrs=psnrs, ssims=ssims, rates=(100, 98, 103, 101, 99))
    smaller = _stub(sub=444, filt="lanczos", sizes=sizes * rng.uniform(0.85, 0.91, 20),
                    psnrs=psnrs + rng.normal(0, 0.05, 20), ssims=ssims, rates=(101, 97, 102, 103, 98))
    slower = _stub(q=80, sub=444, sizes=sizes * 0.9, psnrs=psnrs + 0.02, ssims=ssims,
                   rates=(84, 83, 85, 86, 82))  # the q80 4:4:4: 10 % smaller, 16 % slower
    base, smaller, slower = _judged(base, smaller, slower)
    assert base.baseline and not base.recommended
    assert smaller.margins.verdicts == {"speed": "within noise", "size": "better", "psnr": "within noise",
                                        "ssim": "within noise"}
    assert smaller.recommended
    assert slower.margins.verdicts["size"] == "better" and slower.margins.verdicts["speed"] == "worse"
    assert not slower.recommended
    lines = bench.recommendation_lines(bench.BenchResult(".", BenchOptions(), 20, ["x"] * 20,
                                                         rows=[base, smaller, slower]))
    assert lines[0].startswith("q90 4:4:4 accurate lanczos beats q90 4:2:0 accurate auto beyond noise on size")
    assert lines[1] == "  to pack with it: " + smaller.setting.pack_command(480)
    assert not any("q80" in line for line in lines)


def test_too_few_rounds_or_images_are_not_judged():
    base = _stub(sizes=[1000.0] * 3, psnrs=[40.0] * 3, ssims=[0.9] * 3, rates=(100.0, 100.0))
    other = _stub(q=80, sizes=[500.0] * 3, psnrs=[41.0] * 3, ssims=[0.95] * 3, rates=(200.0, 200.0))
    base, other = _judged(base, other)
    assert set(other.margins.verdicts.values()) == {margins.UNJUDGED} and not other.recommended
    lines = bench.recommendation_lines(bench.BenchResult(".", BenchOptions(passes=2), 3, ["x"] * 3,
                                                         rows=[base, other]))
    assert any("speed not judged" in line for line in lines)
    assert any("size or quality not judged" in line for line in lines)
