"""docs/timings.md is generated from the measured runs under config/forecast/ (issue 19):
the committed document is what those files give, and a changed file shows."""

import shutil

from performance.timings import DOC, RUNS_DIR, duration, main, render


def test_the_committed_timings_document_is_up_to_date():
    assert DOC.read_text() == render(), "docs/timings.md is out of date: run `make docs`"
    assert main(["--check"]) == 0


def test_a_changed_measurement_changes_the_document(tmp_path):
    runs = tmp_path / "forecast"
    shutil.copytree(RUNS_DIR, runs)
    csv = runs / "make_paper_e309b51.csv"
    csv.write_text(csv.read_text().replace("train_model,13,452,", "train_model,13,453,"))
    text = render(runs)
    assert text != DOC.read_text() and "| train_model | 13 | 7 min 33 s | 2.6 GB |" in text
    assert main(["--check", "--out", str(tmp_path / "timings.md")]) == 1


def test_durations_read_as_people_write_them():
    assert [duration(s) for s in (9.94, 60, 563, 3723.4)] == ["9.9 s", "1 min 0 s", "9 min 23 s", "1 h 2 min 3 s"]
