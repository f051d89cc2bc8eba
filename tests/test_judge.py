"""The pairwise judge (soft.probe.judge): verdict parsing, both-order outcomes, an
OpenAI-compatible endpoint served by a local HTTP server, and the local model judge."""

import json
import logging
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
from tiny import make_tiny_model

from soft.errors import SoftError
from soft.probe.judge import (EndpointJudge, LocalJudge, build_judge_prompt, judge_pairs, match_verdict, pair_outcome,
                        pair_preference, parse_verdict, preference_summary, run_comparisons, summarize,
                        verdict_token_ids)

PLANTED = "sk-test-PLANTED-9f8e7d"
KEY_ENV = "SOFT_TEST_JUDGE_KEY"


@pytest.mark.parametrize("text,verdict", [
    ("A", "A"), (" b.", "B"), ("Tie", "tie"), ("TIE!", "tie"), ("Answer A is better", "A"), ("Answer: B", "B"),
    ("**B**", "B"), ("(a)", "A"), ("\n  tie - both fine", "tie"), ("Verdict: A", "A"), ("answer b\n", "B"),
])
def test_parse_verdict(text, verdict):
    assert parse_verdict(text) == verdict
    assert match_verdict(text) == verdict


@pytest.mark.parametrize("text", ["", "   ", None, "I cannot decide", "Alpha", "Tied", "Answer", "C", "both"])
def test_an_unparseable_reply_is_a_tie(text):
    assert parse_verdict(text) == "tie"
    assert match_verdict(text) is None  # what the judges count as unparsed


@pytest.mark.parametrize("ab,ba,outcome", [
    ("A", "B", "win"), ("A", "tie", "win"), ("tie", "B", "win"),
    ("B", "A", "loss"), ("B", "tie", "loss"), ("tie", "A", "loss"),
    ("A", "A", "tie"), ("B", "B", "tie"), ("tie", "tie", "tie"),  # position bias cancels
])
def test_pair_outcome_all_nine(ab, ba, outcome):
    assert pair_outcome(ab, ba) == outcome


def test_pair_outcome_refuses_what_is_no_verdict():
    with pytest.raises(SoftError, match="judge verdict 'a' is not one of A, B, tie"):
        pair_outcome("a", "B")


def test_summarize():
    assert summarize(["win", "tie", "loss", "win"], unparsed=1) == {
        "n": 4, "win_rate": 0.5, "tie_rate": 0.25, "loss_rate": 0.25, "unparsed": 1}
    assert summarize(["win", "tie", "tie"], 0) == {
        "n": 3, "win_rate": 0.333333, "tie_rate": 0.666667, "loss_rate": 0.0, "unparsed": 0}
    assert summarize([], 0) == {"n": 0, "win_rate": 0.0, "tie_rate": 0.0, "loss_rate": 0.0, "unparsed": 0}
    with pytest.raises(SoftError, match="judge outcome 'draw'"):
        summarize(["win", "draw"], 0)


def test_pair_preference_cancels_position_bias():
    # the same distribution whichever answer comes first: no preference at all
    assert pair_preference((0.8, 0.1, 0.1), (0.8, 0.1, 0.1)) == pytest.approx(0.5)
    # the candidate (A first, B second) named with 0.7 and 0.6, ties counting half
    assert pair_preference((0.7, 0.2, 0.1), (0.3, 0.6, 0.1)) == pytest.approx(0.5 * (0.75 + 0.65))
    assert pair_preference((0.0, 1.0, 0.0), (1.0, 0.0, 0.0)) == 0.0


def test_preference_summary_interval_and_p():
    # every pair leans to the candidate: the interval lies above 0.5, Wilcoxon p = 2 / 2**8
    prefs = [0.55, 0.6, 0.52, 0.58, 0.61, 0.57, 0.54, 0.59]
    s = preference_summary(prefs)
    assert s["preference"] == pytest.approx(sum(prefs) / 8)
    assert 0.5 < s["preference_ci_low"] < s["preference"] < s["preference_ci_high"] < 0.62
    assert s["preference_p"] == pytest.approx(2 / 2 ** 8, abs=1e-6)
    assert preference_summary([])["preference"] is None


class AlwaysA:
    """A judge with total position bias."""
    def verdicts(self, prompts):
        return ["A"] * len(prompts)


def test_judge_pairs_cancels_position_bias_and_checks_lengths():
    out = judge_pairs(AlwaysA(), ["q1", "q2"], ["c1", "c2"], ["r1", "r2"])
    # total position bias: all ties, and a preference of exactly 0.5 with no spread
    assert out["summary"] == {"n": 2, "win_rate": 0.0, "tie_rate": 1.0, "loss_rate": 0.0, "unparsed": 0,
                              "preference": 0.5, "preference_ci_low": 0.5, "preference_ci_high": 0.5,
                              "preference_p": 1.0}
    assert out["items"][1] == {"index": 1, "ab": "A", "ba": "A", "outcome": "tie", "preference": 0.5}
    with pytest.raises(SoftError, match="2 questions, 1 candidate answers and 2 reference answers"):
        judge_pairs(AlwaysA(), ["q1", "q2"], ["c1"], ["r1", "r2"])
    short = SimpleNamespace(verdicts=lambda prompts: ["A"])
    with pytest.raises(SoftError, match="gave 1 verdicts for 4 prompts"):
        judge_pairs(short, ["q1", "q2"], ["c1", "c2"], ["r1", "r2"])


