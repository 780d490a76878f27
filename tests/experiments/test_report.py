"""``resnetlab report``: experiments gathered into one Markdown document (relative links that resolve) and one
self-contained HTML page; and the tables both are made of."""

import json
import re
import shutil

import pytest
from experiment_checks import parse_markdown_table

from resnetlab.cli import main
from resnetlab.experiments.markdown_html import markdown_to_html
from resnetlab.experiments.tables import Table, plus_minus


def test_table_markdown_and_csv_share_strings():
    table = Table(["name", "mean", "std", "n"], view=[("model", lambda r: r["name"]),
                                                      ("error (%)", lambda r: plus_minus(r["mean"], r["std"], r["n"]))])
    table.add(name="a|b", mean="12.10", std="0.30", n=2)
    table.add(name="c", mean="9.80", std="0.00", n=1)
    table.add(name="d", mean=None, std=None, n=0)
    assert table.to_csv().splitlines() == ["name,mean,std,n", "a|b,12.10,0.30,2", "c,9.80,0.00,1", "d,,,0"]
    rows = parse_markdown_table(table.to_markdown())
    assert rows == [{"model": "a|b", "error (%)": "12.10 ± 0.30"}, {"model": "c", "error (%)": "9.80"},
                    {"model": "d", "error (%)": "—"}]
    with pytest.raises(KeyError):
        table.add(unknown="x")


def test_report_gathers_experiments(degradation_dir, tmp_path, capsys):
    output = tmp_path / "elsewhere" / "report.md"
    assert main(["report", str(degradation_dir), "-o", str(output)]) == 0
    text = output.read_text()
    assert text.startswith("# resnetlab experiment report")
    assert "## Overview" in text and "## Verdicts" in text and "### Setup" in text
    assert "plain-14 train error > plain-8: " in text
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert images and all(not image.startswith("/") and (output.parent / image).is_file() for image in images)
    links = re.findall(r"(?<!!)\[[^\]]*\]\(([^)#]+)\)", text)
    assert all((output.parent / link).is_file() for link in links)
    html = output.with_suffix(".html").read_text()
    assert html.count("<img") == len(images) and "data:image/png;base64," in html and ".png\"" not in html
    anchor = re.search(r"\]\(#([^)]+)\)", text).group(1)
    assert f'id="{anchor}"' in html
    assert "<table>" in html and "plain-14 train error &gt; plain-8" in html


def test_report_refuses_a_directory_without_an_experiment(tmp_path, capsys):
    assert main(["report", str(tmp_path), "-o", str(tmp_path / "r.md")]) == 2
    assert "experiment.json" in capsys.readouterr().err


def test_report_refuses_an_experiment_given_twice(degradation_dir, tmp_path, capsys):
    again = degradation_dir.parent / "." / degradation_dir.name
    assert main(["report", str(degradation_dir), str(again), "-o", str(tmp_path / "r.md")]) == 2
    assert "is given twice" in capsys.readouterr().err and not (tmp_path / "r.md").exists()


def test_report_tells_how_to_rewrite_results_of_an_older_version(degradation_dir, tmp_path, capsys):
    old = tmp_path / "old"
    shutil.copytree(degradation_dir, old, ignore=shutil.ignore_patterns("runs"))
    record = json.loads((old / "experiment.json").read_text())
    del record["report"]  # as written before results were kept as data
    (old / "experiment.json").write_text(json.dumps(record))
    assert main(["report", str(old), "-o", str(tmp_path / "r.md")]) == 2
    err = capsys.readouterr().err
    assert "older resnetlab" in err and record["arguments"]["command"] in err and len(err.splitlines()) == 1


def test_html_subset_escapes_and_embeds(tmp_path):
    (tmp_path / "a.png").write_bytes(b"\x89PNG\r\n\x1a\nfake")
    html = markdown_to_html("# T <1>\n\n- x `a<b` **bold** [l](a.csv)\n\n![pic](a.png)\n", tmp_path)
    assert '<h1 id="t-1">T &lt;1&gt;</h1>' in html and "<code>a&lt;b</code>" in html
    assert "<strong>bold</strong>" in html and '<a href="a.csv">l</a>' in html
    assert 'src="data:image/png;base64,iVBORw0KGgpmYWtl"' in html


def test_results_and_report_are_rendered_from_the_recorded_data(degradation_dir, tmp_path):
    """results.md is the rendering of experiment.json's data; the report needs only that data, not results.md."""
    import json
    import shutil

    from resnetlab.experiments.render import render_section

    record = json.loads((degradation_dir / "experiment.json").read_text())
    assert (degradation_dir / "results.md").read_text() == render_section(record["report"])
    copy = tmp_path / "copy"
    shutil.copytree(degradation_dir, copy)
    (copy / "results.md").unlink()
    assert main(["report", str(copy), "-o", str(tmp_path / "report.md"), "--no-html"]) == 0
    text = (tmp_path / "report.md").read_text()
    for line in record["report"]["verdicts"]:
        assert text.count(f"- {line}") == 2  # in the verdicts overview and in the experiment's section
