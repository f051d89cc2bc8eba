"""Unit tests for soft.io: atomic outputs and validated JSONL input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import soft.io as sio
from soft.errors import SoftError
from soft.io import atomic_path, commit_outputs_together, read_json, read_jsonl, write_json, write_jsonl, write_text

FIELDS = {"id": (str, True), "n": (int, True), "text": (str, False)}


def _write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------- atomic_path


def test_atomic_file_written_on_success(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with atomic_path(target) as tmp:
        assert tmp != target
        assert tmp.parent == target.parent
        tmp.write_text("hello")
        assert not target.exists()
    assert target.read_text() == "hello"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]


def test_atomic_file_leaves_nothing_when_block_raises(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("boom")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_file_keeps_old_file_when_block_raises(tmp_path):
    target = _write(tmp_path / "out.txt", "old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_text("new")
            raise KeyboardInterrupt
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_dir_leaves_nothing_when_block_raises(tmp_path):
    target = tmp_path / "model"
    with pytest.raises(ValueError):
        with atomic_path(target, is_dir=True) as tmp:
            assert tmp.is_dir()
            (tmp / "weights.bin").write_bytes(b"\0" * 10)
            (tmp / "nested").mkdir()
            (tmp / "nested" / "x").write_text("x")
            raise ValueError("fail")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_replaces_existing_dir(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "stale.txt").write_text("stale")
    with atomic_path(target, is_dir=True) as tmp:
        (tmp / "fresh.txt").write_text("fresh")
    assert target.is_dir()
    assert sorted(p.name for p in target.iterdir()) == ["fresh.txt"]
    assert (target / "fresh.txt").read_text() == "fresh"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_a_rerun_removes_what_a_killed_writer_left(tmp_path):
    """SIGKILL skips the cleanup: the next write of the same output removes the stale
    temporaries (file and folder) and leaves other outputs' alone."""
    (tmp_path / ".data.jsonl.abc123.tmp").write_text("half")
    (tmp_path / ".model.xyz.tmp").mkdir()
    (tmp_path / ".other.jsonl.q1.tmp").write_text("someone else's")
    with atomic_path(tmp_path / "data.jsonl") as tmp:
        tmp.write_text("whole")
    with atomic_path(tmp_path / "model", is_dir=True) as tmp:
        (tmp / "w").write_text("x")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.jsonl.q1.tmp", "data.jsonl", "model"]


def test_a_jobs_outputs_appear_together_at_its_end(tmp_path):
    """Declared outputs are held until the job's block ends (a kill before then leaves none
    of them, so Snakemake never meets an existing output marked incomplete); other writes go
    in at once; a second write of an output replaces the first's temporary."""
    outs = [tmp_path / "metrics.csv", tmp_path / "model"]
    with commit_outputs_together([str(o) for o in outs]):
        write_text(outs[0], "first")
        with atomic_path(outs[1], is_dir=True) as tmp:
            (tmp / "w").write_text("x")
        write_json(tmp_path / "checkpoint.json", {"step": 1})  # not an output: in at once
        assert (tmp_path / "checkpoint.json").exists()
        assert not outs[0].exists() and not outs[1].exists()
        write_text(outs[0], "second")
    assert outs[0].read_text() == "second" and (outs[1] / "w").read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.json", "metrics.csv", "model"]


def test_a_failed_job_commits_none_of_its_outputs(tmp_path):
    outs = [tmp_path / "a.json", tmp_path / "b.json"]
    with pytest.raises(SoftError), commit_outputs_together(outs):
        write_json(outs[0], {})
        raise SoftError("the second output could not be made")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- read_jsonl errors


def _err(path: Path, **kw) -> str:
    with pytest.raises(SoftError) as info:
        read_jsonl(path, FIELDS, **kw)
    return str(info.value)


def test_malformed_json_line(tmp_path):
    p = _write(tmp_path / "a.jsonl", '{"id": "a", "n": 1}\n{"id": "b", "n": \n')
    msg = _err(p)
    assert str(p) in msg
    assert "line 2" in msg
    assert "not valid JSON" in msg


def test_non_object_line(tmp_path):
    p = _write(tmp_path / "a.jsonl", '{"id": "a", "n": 1}\n{"id": "b", "n": 2}\n[1, 2]\n')
    msg = _err(p)
    assert str(p) in msg and "line 3" in msg
    assert "expected a JSON object, got list" in msg


def test_missing_required_field(tmp_path):
    p = _write(tmp_path / "a.jsonl", '{"id": "a"}\n')
    msg = _err(p)
    assert str(p) in msg and "line 1" in msg
    assert "missing field 'n'" in msg


def test_optional_field_may_be_absent(tmp_path):
    p = _write(tmp_path / "a.jsonl", '{"id": "a", "n": 1}\n')
    assert read_jsonl(p, FIELDS) == [{"id": "a", "n": 1}]


def test_wrong_type(tmp_path):
    p = _write(tmp_path / "a.jsonl", '{"id": "a", "n": 1}\n{"id": "b", "n": "2"}\n')
    msg = _err(p)
    assert str(p) in msg and "line 2" in msg
    assert "field 'n' must be int, got str" in msg


def test_bool_is_not_an_int(tmp_path):
    p = _write(tmp_path / "a.jsonl", '{"id": "a", "n": true}\n')
    msg = _err(p)
    assert str(p) in msg and "line 1" in msg
    assert "field 'n' must be int, got bool" in msg


