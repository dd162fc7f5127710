"""Your own tables: reading CSV, Parquet and arrays, column kinds, coding, and a table run end to
end (train, eval, sample to CSV, resume), with bad input refused in one line."""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from reparam import config, data, tables
from reparam.errors import DataError
from tests.conftest import TINY
from tests.helpers import assert_user_error, in_process, reparam, snapshot

TABLE = ["data.name=table", "train.batch_size=50"]
MIXED = """height,smoker,colour,score
1.62,yes,red,3
1.75,no,green,1
1.80,no,blue,2
1.55,yes,red,3
1.91,no,green,1
1.70,yes,blue,2
1.66,no,red,1
1.84,no,green,3
"""


def table_cfg(path: str, *overrides: str):
    return config.load(None, ["data.name=table", f"data.path={path}", *overrides]).data


@pytest.fixture
def mixed(tmp_path) -> Path:
    path = tmp_path / "mixed.csv"
    path.write_text(MIXED)
    return path


def test_kinds_are_inferred_and_rows_coded(mixed):
    """Two values: binary; text with more: categorical; numbers with more: real, standardized
    with the training rows' mean and standard deviation."""
    d = data.load(table_cfg(str(mixed), "data.test_fraction=0.25"))
    kinds = [(c.name, c.kind) for c in d.columns.columns]
    assert kinds == [("height", "real"), ("smoker", "binary"), ("colour", "categorical"), ("score", "real")]
    assert d.columns.layout() == ["real", "binary", "categorical:3", "real"]
    assert d.columns.columns[2].labels == ["blue", "green", "red"] and d.columns.columns[1].labels == ["no", "yes"]
    assert d.train.shape == (6, 6) and d.test.shape == (2, 6) and d.x_shape == (6,)
    assert torch.allclose(d.train[:, 0].mean(), torch.tensor(0.0), atol=1e-6)
    assert torch.allclose(d.train[:, 0].std(unbiased=False), torch.tensor(1.0), atol=1e-5)
    assert torch.equal(d.train[:, 2:5].sum(1), torch.ones(6))
    h = d.columns.columns[0]
    assert d.nll_shift == pytest.approx(math.log(h.std) + math.log(d.columns.columns[3].std))


def test_decode_inverts_encode_in_original_units(mixed):
    raw = tables.read(str(mixed))
    cols = tables.infer(raw, np.arange(8), [], 50, "mixed")
    rows = cols.decode(cols.encode(raw, "mixed").astype(np.float64))
    with open(mixed) as f:
        want = list(csv.reader(f))[1:]
    for got, row in zip(rows, want):
        assert got[1:3] == row[1:3]  # labels back exactly
        assert np.allclose([got[0], got[3]], [float(row[0]), float(row[3])], rtol=1e-6)  # float32 coding


def test_semicolon_and_tab_separated_files_are_read(tmp_path):
    for name, sep in (("semi.csv", ";"), ("tab.csv", "\t")):
        (tmp_path / name).write_text(MIXED.replace(",", sep))
        d = data.load(table_cfg(str(tmp_path / name)))
        assert d.columns.names == ["height", "smoker", "colour", "score"] and d.columns.layout()[2] == "categorical:3"


def test_categorical_names_a_numeric_column_and_levels_are_capped(mixed):
    d = data.load(table_cfg(str(mixed), 'data.categorical=["score"]'))
    assert d.columns.columns[3].kind == "categorical" and d.columns.columns[3].labels == [1.0, 2.0, 3.0]
    with pytest.raises(DataError, match="more than data.max_levels=2"):
        data.load(table_cfg(str(mixed), "data.max_levels=2"))


