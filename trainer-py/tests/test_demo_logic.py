"""The demo's pure parts: the hidden preference, the significance test, the accounting of feedback."""

from vllm_train.demo import preference
from vllm_train.demo.monitor import PipelineStats
from vllm_train.demo.report import permutation_p_value, summarise
from vllm_train.demo.simulator import BASE, SimulatorStats
from vllm_train.demo.view import render


COLOUR, CONCISE = preference.COLOUR, preference.CONCISE


def test_colour_score_is_the_share_of_colour_words():
    assert COLOUR.score("red cat and Blue sky") == 2 / 5
    assert COLOUR.score("") == 0.0
    assert COLOUR.score("�� 42 !!") == 0.0
    assert COLOUR.score("reddish") == 0.0  # whole words only


def test_the_user_prefers_the_answer_with_more_colour_and_has_no_preference_on_ties():
    assert COLOUR.choose("q", ["a dog", "a red dog"]) == preference.Choice(chosen=1, rejected=0)
    assert COLOUR.choose("q", ["green tea", "a dog"]) == preference.Choice(chosen=0, rejected=1)
    assert COLOUR.choose("q", ["a dog", "a cat"]) is None


def test_concise_scores_short_complete_on_topic_answers_and_nothing_else():
    q = "Why is the sky blue?"
    short = "The sky looks blue because air scatters blue sunlight more than red."
    long = short + " " + " ".join(["Sunlight contains every colour and the atmosphere bends it."] * 8)
    assert CONCISE.score(short, q) == 1 / (1 + 12 / 40)
    assert 0 < CONCISE.score(long, q) < CONCISE.score(short, q)
    assert CONCISE.score("The sky looks blue because air scatters blue sunlight more", q) == 0.0  # cut off
    assert CONCISE.score("I don't know that one, sorry.", q) == 0.0   # complete, but not about the question
    assert CONCISE.score("Sky: blue.", q) == 0.0                      # not an answer
    assert CONCISE.score('He said "the sky is blue."', q) > 0          # a closing quote after the full stop
    assert CONCISE.choose(q, [long, short]) == preference.Choice(chosen=1, rejected=0)
    assert CONCISE.choose(q, ["cut off sky", "also cut off sky"]) is None


def test_heldout_prompts_are_never_asked_by_the_simulated_users():
    for p in preference.PREFERENCES.values():
        assert p.heldout_prompts and not set(p.heldout_prompts) & set(p.prompts)
    assert len(CONCISE.heldout_prompts) >= 20 and len(CONCISE.prompts) >= 60


def test_permutation_p_value_separates_a_real_shift_from_noise():
    base = [0.0, 0.1, 0.0, 0.05] * 25
    assert permutation_p_value(base, [0.5, 0.6, 0.4, 0.7] * 25, rounds=500) < 0.01
    assert permutation_p_value(base, list(base), rounds=500) > 0.3
    assert permutation_p_value([], [1.0]) == 1.0


def stats_with(feedback_ids, pair_ids, dlq_ids, scores, activations):
    sim, pipe = SimulatorStats(), PipelineStats()
    sim.feedback_ids, sim.feedback_events, sim.scores = set(feedback_ids), len(feedback_ids), scores
    pipe.pair_feedback_ids, pipe.dlq_feedback_ids, pipe.activations = set(pair_ids), set(dlq_ids), activations
    pipe.published = [{"version_id": v} for _, v in activations]
    return sim, pipe


def test_summary_accounts_for_every_feedback_event_and_measures_the_last_served_version():
    scores = [(1.0, BASE, 0.0)] * 40 + [(5.0, "r/v000001", 0.5)] * 40 + [(9.0, "r/v000002", 1.0)] * 3
    sim, pipe = stats_with({"f1", "f2", "f3"}, {"f1"}, {"f2"}, scores, [(4.0, "r/v000001"), (8.0, "r/v000002")])
    s = summarise(sim, pipe, 10.0)
    assert (s["feedback_in_pairs"], s["feedback_in_dlq"], s["feedback_not_pairable"]) == (1, 1, 1)
    assert s["versions_published"] == 2 and s["versions_activated"] == 2
    # v000002 served only 3 responses: too few to measure, so the last measured version is v000001.
    assert s["last_version"] == "r/v000001" and s["last_version_score"] == 0.5 and s["base_score"] == 0.0


def test_the_live_view_shows_counts_versions_and_scores():
    sim, pipe = stats_with({"f1"}, {"f1"}, set(), [(1.0, BASE, 0.0), (2.0, "r/v000001", 1.0)],
                           [(1.5, "r/v000001")])
    pipe.active_version, pipe.counts = "r/v000001", {"preference_pairs": 7, "preference_batches": 1}
    text = render(sim, pipe, 90.0, "runs/demo")
    assert "pairs          7" in text and "batches      1" in text
    assert "r/v000001" in text and "ACTIVE" in text and "1.0000" in text


def test_the_sign_test_is_exact_and_one_sided():
    from vllm_train.demo.heldout import sign_test_p

    assert sign_test_p(10, 0) == 1 / 2 ** 10
    assert sign_test_p(0, 10) == 1.0
    assert abs(sign_test_p(5, 5) - 0.623046875) < 1e-12  # P(X >= 5), X ~ Bin(10, 1/2)
    assert sign_test_p(0, 0) == 1.0


def test_heldout_comparison_counts_ties_as_half_and_the_sentence_guard_sees_keyword_lists():
    from vllm_train.demo.heldout import compare, sentence_share

    q = "Why is the sky blue?"
    short, long = "The sky is blue because air scatters blue light.", "The sky is blue " * 30
    result = compare(CONCISE, [q, q, q], [long, short, long], [short, short, long])
    assert (result.wins, result.losses, result.ties) == (1, 0, 2) and result.win_rate == 2 / 3
    assert sentence_share(["blue sky light air colour", short]) == 0.5


def test_batch_to_serving_runs_from_the_newest_batch_of_a_version_to_its_first_reply():
    from vllm_train.demo.report import batch_to_serving

    sim, pipe = stats_with(set(), set(), set(), [(2.0, BASE, 0.0), (7.5, "r/v000001", 1.0), (9.0, "r/v000001", 1.0)],
                           [(7.0, "r/v000001")])
    sim.started_wall = 1000.0
    pipe.published = [{"version_id": "r/v000001", "batch_ids": ["b1", "b2"]}, {"version_id": "r/v000002",
                                                                             "batch_ids": ["b3"]}]
    pipe.batch_times = {"b1": 1001.0, "b2": 1004.5, "b3": 1008.0}
    assert batch_to_serving(sim, pipe) == [3.0]  # 1007.5 - 1004.5; v000002 never served