SECTIONS = re.compile(r"Answer A:\n(.*)\n\nAnswer B:\n(.*)\n\nReply with", re.DOTALL)


class FakeEndpoint(BaseHTTPRequestHandler):
    """Prefers the answer that contains GOOD; mumbles when the question says MUMBLE;
    answers 500 or broken JSON when `mode` says so, 401 without the planted key."""
    requests: list = []
    mode = "ok"

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeEndpoint.requests.append({"auth": self.headers.get("Authorization"), "body": body})
        if self.mode == "500" or self.headers.get("Authorization") != f"Bearer {PLANTED}":
            self.send_response(500 if self.mode == "500" else 401)
            self.end_headers()
            return
        prompt = body["messages"][0]["content"]
        a, b = SECTIONS.search(prompt).groups() if SECTIONS.search(prompt) else ("", "")
        verdict = "A" if "GOOD" in a and "GOOD" not in b else "B" if "GOOD" in b and "GOOD" not in a else "tie"
        if "MUMBLE" in prompt:
            verdict = "Both have merits"
        reply = json.dumps({"choices": [{"message": {"role": "assistant", "content": verdict}}]}).encode()
        if self.mode == "badjson":
            reply = reply[:-3]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint():
    FakeEndpoint.requests, FakeEndpoint.mode = [], "ok"
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeEndpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1/chat/completions"
    server.shutdown()
    server.server_close()
    FakeEndpoint.mode = "ok"  # test_secrets serves this handler too


def assert_key_hidden(caplog):
    for record in caplog.records:
        assert PLANTED not in record.getMessage() and PLANTED not in repr(vars(record))
    assert PLANTED not in caplog.text


def test_endpoint_judge_rates_and_never_shows_the_key(endpoint, monkeypatch, caplog):
    monkeypatch.setenv(KEY_ENV, PLANTED)
    caplog.set_level(logging.DEBUG)
    judge = EndpointJudge(endpoint, "judge-model", KEY_ENV, max_retries=0)
    questions = ["q1", "q2", "q3", "q4", "MUMBLE q5"]
    cand = ["GOOD answer", "plain", "GOOD too", "same", "GOOD"]
    ref = ["plain", "GOOD ref", "GOOD as well", "same", "plain"]
    result = judge_pairs(judge, questions, cand, ref)
    assert [i["outcome"] for i in result["items"]] == ["win", "loss", "tie", "tie", "tie"]
    assert result["items"][0] == {"index": 0, "ab": "A", "ba": "B", "outcome": "win", "preference": 1.0}
    assert result["items"][4] == {"index": 4, "ab": "tie", "ba": "tie", "outcome": "tie",
                                  "preference": 0.5}  # mumbled: ties
    # a replying judge's preference is its verdicts one-hot: 1, 0, 0.5, 0.5, 0.5
    assert [i["preference"] for i in result["items"]] == [1.0, 0.0, 0.5, 0.5, 0.5]
    summary = dict(result["summary"])
    assert summary.pop("preference") == 0.5 and summary.pop("preference_p") == 1.0
    assert summary.pop("preference_ci_low") <= 0.5 <= summary.pop("preference_ci_high")
    assert summary == {"n": 5, "win_rate": 0.2, "tie_rate": 0.6, "loss_rate": 0.2, "unparsed": 2}
    sent = [r["body"] for r in FakeEndpoint.requests]
    assert len(sent) == 10
    assert all(b["model"] == "judge-model" and b["temperature"] == 0 and b["max_tokens"] == 4
               and [m["role"] for m in b["messages"]] == ["user"] for b in sent)
    first, swapped = sent[0]["messages"][0]["content"], sent[1]["messages"][0]["content"]
    assert first == build_judge_prompt("q1", "GOOD answer", "plain")
    assert swapped == build_judge_prompt("q1", "plain", "GOOD answer")  # both orders asked
    assert all(r["auth"] == f"Bearer {PLANTED}" for r in FakeEndpoint.requests)
    # the key: only in the header, nowhere else
    assert PLANTED not in repr(judge) and PLANTED not in json.dumps(judge.describe())
    assert PLANTED not in json.dumps(result)
    assert any("judged 10/10" in r.getMessage() for r in caplog.records)
    assert_key_hidden(caplog)