def test_first_row_of_numbers_is_data_and_arrays_read_as_tables(tmp_path):
    (tmp_path / "n.csv").write_text("1,0,5.5\n2,1,6.5\n3,0,7.25\n4,1,1\n")
    d = data.load(table_cfg(str(tmp_path / "n.csv")))
    assert d.columns.names == ["column_0", "column_1", "column_2"] and len(d.train) + len(d.test) == 4
    x = np.random.default_rng(0).normal(size=(40, 3))
    x[:, 1] = x[:, 1] > 0
    np.save(tmp_path / "x.npy", x)
    d = data.load(table_cfg(str(tmp_path / "x.npy")))
    assert d.columns.layout() == ["real", "binary", "real"] and d.x_shape == (3,)


def test_parquet_reads_numbers_booleans_and_text(tmp_path, mixed):
    pa = pytest.importorskip("pyarrow", reason="pip install 'reparam[parquet]'")
    import pyarrow.parquet as pq

    t = pa.table({"h": [1.6, 1.7, 1.8, 1.9], "flag": [True, False, True, True], "c": ["a", "b", "c", "a"], "n": [1, 5, 9, 2]})
    pq.write_table(t, tmp_path / "t.parquet")
    d = data.load(table_cfg(str(tmp_path / "t.parquet")))
    assert d.columns.layout() == ["real", "binary", "categorical:3", "real"]
    assert d.columns.columns[1].labels == ["False", "True"]
    pq.write_table(pa.table({"h": [1.0, None, 2.0]}), tmp_path / "null.parquet")
    with pytest.raises(DataError, match="column 'h' has a missing cell in data row 2"):
        data.load(table_cfg(str(tmp_path / "null.parquet")))


@pytest.mark.parametrize("cell", ["", "inf"], ids=["missing", "infinite"])
def test_csv_and_parquet_count_the_same_data_rows(cell, tmp_path):
    """Row numbers in errors count data rows, the header aside, whatever the file's format."""
    pa = pytest.importorskip("pyarrow", reason="pip install 'reparam[parquet]'")
    import pyarrow.parquet as pq

    (tmp_path / "t.csv").write_text(f"a,b\n1,x\n2,y\n{cell},z\n")
    pq.write_table(pa.table({"a": [1.0, 2.0, None if cell == "" else math.inf], "b": ["x", "y", "z"]}), tmp_path / "t.parquet")
    messages = []
    for name in ("t.csv", "t.parquet"):
        with pytest.raises(DataError) as e:
            tables.read(str(tmp_path / name))
        messages.append(str(e.value).replace(name, "FILE"))
    assert messages[0] == messages[1] and "data row 3" in messages[0]


#: CSV files both readers must agree on: names, kinds and values, or the same error.
CSV_CASES: dict[str, str | bytes] = {
    "mixed": MIXED,
    "semicolons": MIXED.replace(",", ";"),
    "tabs": MIXED.replace(",", "\t"),
    "headerless": "1,0,5.5\n2,1,6.5\n3,0,7.25\n4,1,1e3\n",
    "bom-and-crlf": "\ufeffx,label\r\n1.5,a\r\n-2,b\r\n",
    "bom-headerless": "\ufeff1,2\n3,4\n",
    "quoted": 'name,v\n"Smith, J",1\n"O\'Neil",2\n"say ""hi""",3\n',
    "padded": " a , b \n 1 , x \n 2 ,  y\n",
    "blank-lines": "a,b\n\n1,x\n\n2,y\n\n",
    "python-numbers": "a,b\n1_000,３\n2,4\n",
    "ints-and-text": "id,n\n007,5\nA1,6\n",
    "booleans-and-dates": "flag,day\ntrue,2020-01-01\nFalse,2020-01-02\n",
    "nan-is-missing": "a\n1\nnan\n",
    "minus-nan": "a\n1\n-nan\n",
    "infinite": "a\n1\n-Infinity\n",
    "na-text": "a,b\n1,NA\n2,x\n",
    "quoted-newline": 'a,b\n1,"two\nlines"\n2,x\n',
    "ragged": "a,b\n1,x\n2\n",
    "trailing-delimiter": "a,b,\n1,x,\n2,y,\n",
    "blank-before-header": "\n\na,b\n1,x\n2,y\n",
    "newline-in-header": 'a,"b\nc"\n1,2\n3,4\n',
    "missing-after-minus-nan": "a\n-nan\n1\nNaN\n",
    "not-utf8": b"a,b\n1,\xe9\n",
}


