"""The pairwise judge (soft.judge): verdict parsing, both-order outcomes, an
OpenAI-compatible endpoint served by a local HTTP server, and the local model judge."""

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from tiny import make_tiny_model

from soft.errors import SoftError
from soft.judge import (EndpointJudge, LocalJudge, build_judge_prompt, judge_pairs, pair_outcome, parse_verdict,
                        run_comparisons, summarize)

PLANTED = "sk-test-PLANTED-9f8e7d6c"
KEY_ENV = "SOFT_TEST_JUDGE_KEY"


@pytest.mark.parametrize("text,verdict", [
    ("A", "A"), (" b.", "B"), ("Tie", "tie"), ("Answer A is better", "A"), ("**B**", "B"),
    ("tie - both fine", "tie"), ("", None), ("I cannot decide", None), ("Alpha", None), (None, None),
])
def test_parse_verdict(text, verdict):
    assert parse_verdict(text) == verdict


@pytest.mark.parametrize("ab,ba,outcome", [
    ("A", "B", "win"), ("A", "tie", "win"), ("tie", "B", "win"),
    ("B", "A", "loss"), ("B", "tie", "loss"), ("tie", "A", "loss"),
    ("A", "A", "tie"), ("B", "B", "tie"), ("tie", "tie", "tie"),  # position bias cancels
])
def test_pair_outcome_all_nine(ab, ba, outcome):
    assert pair_outcome(ab, ba) == outcome


def test_summarize():
    assert summarize(["win", "tie", "loss", "win"], unparsed=1) == {
        "n": 4, "win_rate": 0.5, "tie_rate": 0.25, "loss_rate": 0.25, "unparsed": 1}
    assert summarize([]) == {"n": 0, "win_rate": 0.0, "tie_rate": 0.0, "loss_rate": 0.0, "unparsed": 0}


class FakeEndpoint(BaseHTTPRequestHandler):
    """Prefers the answer that contains GOOD; answers 500 when asked to."""
    requests: list = []
    fail = False

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeEndpoint.requests.append({"auth": self.headers.get("Authorization"), "body": body})
        if FakeEndpoint.fail or self.headers.get("Authorization") != f"Bearer {PLANTED}":
            self.send_response(500 if FakeEndpoint.fail else 401)
            self.end_headers()
            return
        prompt = body["messages"][0]["content"]
        a = prompt.split("Answer A:")[1].split("Answer B:")[0]
        b = prompt.split("Answer B:")[1].split("Reply with")[0]
        verdict = "A" if "GOOD" in a and "GOOD" not in b else "B" if "GOOD" in b and "GOOD" not in a else "tie"
        reply = json.dumps({"choices": [{"message": {"role": "assistant", "content": verdict}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint():
    FakeEndpoint.requests, FakeEndpoint.fail = [], False
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeEndpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1/chat/completions"
    server.shutdown()
    server.server_close()


def test_endpoint_judge_rates_and_never_shows_the_key(endpoint, monkeypatch, caplog):
    monkeypatch.setenv(KEY_ENV, PLANTED)
    caplog.set_level(logging.DEBUG)
    judge = EndpointJudge(endpoint, "judge-model", KEY_ENV, max_retries=0)
    questions = ["q1", "q2", "q3", "q4"]
    cand = ["GOOD answer", "plain", "GOOD too", "same"]
    ref = ["plain", "GOOD ref", "GOOD as well", "same"]
    result = judge_pairs(judge, questions, cand, ref)
    assert [i["outcome"] for i in result["items"]] == ["win", "loss", "tie", "tie"]
    assert result["summary"] == {"n": 4, "win_rate": 0.25, "tie_rate": 0.5, "loss_rate": 0.25, "unparsed": 0}
    sent = [r["body"] for r in FakeEndpoint.requests]
    assert len(sent) == 8 and all(b["model"] == "judge-model" and b["temperature"] == 0 for b in sent)
    first, swapped = sent[0]["messages"][0]["content"], sent[1]["messages"][0]["content"]
    assert first == build_judge_prompt("q1", "GOOD answer", "plain")
    assert swapped == build_judge_prompt("q1", "plain", "GOOD answer")  # both orders asked
    assert all(r["auth"] == f"Bearer {PLANTED}" for r in FakeEndpoint.requests)
    # the key: only in the header, nowhere else
    assert PLANTED not in repr(judge) and PLANTED not in json.dumps(judge.describe())
    assert PLANTED not in json.dumps(result)
    assert PLANTED not in caplog.text

    FakeEndpoint.fail = True
    with pytest.raises(SoftError, match=r"judge endpoint http://127\.0\.0\.1:\d+/v1/chat/completions: HTTP 500 "
                                        r"after 1 attempts") as err:
        judge.verdicts(["x"])
    assert PLANTED not in str(err.value) and PLANTED not in caplog.text


def test_endpoint_judge_needs_its_key_variable(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(SoftError, match=f"environment variable {KEY_ENV} is not set"):
        EndpointJudge("http://127.0.0.1:9/v1/chat/completions", "m", KEY_ENV)


def test_local_judge_on_the_tiny_model(tmp_path):
    judge = LocalJudge(str(make_tiny_model(tmp_path / "judge")), batch_size=3)
    prompts = [build_judge_prompt(f"question {i}?", f"answer {i}", "other") for i in range(5)]
    first = judge.verdicts(prompts)
    assert len(first) == 5 and set(first) <= {"A", "B", "tie"}
    assert judge.verdicts(prompts) == first  # deterministic
    assert judge.verdicts(prompts[:1]) == first[:1]  # batching does not change a verdict
    assert judge.describe() == {"kind": "local", "model": "judge"}

    def answers(path, texts):
        path.write_text("".join(json.dumps({"id": f"p{i}", "prompt": f"question {i}?", "answer": t}) + "\n"
                                for i, t in enumerate(texts)))
        return str(path)

    cand = answers(tmp_path / "cand.jsonl", ["a", "b", "c"])
    ref = answers(tmp_path / "ref.jsonl", ["x", "y", "z"])
    out = run_comparisons(judge, [(1, "round0", cand, ref)], "soft")
    assert out["experiment"] == "soft" and out["comparisons"][0]["summary"]["n"] == 3
    assert [i["id"] for i in out["comparisons"][0]["items"]] == ["p0", "p1", "p2"]