def test_bool_accepted_where_bool_expected(tmp_path):
    p = _write(tmp_path / "a.jsonl", '{"id": "a", "flag": false}\n')
    assert read_jsonl(p, {"id": (str, True), "flag": (bool, True)}) == [{"id": "a", "flag": False}]


def test_empty_string_in_non_empty_field(tmp_path):
    p = _write(tmp_path / "a.jsonl", '{"id": "a", "n": 1, "text": "ok"}\n{"id": "b", "n": 1, "text": "   "}\n')
    msg = _err(p, non_empty=["text"])
    assert str(p) in msg and "line 2" in msg
    assert "field 'text' is empty" in msg
    # without non_empty, a blank string is fine
    assert len(read_jsonl(p, FIELDS)) == 2


def test_duplicate_id_names_first_line(tmp_path):
    p = _write(tmp_path / "a.jsonl", '{"id": "a", "n": 1}\n{"id": "b", "n": 2}\n\n{"id": "a", "n": 3}\n')
    msg = _err(p)
    assert str(p) in msg and "line 4" in msg
    assert "duplicate id 'a'" in msg
    assert "first on line 1" in msg


def test_non_utf8_bytes(tmp_path):
    p = _write(tmp_path / "a.jsonl", b'{"id": "a", "n": 1}\n{"id": "b\xff\xfe", "n": 2}\n')
    msg = _err(p)
    assert str(p) in msg and "line 2" in msg
    assert "not valid UTF-8" in msg


def test_empty_file(tmp_path):
    p = _write(tmp_path / "a.jsonl", "")
    msg = _err(p)
    assert str(p) in msg
    assert "no records" in msg
    assert read_jsonl(p, FIELDS, allow_empty=True) == []


def test_blank_only_file_is_empty(tmp_path):
    p = _write(tmp_path / "a.jsonl", "\n   \n\n")
    assert "no records" in _err(p)
    assert read_jsonl(p, FIELDS, allow_empty=True) == []


def test_missing_file(tmp_path):
    p = tmp_path / "nope.jsonl"
    msg = _err(p)
    assert str(p) in msg and "file not found" in msg


def test_too_long_line(tmp_path, monkeypatch):
    monkeypatch.setattr(sio, "MAX_LINE_CHARS", 30)
    short = '{"id": "a", "n": 1}'
    long = json.dumps({"id": "b", "n": 2, "text": "x" * 40})
    p = _write(tmp_path / "a.jsonl", f"{short}\n{long}\n")
    msg = _err(p)
    assert str(p) in msg and "line 2" in msg
    assert f"{len(long)} characters long (limit 30)" in msg


def test_check_callback_message_has_location(tmp_path):
    p = _write(tmp_path / "a.jsonl", '{"id": "a", "n": 1}\n{"id": "b", "n": -1}\n')
    with pytest.raises(SoftError, match=r"a\.jsonl: line 2: n must be >= 0"):
        read_jsonl(p, FIELDS, check=lambda r: "n must be >= 0" if r["n"] < 0 else None)


def test_blank_lines_skipped_and_line_numbers_kept(tmp_path):
    p = _write(tmp_path / "a.jsonl", '\n{"id": "a", "n": 1}\n   \n\n{"id": "b", "n": 2}\n\n{"id": "c"}\n')
    msg = _err(p)
    assert "line 7" in msg and "missing field 'n'" in msg
    p2 = _write(tmp_path / "b.jsonl", '\n{"id": "a", "n": 1}\n   \n\n{"id": "b", "n": 2}\n\n')
    assert read_jsonl(p2, FIELDS) == [{"id": "a", "n": 1}, {"id": "b", "n": 2}]


# ---------------------------------------------------------------- writing


def test_write_jsonl_round_trip(tmp_path):
    records = [
        {"id": "x1", "n": 3, "text": "héllo — ünïcode ✓"},
        {"id": "x2", "n": 0, "text": "line\nbreak and \"quotes\""},
        {"n": 7, "id": "x3"},
    ]
    p = tmp_path / "out" / "r.jsonl"
    write_jsonl(p, records)
    assert read_jsonl(p, FIELDS) == records
    raw = p.read_text(encoding="utf-8")
    assert raw.count("\n") == 3
    assert "✓" in raw  # not ascii-escaped
    assert raw.splitlines()[2] == '{"id": "x3", "n": 7}'  # keys sorted


def test_write_json_is_byte_stable(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    write_json(a, {"b": 1, "a": {"z": [1, 2], "y": "é"}})
    write_json(b, {"a": {"y": "é", "z": [1, 2]}, "b": 1})
    assert a.read_bytes() == b.read_bytes()
    text = a.read_text(encoding="utf-8")
    assert text.index('"a"') < text.index('"b"')
    assert text.index('"y"') < text.index('"z"')
    assert text.endswith("}\n")
    assert read_json(a) == {"a": {"y": "é", "z": [1, 2]}, "b": 1}


def test_read_json_error_names_file_and_line(tmp_path):
    p = _write(tmp_path / "bad.json", '{\n  "a": 1,\n  oops\n}\n')
    with pytest.raises(SoftError) as info:
        read_json(p)
    assert str(p) in str(info.value)
    assert "line 3" in str(info.value)
