"""The latent-space explorer: routes, the decode API, bad input, latency, and a real browser."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch

from reparam import latents
from reparam.explore import Explorer, ServeError, make_server
from reparam.explore.server import resolve
from tests.conftest import ROOT
from tests.helpers import assert_user_error, in_process
from tests.report.test_report import ARTIFACTS, browser, open_page, read_png, view_of  # noqa: F401


@pytest.fixture(scope="module")
def explorer(tiny_run) -> Explorer:
    return Explorer.open(tiny_run)


@pytest.fixture(scope="module")
def server(explorer):
    srv = make_server(explorer, "127.0.0.1", 0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def get(server, path: str, host: str | None = None) -> tuple[int, str, bytes]:
    """GET ``path`` exactly as written (no client-side normalization): (status, content type, body)."""
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=10)
    conn.putrequest("GET", path, skip_host=host is not None)
    if host is not None:
        conn.putheader("Host", host)
    conn.endheaders()
    r = conn.getresponse()
    out = r.status, r.getheader("Content-Type", ""), r.read()
    conn.close()
    return out


def z_param(z: torch.Tensor) -> str:
    return ",".join(f"{float(v):.4f}" for v in z)


def pixels(payload: bytes) -> np.ndarray:
    return read_png(payload)  # (H, W) grey values in [0, 1]


def test_serves_its_own_page(server):
    for path, ctype in [("/", "text/html"), ("/static/app.js", "text/javascript"), ("/static/app.css", "text/css")]:
        status, got, body = get(server, path)
        assert status == 200 and got.startswith(ctype) and body
    page = get(server, "/")[2].decode()
    assert "http://" not in page and "https://" not in page  # nothing from elsewhere


@pytest.mark.parametrize(
    "path",
    ["/../pyproject.toml", "/static/../../pyproject.toml", "/static/%2e%2e/%2e%2e/pyproject.toml",
     "/static/..%2f..%2fpyproject.toml", "/static/app.js/..", "/static/", "/static/index.html", "/app.js",
     "/reparam/explore/server.py", "//etc/passwd", "/etc/passwd", "/api/../static/app.js", "/api/nope"],
)  # fmt: skip
def test_any_other_path_is_404(server, path):
    status, _, body = get(server, path)
    assert status == 404 and b"[project]" not in body and b"root:" not in body


def test_decode_gives_the_models_image_and_differs_by_latent(server, explorer):
    top = int(explorer.ranking.order[0])
    z1 = explorer.centre.clone()
    z2 = z1.clone()
    z2[top] = explorer.ranges[top, 1]
    images = []
    for z in (z1, z2):
        status, ctype, body = get(server, "/api/decode.png?z=" + z_param(z))
        assert status == 200 and ctype == "image/png"
        with torch.inference_mode():
            expected = explorer.model.decode_mean(torch.tensor([float(f"{float(v):.4f}") for v in z]))
        images.append(pixels(body))
        assert np.abs(images[-1] - expected.numpy()).max() <= 1 / 255 + 1e-6
    assert np.abs(images[0] - images[1]).max() > 0.01


@pytest.mark.parametrize(
    "query",
    ["/api/decode.png?z=1,2", "/api/decode.png?z=nan,0,0,0", "/api/decode.png?z=a,b,c,d", "/api/decode.png",
     "/api/encode?i=100000", "/api/encode?i=-1", "/api/interpolate.png?a=0&b=1&t=2",
     "/api/interpolate.png?a=0&b=1&t=0.5&kind=zigzag", "/api/samples.png?n=1000", "/api/sample?temperature=0"],
)  # fmt: skip
def test_bad_requests_are_400(server, query):
    status, ctype, body = get(server, query)
    assert status == 400 and ctype == "application/json" and json.loads(body)["error"]


def test_encode_returns_the_posterior(server, explorer):
    post = json.loads(get(server, "/api/encode?i=7")[2])
    with torch.inference_mode():
        q = explorer.model.posterior(explorer.view.test[7:8])
    assert np.allclose(post["z"], q.mean[0].numpy(), atol=1e-3)
    assert np.allclose(post["spread"], q.stddev[0].numpy(), atol=1e-3)
    assert post["label"] == int(explorer.view.labels[7])


def test_interpolation_ends_at_the_two_images(server, explorer):
    for t, i in (("0", 3), ("1", 9)):
        body = get(server, f"/api/interpolate.png?a=3&b=9&t={t}&kind=spherical")[2]
        with torch.inference_mode():
            expected = explorer.model.decode_mean(explorer.points[i])
        assert np.abs(pixels(body) - expected.numpy()).max() <= 1 / 255 + 1e-6


def test_samples_follow_the_seed(server):
    one, again, other = (get(server, f"/api/samples.png?n=8&seed={s}&temperature=0.7")[2] for s in (1, 1, 2))
    assert one == again and one != other
    assert pixels(one).shape == (9 + 1, 8 * 9 + 1)  # one row of 8 tiles of 8x8 with 1-pixel gaps


def test_foreign_host_header_is_refused(server):
    assert get(server, "/", host="evil.example")[0] == 403
    assert get(server, "/", host=f"localhost:{server.server_address[1]}")[0] == 200


@pytest.mark.parametrize("family", latents.names())
def test_every_family_can_be_explored(family):
    ex = Explorer(view_of(family))
    meta = ex.meta()
    assert sorted(meta["order"]) == list(range(ex.dim)) and len(meta["ranges"]) == ex.dim
    assert all(lo <= s <= hi for (lo, hi), s in zip(meta["ranges"], meta["start"]))
    read_png(ex.decode_png(ex.latent_arg(",".join(map(str, meta["start"])))))
    far = ex.latent_arg(",".join(["-7"] + ["5"] * (ex.dim - 1)))  # sliders pushed past any support
    assert bool(ex.model.family.prior().support.check(far).all())
    read_png(ex.decode_png(far))
    assert len(ex.encode(0)["z"]) == ex.dim
    for kind in meta["kinds"]:
        read_png(ex.interpolate_png(0, 1, 0.5, kind))
    read_png(ex.samples_png(4, 0, 1.0))


def test_remote_bind_needs_allow_remote():
    with pytest.raises(ServeError, match="--allow-remote"):
        resolve("0.0.0.0", allow_remote=False)
    assert resolve("0.0.0.0", allow_remote=True) == socket.AF_INET
    assert resolve("localhost", allow_remote=False) in (socket.AF_INET, socket.AF_INET6)


def test_cli_bad_input(tiny_run, tmp_path, capsys):
    assert_user_error(in_process(capsys, "explore", str(tmp_path), "--port", "0"), "config.json is missing")
    assert_user_error(in_process(capsys, "explore", str(tiny_run), "--host", "0.0.0.0"), "--allow-remote")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        assert_user_error(in_process(capsys, "explore", str(tiny_run), "--port", port), "already in use")


def test_cli_serves_until_interrupted(tiny_run):
    cmd = [sys.executable, "-m", "reparam", "explore", str(tiny_run), "--port", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        url = proc.stdout.readline().split(" at ")[1].split()[0]  # "exploring RUN at URL ..."
        host, port = url.split("//")[1].rstrip("/").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request("GET", "/api/meta")
        assert json.loads(conn.getresponse().read())["dim"] == 4
        conn.close()
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0, proc.stderr.read()


def canvas_pixels(page, selector: str) -> list[int]:
    """The RGBA bytes of an <img> as the browser decoded it."""
    return page.eval_on_selector(
        selector,
        """img => { const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
                    const g = c.getContext('2d'); g.drawImage(img, 0, 0);
                    return Array.from(g.getImageData(0, 0, c.width, c.height).data); }""",
    )


def wait_for_image(page, selector: str, src_part: str = "") -> None:
    page.wait_for_function(
        "([s, part]) => { const i = document.querySelector(s); return i && i.complete && i.naturalWidth > 0 && i.src.includes(part); }",
        arg=[selector, src_part],
    )


def test_explorer_in_a_browser(server, explorer, browser):  # noqa: F811  (browser: the fixture imported above)
    page = open_page(browser, server.url)
    wait_for_image(page, "#decoded", "decode.png")
    page.wait_for_load_state("networkidle")
    before = canvas_pixels(page, "#decoded")
    top = int(explorer.ranking.order[0])
    old_src = page.eval_on_selector("#decoded", "i => i.src")
    page.focus(f"#sliders input[data-dim='{top}']")
    page.keyboard.press("End")  # the slider to its maximum, as a user would
    page.wait_for_function("old => document.querySelector('#decoded').src !== old", arg=old_src)
    wait_for_image(page, "#decoded")
    page.wait_for_load_state("networkidle")
    assert canvas_pixels(page, "#decoded") != before

    page.click("#gallery img[data-i='5']")
    wait_for_image(page, "#recon", "decode.png")
    page.wait_for_load_state("networkidle")
    recon = np.array(canvas_pixels(page, "#recon"), dtype=np.float64).reshape(8, 8, 4)[..., 0] / 255
    with torch.inference_mode():
        expected = explorer.model.decode_mean(explorer.points[5]).numpy()
    assert np.abs(recon - expected).max() <= 2 / 255  # the reconstruction of image 5, pixel for pixel
    assert page.errors == []
    assert all(u.startswith(server.url) or u.startswith("data:") for u in page.requests), page.requests
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "explore.png"), full_page=True)


@pytest.mark.parametrize(
    "query, needle",
    [("/api/sample?seed=" + str(2**64), "seed must be an integer in [0, 2**63)"),
     ("/api/samples.png?seed=-1", "seed must be an integer in [0, 2**63)"),
     ("/api/test.png?i=%C2%B2", "i must be an integer"),  # '²' passes str.isdigit
     ("/api/sample?n=2", "/api/sample takes no parameter 'n'"),
     ("/api/decode.png?z=0,0,0,0&zz=1", "takes no parameter 'zz'"),
     ("/api/samples.png?seed=1&seed=2", "parameter seed is given 2 times")],
)  # fmt: skip
def test_parameters_out_of_range_unknown_or_repeated_are_400(server, query, needle):
    status, ctype, body = get(server, query)
    assert status == 400 and ctype == "application/json" and needle in json.loads(body)["error"]


def test_png_encoder_writes_rgba():
    from reparam.explore import png

    rgba = np.random.default_rng(0).random((5, 7, 4)).astype(np.float32)
    assert np.abs(read_png(png.encode(rgba)) - rgba).max() <= 1 / 255 + 1e-6


@pytest.fixture(scope="module")
def conditional_server(tiny_conditional_run):
    srv = make_server(Explorer.open(tiny_conditional_run), "127.0.0.1", 0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


LABEL_ROUTES = ["/api/decode.png?z=0,0,0,0", "/api/interpolate.png?a=0&b=1&t=0.5", "/api/samples.png?n=2", "/api/sample?seed=1"]


@pytest.mark.parametrize("route", LABEL_ROUTES)
def test_a_label_is_an_ascii_class_index_on_every_route(conditional_server, route):
    """'²' (%C2%B2) passes str.isdigit but not int(); '٣' (%D9%A3, Arabic-Indic three) passes both:
    each is a 400 naming the valid range, never a 500; an index in range is answered."""
    for label in ("%C2%B2", "%D9%A3", "10", "x"):
        status, ctype, body = get(conditional_server, f"{route}&label={label}")
        assert status == 400 and ctype == "application/json", (label, status, body)
        assert "label must be an integer in [0, 10)" in json.loads(body)["error"]
    assert get(conditional_server, f"{route}&label=3")[0] == 200