def read_both(path: Path):
    """(the standard library's columns or error, pyarrow's columns or error)."""
    from reparam.tables.read import read_csv_arrow, read_csv_text

    out = []
    for reader in (read_csv_text, read_csv_arrow):
        try:
            out.append([(c.name, c.numeric, list(np.asarray(c.values).tolist()) if c.numeric else c.values) for c in reader(path)])
        except DataError as e:
            out.append(f"DataError: {e}")
    return out


@pytest.mark.parametrize("case", CSV_CASES)
def test_pyarrow_and_the_standard_library_read_a_csv_alike(case, tmp_path):
    pytest.importorskip("pyarrow.csv")
    path = tmp_path / "t.csv"
    text = CSV_CASES[case]
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    text, arrow = read_both(path)
    assert arrow == text


def test_a_csv_is_parsed_by_pyarrow_when_it_is_installed(mixed, monkeypatch):
    pv = pytest.importorskip("pyarrow.csv")
    calls = []
    real = pv.read_csv
    monkeypatch.setattr(pv, "read_csv", lambda *a, **k: calls.append(a) or real(*a, **k))
    assert [c.name for c in tables.read(str(mixed))] == ["height", "smoker", "colour", "score"] and len(calls) == 1
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # no pyarrow: the standard library reads it the same
    monkeypatch.setitem(sys.modules, "pyarrow.csv", None)
    assert [c.name for c in tables.read(str(mixed))] == ["height", "smoker", "colour", "score"] and len(calls) == 1