@pytest.mark.parametrize("mode,problem", [("500", "HTTP 500"), ("badjson", "malformed JSON")])
def test_endpoint_judge_retries_then_fails_without_the_key(endpoint, monkeypatch, caplog, mode, problem):
    monkeypatch.setenv(KEY_ENV, PLANTED)
    caplog.set_level(logging.DEBUG)
    judge = EndpointJudge(endpoint, "judge-model", KEY_ENV, max_retries=2)
    judge.retry_wait_s = 0
    FakeEndpoint.mode = mode
    with pytest.raises(SoftError, match=rf"judge endpoint http://127\.0\.0\.1:\d+/v1/chat/completions: "
                                        rf"{problem} after 3 attempts") as err:
        judge.verdicts(["x"])
    assert len(FakeEndpoint.requests) == 3
    assert PLANTED not in str(err.value) and PLANTED not in repr(err.value)
    assert sum("attempt" in r.getMessage() for r in caplog.records) == 3
    assert_key_hidden(caplog)


@pytest.mark.parametrize("value", [None, ""])
def test_endpoint_judge_needs_its_key_variable(monkeypatch, value):
    if value is None:
        monkeypatch.delenv(KEY_ENV, raising=False)
    else:
        monkeypatch.setenv(KEY_ENV, value)
    with pytest.raises(SoftError, match=f"environment variable {KEY_ENV} is not set"):
        EndpointJudge("http://127.0.0.1:9/v1/chat/completions", "m", KEY_ENV)


def test_endpoint_judge_without_a_key_sends_no_authorization(endpoint):
    judge = EndpointJudge(endpoint, "m", None, max_retries=0)
    with pytest.raises(SoftError, match="HTTP 401 after 1 attempts"):
        judge.verdicts(["x"])
    assert FakeEndpoint.requests[0]["auth"] is None
    with pytest.raises(SoftError, match="'file:///etc/passwd' is not an http"):
        EndpointJudge("file:///etc/passwd", "m", None)


@pytest.fixture(scope="module")
def tiny_judge_dir(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("models") / "judge")


def test_local_judge_on_the_tiny_model(tiny_judge_dir, tmp_path):
    judge = LocalJudge(str(tiny_judge_dir), batch_size=3)
    assert judge.tokenizer.chat_template and judge.tokenizer.padding_side == "right"
    prompts = [build_judge_prompt(f"question {i}?" * (i + 1), f"answer {i}", "other") for i in range(5)]
    first = judge.verdicts(prompts)
    assert len(first) == 5 and set(first) <= {"A", "B", "tie"}
    assert judge.verdicts(prompts) == first  # deterministic
    assert [judge.verdicts([p])[0] for p in prompts] == first  # batching and padding change no verdict
    assert judge.describe() == {"kind": "local", "model": "judge"}
    probs = judge.probabilities(prompts)
    assert all(sum(p) == pytest.approx(1.0, abs=1e-5) for p in probs)
    assert [("A", "B", "tie")[max(range(3), key=p.__getitem__)] for p in probs] == first
    alone = [x for p in prompts for x in judge.probabilities([p])[0]]
    assert alone == pytest.approx([x for p in probs for x in p], abs=1e-5)  # batching changes nothing

    def answers(path, texts):
        path.write_text("".join(json.dumps({"id": f"p{i}", "prompt": f"question {i}?", "answer": t}) + "\n"
                                for i, t in enumerate(texts)))
        return str(path)

    cand = answers(tmp_path / "cand.jsonl", ["a", "b", "c"])
    ref = answers(tmp_path / "ref.jsonl", ["x", "y", "z"])
    out = run_comparisons(judge, [(1, "round0", cand, ref)], "soft")
    assert out["experiment"] == "soft" and out["comparisons"][0]["summary"]["n"] == 3
    assert out["comparisons"][0]["summary"]["unparsed"] == 0
    assert [i["id"] for i in out["comparisons"][0]["items"]] == ["p0", "p1", "p2"]


def test_local_judge_without_a_chat_template(tiny_judge_dir):
    judge = LocalJudge(str(tiny_judge_dir), batch_size=2)
    judge.tokenizer.chat_template = None
    text, special = judge.judge_text("Which is better?")
    # the plain layout (soft.layouts), no system prompt; the tokenizer adds its own specials
    assert text == "### User\nWhich is better?\n\n### Assistant\n" and special
    questions = ["q1", "q2", "q3"]
    out = judge_pairs(judge, questions, ["a1", "a2", "a3"], ["b1", "b2", "b3"])
    assert out["summary"]["n"] == len(questions)
    assert all(i["ab"] in ("A", "B", "tie") and i["ba"] in ("A", "B", "tie") for i in out["items"])
    assert judge_pairs(judge, questions, ["a1", "a2", "a3"], ["b1", "b2", "b3"]) == out


def test_verdict_tokens_must_differ():
    def same_first_token(text, add_special_tokens):
        return SimpleNamespace(input_ids=[7] if text in ("A", "tie") else [8])

    with pytest.raises(SoftError, match="m: the tokenizer does not give 'A', 'B' and 'tie' distinct first tokens"):
        verdict_token_ids(same_first_token, "m")
