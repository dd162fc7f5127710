"""The run report: figure files, a self-contained report.html, comparisons, bad input, and a real browser."""

from __future__ import annotations

import base64
import io
import os
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from matplotlib.image import imread

from reparam import latents
from reparam.model import build
from reparam.report import figures, latent, space, write_comparison, write_report
from reparam.report.run import RunView, open_run
from tests.conftest import ROOT, tiny_config
from tests.helpers import assert_user_error, in_process

PNG = b"\x89PNG\r\n\x1a\n"
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = Path(os.environ.get("REPARAM_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]  # fmt: skip
ALWAYS = {"curves", "kl_per_dim", "reconstructions", "samples", "traversals", "interpolations", "codes"}


def read_png(payload: bytes):
    """Decode PNG bytes (fails on anything that is not a valid PNG): (H, W[, C]) floats."""
    assert payload.startswith(PNG)
    return imread(io.BytesIO(payload), format="png")


@pytest.fixture(scope="module")
def reported(tiny_run, tmp_path_factory) -> Path:
    """A copy of the tiny run (the shared one stays read-only) with its report written."""
    run = tmp_path_factory.mktemp("report") / "run"
    shutil.copytree(tiny_run, run)
    write_report(run)
    return run


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium driven by Playwright; skipped where either is missing."""
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium chromium-driver (.ci/run does)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (in the test extra)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def open_page(browser, url: str, width: int = 1280):
    """A fresh page at ``url`` with its console errors and requested URLs recorded."""
    page = browser.new_context(viewport={"width": width, "height": 900}).new_page()
    page.errors, page.requests = [], []
    page.on("console", lambda m: m.type == "error" and page.errors.append(m.text))
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.on("request", lambda r: page.requests.append(r.url))
    page.goto(url, wait_until="load")
    return page


def view_of(family: str, dim: int = 4) -> RunView:
    """An untrained model of ``family`` on random binary 8x8 images: enough to draw every figure."""
    cfg = tiny_config(f"latent.family={family}", f"latent.dim={dim}")
    model = build(cfg, (8, 8)).eval()
    model.config = cfg
    x = (torch.rand(30, 8, 8, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    return RunView(Path(f"untrained-{family}"), model, cfg.to_dict(), [], {}, x, torch.arange(30) % 10)


def test_report_writes_every_figure_as_a_valid_png(reported):
    files = {p.stem: p for p in (reported / "figures").glob("*.png")}
    assert set(files) == ALWAYS  # D = 4: no manifold
    for path in files.values():
        image = read_png(path.read_bytes())
        assert image.shape[0] > 50 and image.shape[1] > 50
        assert image[..., :3].std() > 0.01  # something was drawn


class Resources(HTMLParser):
    """Collects every attribute that could make a browser load something, and the tags used."""

    LOADING = {"src", "href", "srcset", "poster", "data", "action", "formaction", "background"}

    def __init__(self):
        super().__init__()
        self.urls, self.tags, self.images = [], set(), []

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        for name, value in attrs:
            if name in self.LOADING:
                self.urls.append(value or "")
                if tag == "img" and name == "src":
                    self.images.append(value)


def test_report_html_is_self_contained(reported):
    text = (reported / "report.html").read_text()
    found = Resources()
    found.feed(text)
    assert not found.tags & {"script", "link", "iframe", "object", "embed", "base"}
    assert all(u.startswith(("data:image/png;base64,", "#")) for u in found.urls), found.urls
    assert "url(" not in text and "@import" not in text
    assert len(found.images) == len(ALWAYS)
    for src in found.images:
        read_png(base64.b64decode(src.split(",", 1)[1]))
    assert 'name="viewport"' in text and "@media print" in text


def test_report_shows_config_metrics_and_diagnostics(reported):
    text = (reported / "report.html").read_text()
    summary = open_run(reported).summary
    assert f"{summary['nll']:.4g}" in text
    assert "units active" in text and '"hidden": [' in text


@pytest.mark.parametrize("family", latents.names())
def test_every_family_gets_its_figures(family):
    dim = 4
    pngs = space.render(view_of(family, dim))
    assert ALWAYS - {"curves"} <= set(pngs)  # an untrained view has no metrics to plot
    for payload in pngs.values():
        read_png(payload)


@pytest.mark.parametrize("family", latents.names())
def test_constrain_maps_any_latent_into_the_support_and_keeps_those_inside(family):
    """The explorer's sliders can leave the support (a simplex, a sphere, bits); constrain
    brings them back, and leaves prior draws, which are inside, where they are."""
    fam = latents.get(family, 4)
    inside = fam.sample_prior(50)
    torch.testing.assert_close(fam.constrain(inside), inside)
    wild = torch.randn(60, 4, generator=torch.Generator().manual_seed(0)) * 3
    wild[0] = 0  # no direction, no simplex point
    c = fam.constrain(wild)
    assert bool(fam.prior().support.check(c).all()), c
    assert torch.isfinite(fam.prior().log_prob(c)).all()
    torch.testing.assert_close(fam.constrain(c), c)
    if family.startswith("categorical"):  # a support torch calls real: check the groups directly
        groups = c.unflatten(-1, (-1, fam.classes))
        probs = groups if family == "categorical-exact" else groups.exp()
        torch.testing.assert_close(probs.sum(-1), torch.ones(groups.shape[:-1]))
        if family == "categorical-exact":
            assert bool(((groups == 0) | (groups == 1)).all())


def test_manifold_only_for_a_two_dimensional_latent():
    two = view_of("gaussian", 2)
    grid = latent.manifold(two.model, two.test, 15)
    assert grid.shape == (15, 15, 8, 8)
    assert not torch.allclose(grid[0, 0], grid[-1, -1])  # the corners decode different latents
    assert "manifold" in space.render(two)
    four = view_of("gaussian", 4)
    assert latent.manifold(four.model, four.test, 15) is None


def test_gaussian_hooks_traverse_interpolate_and_temperature():
    fam = latents.get("gaussian", 3)
    point = torch.tensor([0.5, -1.0, 2.0])
    sweep = fam.traverse(point, 1, 7)  # (7, 3)
    assert torch.equal(sweep[:, [0, 2]], point[[0, 2]].expand(7, 2))
    assert torch.allclose(sweep[[0, -1], 1], torch.tensor([-4.0, 2.0]))  # point_1 -+ 3 prior sds
    a, b = torch.tensor([3.0, 0.0, 0.0]), torch.tensor([0.0, 3.0, 0.0])
    assert fam.interpolation_kinds() == ("linear", "spherical")
    for kind in fam.interpolation_kinds():
        path = fam.interpolate(a, b, torch.linspace(0, 1, 5), kind)
        assert torch.allclose(path[0], a) and torch.allclose(path[-1], b)
    assert torch.allclose(fam.interpolate(a, b, torch.linspace(0, 1, 5), "spherical").norm(dim=1), torch.tensor(3.0))
    with latent.seeded(0):
        sd = fam.sample_prior(20000, temperature=0.5).std(0)
    assert torch.allclose(sd, torch.tensor(0.5), atol=4 * 0.5 / (2 * 20000) ** 0.5)  # 4 standard errors


def test_curves_draw_a_standard_error_as_a_band_around_its_term():
    from matplotlib.collections import PolyCollection

    rows = [{"epoch": e, "test_elbo": -30.0 + e, "train_elbo": -31.0 + e, "test_mi": 0.1 * e, "test_mi_se": 0.02} for e in (1, 2, 3)]
    fig = figures.curves_figure([("run", rows)])
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles == ["bound (ELBO, nats)", "mi"]  # mi_se is no panel of its own
    (band,) = [c for c in fig.axes[1].collections if isinstance(c, PolyCollection)]
    lo, hi = band.get_paths()[0].vertices[:, 1].min(), band.get_paths()[0].vertices[:, 1].max()
    assert (lo, hi) == pytest.approx((0.1 - 0.02, 0.3 + 0.02))
    one = figures.curves_figure([("run", rows[:1])])
    assert list(one.axes[0].get_xticks()) == [1]  # one epoch: one integer tick
    assert read_png(figures.png(one)).shape[1] == round(one.get_size_inches()[0] * 100)  # laid out, not cropped


def test_seeded_restores_the_callers_random_state():
    torch.manual_seed(3)
    expected = torch.rand(2)
    torch.manual_seed(3)
    with latent.seeded(0):
        torch.rand(5)
    assert torch.equal(torch.rand(2), expected)


def test_comparison_puts_runs_side_by_side(tiny_run, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(tiny_run, other)
    out = write_comparison([tiny_run, other], tmp_path / "cmp.html")
    text = out.read_text()
    assert text.count("<h3>tiny</h3>") >= len(ALWAYS) - 1 and text.count("<h3>other</h3>") >= len(ALWAYS) - 1
    assert 'id="curves"' in text and "Settings and final metrics" in text
    assert not (tiny_run / "report.html").exists()  # comparing writes nothing into the runs


def test_cli_report_prints_the_page(reported, capsys):
    before = (reported / "report.html").stat().st_mtime_ns
    proc = in_process(capsys, "report", str(reported))
    assert proc.returncode == 0 and proc.stdout.strip() == str(reported / "report.html")
    assert (reported / "report.html").stat().st_mtime_ns > before


def test_cli_report_bad_input(tiny_run, tmp_path, capsys):
    assert_user_error(in_process(capsys, "report", str(tmp_path)), "config.json is missing")
    assert_user_error(in_process(capsys, "report", str(tiny_run), "--out", str(tmp_path / "no" / "x.html")), "does not exist")


def test_report_in_a_browser(reported, browser):
    page = open_page(browser, (reported / "report.html").as_uri())
    widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
    assert len(widths) == len(ALWAYS) and min(widths) > 0, widths
    assert page.errors == []
    assert all(u.startswith(("file:", "data:")) for u in page.requests), page.requests
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
    phone = open_page(browser, (reported / "report.html").as_uri(), width=375)
    assert phone.evaluate("document.documentElement.scrollWidth") <= 375  # no sideways scrolling
    phone.emulate_media(media="print")
    assert phone.eval_on_selector("nav", "n => getComputedStyle(n).display") == "none"


@pytest.mark.parametrize("label", ["²", "٣", "10"])
def test_a_label_is_a_class_name_or_its_ascii_index(label, tiny_conditional_run, tmp_path, capsys):
    """'²' passes str.isdigit but not int(); '٣' (Arabic-Indic three) passes both: neither names a
    class. sample and report refuse them in one line and write nothing."""
    for command in (["sample", "--out", str(tmp_path / "s.png")], ["report", "--out", str(tmp_path / "r.html")]):
        args = [command[0], str(tiny_conditional_run), "--label", label, *command[1:]]
        assert_user_error(in_process(capsys, *args), f"--label {label} is not a class of this run; its classes are 0, 1,")
    assert not list(tmp_path.iterdir())