def test_parquet_without_pyarrow_names_the_extra(tmp_path, monkeypatch):
    (tmp_path / "t.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(DataError, match=r"pip install 'reparam\[parquet\]'"):
        data.load(table_cfg(str(tmp_path / "t.parquet")))


def test_bundled_tables_ship_with_scikit_learn():
    wine = data.load(table_cfg("sklearn:wine"))
    assert wine.name == "wine" and wine.columns.layout() == ["real"] * 13 + ["categorical:3"]
    cancer = data.load(table_cfg("sklearn:breast_cancer")).columns
    assert cancer.columns[-1].kind == "binary" and cancer.columns[-1].labels == ["benign", "malignant"]
    diabetes = data.load(table_cfg("sklearn:diabetes")).columns
    assert [c.kind for c in diabetes.columns if c.name == "sex"] == ["binary"]


@pytest.fixture(scope="module")
def wine_run(tmp_path_factory) -> Path:
    """The bundled example, trained for a few epochs, from a CSV copy of sklearn's wine table."""
    folder = tmp_path_factory.mktemp("wine")
    raw = tables.read("sklearn:wine")
    rows = zip(*[[tables.format_value(v) for v in c.values] for c in raw])
    with open(folder / "wine.csv", "w", newline="") as f:
        csv.writer(f).writerows([[c.name for c in raw], *rows])
    out = folder / "run"
    proc = reparam("train", *TINY, *TABLE, f"data.path={folder / 'wine.csv'}", "train.epochs=5", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out


def test_a_table_run_saves_its_columns_and_samples_csv(wine_run):
    cols = json.loads((wine_run / "columns.json").read_text())
    assert cols["layout"] == ["real"] * 13 + ["categorical:3"]
    assert cols["columns"][0]["name"] == "alcohol" and cols["columns"][0]["std"] > 0
    assert not (wine_run / "samples.png").exists()
    with open(wine_run / "samples.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0][0] == "alcohol" and rows[0][-1] == "class" and len(rows) == 65
    assert {r[-1] for r in rows[1:]} <= {"class_0", "class_1", "class_2"}
    config_json = json.loads((wine_run / "config.json").read_text())
    assert config_json["likelihood"]["name"] == "table" and config_json["data"]["binarize"] == "none"


def test_eval_scores_rows_in_nats_and_in_original_units(wine_run):
    proc = reparam("eval", str(wine_run), "--k", "20", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    cols = json.loads((wine_run / "columns.json").read_text())["columns"]
    shift = sum(math.log(c["std"]) for c in cols if c["kind"] == "real")
    assert out["n"] == 27 and math.isfinite(out["nll"])
    assert out["nll_original_units"] == pytest.approx(out["nll"] + shift, abs=1e-9)
    assert out["elbo_original_units"] == pytest.approx(out["elbo"] - shift, abs=1e-9)
    table = reparam("eval", str(wine_run), "--k", "5")
    assert table.returncode == 0 and "27 rows" in table.stdout and "orig. units" in table.stdout


def test_sample_writes_rows_in_original_units(wine_run, tmp_path):
    out = tmp_path / "x.csv"
    proc = reparam("sample", str(wine_run), "--n", "300", "--out", str(out), "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    with open(out) as f:
        rows = list(csv.reader(f))
    assert len(rows) == 301 and rows[0][-1] == "class"
    alcohol = np.array([float(r[0]) for r in rows[1:]])  # the wine's alcohol: 11.0 .. 14.8 %
    assert 10.0 < alcohol.mean() < 16.0 and alcohol.std() > 0.1
    again = tmp_path / "y.csv"
    reparam("sample", str(wine_run), "--n", "300", "--out", str(again), "--seed", "3")
    assert again.read_bytes() == out.read_bytes()


def test_resume_codes_rows_with_the_saved_columns(wine_run, tmp_path):
    import shutil

    run = shutil.copytree(wine_run, tmp_path / "run")
    proc = reparam("train", "--resume", str(run), "train.epochs=6", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((run / "summary.json").read_text())["epochs"] == 6


def test_changed_table_at_eval_is_one_line(wine_run, tmp_path, capsys):
    import shutil

    run = shutil.copytree(wine_run, tmp_path / "run")
    cfg = json.loads((run / "config.json").read_text())
    csv_path = tmp_path / "wine.csv"
    lines = Path(cfg["data"]["path"]).read_text().splitlines()
    cfg["data"]["path"] = str(csv_path)
    (run / "config.json").write_text(json.dumps(cfg))
    csv_path.write_text("\n".join([lines[0].replace("alcohol", "ethanol"), *lines[1:]]) + "\n")
    assert_user_error(in_process(capsys, "eval", str(run), "--k", "5"), "column 1 is 'ethanol', the run was trained with 'alcohol'")
    csv_path.write_text("\n".join([lines[0], *[ln.replace("class_2", "class_9") for ln in lines[1:]]]) + "\n")
    assert_user_error(in_process(capsys, "sample", str(run), "--out", str(tmp_path / "s.png")), "choose --out FILE.csv")
    assert_user_error(in_process(capsys, "report", str(run)), "a value the run never saw")
    assert_user_error(in_process(capsys, "explore", str(wine_run), "--port", "0"), "models a table")


BAD = {
    "const.csv": "a,b,c\n1,x,5\n2,y,5\n3,x,5\n",
    "nan.csv": "a,b\n1,x\n,y\n3,x\n",
    "nan2.csv": "a,b\n1,x\nNaN,y\n3,x\n",
    "empty.csv": "",
    "header.csv": "a,b\n",
    "ids.csv": "id,v\n" + "".join(f"u{i},{i % 3}\n" for i in range(60)),
    "ragged.csv": "a,b\n1,x\n2\n",
    "dup.csv": "a,a\n1,2\n3,4\n",
}


@pytest.mark.parametrize(
    "settings, needle",
    [
        (["data.path=const.csv"], "column 'c' holds one value only (5)"),
        (["data.path=nan.csv"], "column 'a' has a missing cell in data row 2"),
        (["data.path=nan2.csv"], "column 'a' has a missing cell in data row 2"),
        (["data.path=empty.csv"], "is empty"),
        (["data.path=header.csv"], "holds no rows"),
        (["data.path=ids.csv"], "column 'id' has 60 distinct values, more than data.max_levels=50"),
        (["data.path=ragged.csv"], "data row 2 has 1 cell, the header 2"),
        (["data.path=dup.csv"], "column name 'a' appears twice"),
        (["data.path=nan.npy"], "holds nan in data row 2"),
        (["data.path=cube.npy"], "needs shape (N, F)"),
        (["data.path=complex.npy"], "needs real numbers"),
        (["data.path=missing.csv"], "does not exist"),
        (["data.path=sklearn:nope"], "unknown bundled table sklearn:nope"),
        ([], "data.name=table needs data.path=FILE"),
        (["data.path=sklearn:wine", "model.arch=conv"], "a table's rows take model.arch=mlp"),
        (["data.path=sklearn:wine", "likelihood.name=gaussian"], "data.name=table takes likelihood.name=table"),
        (["data.path=sklearn:wine", "data.binarize=dynamic"], "data.name=table takes data.binarize=none"),
        (["data.path=sklearn:wine", 'data.categorical=["nope"]'], "data.categorical names column 'nope'"),
        (["data.path=sklearn:wine", "data.categorical=[nope]"], 'quote text items'),
    ],
)
def test_bad_tables_are_one_line_and_write_nothing(settings, needle, tmp_path, capsys):
    for name, text in BAD.items():
        (tmp_path / name).write_text(text)
    np.save(tmp_path / "nan.npy", np.array([[1.0, 2.0], [np.nan, 3.0], [4.0, 5.0]]))
    np.save(tmp_path / "cube.npy", np.zeros((4, 2, 2)))
    np.save(tmp_path / "complex.npy", np.ones((4, 2), dtype=complex))
    settings = [s.replace("data.path=", f"data.path={tmp_path}/") if s.startswith("data.path=") and ":" not in s else s for s in settings]
    before = snapshot(tmp_path)
    assert_user_error(in_process(capsys, "train", *TINY, *TABLE, *settings, "--out", str(tmp_path / "run")), needle)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "settings, needle",
    [
        (["likelihood.name=table"], "likelihood.name=table models the columns of a table"),
        (["data.max_levels=5"], "data.max_levels applies to data.name=table"),
        (['data.categorical=["a"]'], "data.categorical applies to data.name=table"),
    ],
)
def test_table_keys_without_a_table_are_refused(settings, needle, tmp_path, capsys):
    assert_user_error(in_process(capsys, "train", *TINY, *settings, "--out", str(tmp_path / "run")), needle)
    assert not (tmp_path / "run").exists()


def readme_table_commands() -> list[list[str]]:
    import shlex

    from tests.test_readme import README, blocks

    text = README.split("## Your own tables\n", 1)[1].split("\n## ", 1)[0]
    lines = [line.split("  #")[0].strip() for b in blocks("bash", text) for line in b.splitlines()]
    return [shlex.split(line)[1:] for line in lines if line.startswith("reparam ")]


def test_readme_table_commands_run_in_order(tmp_path, monkeypatch, capsys):
    """The README's table commands, one after the other, with tiny settings."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my.csv").write_text("size,rating,kind\n" + "".join(f"{i * 0.7:.1f},{i % 4},{'ab'[i % 2]}\n" for i in range(40)))
    commands = readme_table_commands()
    assert [c[0] for c in commands] == ["train", "eval", "sample", "report", "train"]
    for argv in commands:
        if argv[0] == "train":
            argv = [a for a in argv if not a.startswith("train.epochs=")] + [*TINY, *(["--out", "runs/mine"] if "--out" not in argv else [])]
        if argv[0] == "eval":
            argv = [*argv[:2], "--k", "10"]
        proc = in_process(capsys, *argv)
        assert proc.returncode == 0, proc.stderr
    with open(tmp_path / "wine-rows.csv") as f:
        assert len(list(csv.reader(f))) == 501
    assert json.loads((tmp_path / "runs/mine/columns.json").read_text())["layout"] == ["real", "categorical:4", "binary"]
