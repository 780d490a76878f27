"""Where figures go: the format follows the suffix whatever the temporary name, ``.png`` when there is none, and a
suffix matplotlib cannot write, a folder or a path under a file is refused in one line before any drawing."""

import matplotlib.pyplot as plt
import pytest

from resnetlab.cli import main
from resnetlab.errors import UserError
from resnetlab.plots import save_figure

PNG = b"\x89PNG"


def figure():
    fig, axes = plt.subplots()
    axes.plot([0, 1], [1, 0])
    return fig


def test_the_suffix_chooses_the_format(tmp_path):
    assert save_figure(figure(), tmp_path / "curves.png").read_bytes().startswith(PNG)
    assert save_figure(figure(), tmp_path / "curves.pdf").read_bytes().startswith(b"%PDF")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.pdf", "curves.png"]  # no temporary left


def test_a_name_without_a_suffix_becomes_a_png(tmp_path):
    written = save_figure(figure(), tmp_path / "noext")
    assert written == tmp_path / "noext.png" and written.read_bytes().startswith(PNG)


@pytest.mark.parametrize("name, message", [("out.jpgx", r"cannot draw a \.jpgx file; give a name ending in one of "
                                                         r".*\.png"),
                                           ("folder", "is a folder; give a file name, e.g. .*folder/curves.png"),
                                           ("notes.txt/curves.png", "notes.txt is a file, not a folder")])
def test_paths_a_figure_cannot_go_to_are_refused(tmp_path, name, message):
    (tmp_path / "folder").mkdir()
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match=message):
        save_figure(figure(), tmp_path / name)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "notes.txt"]


def test_plot_to_a_folder_is_one_line_before_reading_the_runs(tmp_path, capsys):
    assert main(["plot", str(tmp_path / "no-such-run"), "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "is a folder" in err
