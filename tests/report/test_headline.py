"""The report's metrics: the numbers a researcher reads first, then every other one folded away."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from reparam import config
from reparam.report import build, html
from tests.report.test_report import CHROMIUM, CHROMIUM_ARGS

M2 = {"elbo": -95.2, "log_px_z": -80.1, "n_test": 10000, "nll": 90.51, "nll_se": 0.123, "k": 5000, "n": 10000, "kl": 15.1,
      "labels": "latent: log p(x) sums over the classes", "classification_error": 0.1247, "classification_error_se": 0.0033,
      "active_units": 12, "latent_dim": 16, "mi": 8.2, "mi_se": 0.05, "mi_max": 9.21, "warnings": ["30 steps skipped"]}  # fmt: skip


def headline_and_rest(text: str) -> tuple[str, str]:
    """The metrics section split at the fold: (what shows, what is folded)."""
    head, _, rest = text.partition("<details>")
    return head, rest


def test_the_headline_leads_and_internal_fields_are_folded(tiny_run):
    summary = json.loads((tiny_run / "summary.json").read_text())
    head, rest = headline_and_rest(build.metrics_block(summary, tiny_run))
    assert '<dl class="headline">' in head
    assert f"{summary['elbo']:.2f} nats" in head and f"{summary['nll']:.2f} ± {summary['nll_se']:.2f} nats" in head
    assert f"K = {summary['k']:,} on all {summary['n']} test images" in head
    assert f"{summary['active_units']} of {summary['latent_dim']}" in head and f"{summary['kl']:.2f} nats" in head
    assert f"{summary['mi']:.2f} ± {summary['mi_se']:.2f} nats" in head
    assert "<td>train_seconds</td>" in rest and "train_seconds" not in head  # every number is still there, folded
    assert head.index("test ELBO") < head.index("NLL") < head.index("active units") < head.index("KL(") < head.index("mutual information")


def test_an_m2_headline_gives_the_classification_error_with_its_se_and_the_warnings():
    head, _ = headline_and_rest(build.metrics_block(M2, Path("RUN")))
    assert "12.5 ± 0.3%" in head and "90.51 ± 0.12 nats" in head and "K = 5,000 on all 10,000 test images" in head
    assert head.index("NLL") < head.index("classification error") < head.index("active units")
    assert '<p class="warn">30 steps skipped</p>' in head


@pytest.mark.parametrize(
    "change, needle",
    [({"nll": None}, "not estimated"), ({"n": 1000}, "K = 5,000 on 1,000 of 10,000 test images"),
     ({"labels": "given: -log p(x|y) at the test labels"}, "NLL = −log p(x | y), given the labels"),
     ({"nll_plan": {"k": 5000}}, "reparam eval RUN --k 5000 gives the full-precision number")],
)  # fmt: skip
def test_the_likelihood_says_what_it_took(change, needle):
    head, _ = headline_and_rest(build.metrics_block({**M2, **change}, Path("RUN")))
    assert needle in head


def test_a_comparison_lists_the_headline_first_and_folds_the_rest():
    views = [SimpleNamespace(name=n, summary={**M2, "nll_plan": {"k": 1}, "steps": 30}, model=SimpleNamespace(config=config.Config())) for n in "ab"]
    head, rest = headline_and_rest(build.comparison_table(views))  # type: ignore[arg-type]
    assert head.index(">elbo<") < head.index(">nll<") < head.index(">classification_error<") < head.index(">mi<")
    assert ">steps<" in rest and ">steps<" not in head


@pytest.fixture(scope="module")
def page_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("headline") / "metrics.html"
    path.write_text(html.page("run", [("metrics", "Metrics")], build.metrics_block({**M2, "nll_plan": {"seconds_per_sample": 1e-6}}, Path("RUN"))))
    return path


def test_the_headline_in_a_browser(page_file):
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium chromium-driver (.ci/run does)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (in the test extra)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            for width in (1200, 375):
                page = browser.new_context(viewport={"width": width, "height": 900}).new_page()
                page.goto(page_file.as_uri())
                assert page.locator(".headline .value").first.is_visible() and page.locator(".headline > div").count() == 6
                assert not page.get_by_text("nll_plan: seconds_per_sample").is_visible()  # folded
                page.get_by_text("Every number of summary.json").click()
                assert page.get_by_text("nll_plan: seconds_per_sample").is_visible()
                assert page.evaluate("document.documentElement.scrollWidth") <= width  # no sideways scrolling
        finally:
            browser.close()


def test_a_collapsed_layer_leads_the_warnings(tmp_path):
    """summary.json's collapse lines (reparam.evaluate.diagnostics.collapse) are shown under the headline."""
    line = "layer 2 of 2 (50 units) collapsed: no unit is active (Cov_x E_q[z] <= 0.01), so it carries no information about x"
    summary = {"elbo": -90.0, "collapse": [line], "warnings": ["another warning"], "active_units": 0, "latent_dim": 50,
               "active_units_per_layer": [37, 0], "layer_dims": [100, 50]}  # fmt: skip
    page = build.metrics_block(summary, tmp_path)
    assert "37 of 100 + 0 of 50" in page
    from html import escape

    assert page.index(escape(line)) < page.index("another warning") < page.index("Every number")
