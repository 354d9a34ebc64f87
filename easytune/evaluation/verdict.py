"""From numbers to a judgement a non-expert can act on: improved, mixed, no_gain or harmful.

judge() reads the bucket metrics and the forgetting figures and returns message keys with their
numbers (headline, points, next steps); verdict_text() renders them in zh or en. Thresholds live in
presets/evaluation.yaml (`verdict:`).

- learned:   the seen bucket's answers are clearly more often right — every key fact of the reference
             (numbers, names, codes) in the answer (evaluation.facts) — where enough answers have such
             facts; else its answers match the references clearly better (raw text, which has no
             answers: its loss fell clearly);
- style_only: the answers moved towards the data (they match better, or the loss fell) but the facts
             did not come with them: "learned the style, not the facts yet";
- not_yet:   the seen bucket's loss fell clearly but its answers do not match clearly better yet: the model
             moved towards the data without its answers becoming the data's;
- transfers: the unseen bucket got better too (None when there is no unseen bucket, or too few of its
             questions to tell the rise from chance);
- by_chance: the buckets whose facts rose by the threshold yet by too few questions to tell from chance
             (a one-sided sign test on the questions one model got right and the other wrong): such a rise
             counts neither as learned nor as carried over, and the user is told to ask more questions;
- worse:     the seen bucket got clearly worse;
- forgetting: little | some | severe, from the gatekeeper (general questions with answer keys: how many
             fewer it answers right; its loss) and the training's own forgetting score. More than
             `general_facts_drop` fewer general questions right is never "improved";
- mixed up:  wrong answers that are another answer of the data (service.mixed_up): the point names the one given
             instead most often, so the user sees which facts it tells apart only by the words they were taught.

harmful  = the task got worse, or the model forgot severely without learning the task;
improved = learned, carries over (or cannot be checked), and no severe forgetting;
mixed    = learned, but forgot severely or only memorised the training rows;
no_gain  = nothing changed enough to matter (headline `not_yet` when only the loss moved).

The verdict names are stored and compared; the headline key says which case of a verdict it is.
"""

from __future__ import annotations

import math

from easytune.i18n import t

VERDICTS = ("improved", "mixed", "no_gain", "harmful")  # best first: the order versions are ranked in


def pct(value: float | None) -> int | None:
    return None if value is None else round(100 * value)


def change_pct(base: float | None, tuned: float | None) -> float | None:
    """Relative change of a loss, in percent of the base."""
    if base is None or tuned is None or base <= 0:
        return None
    return 100 * (tuned - base) / base


def _delta(bucket: dict) -> tuple[float | None, float | None]:
    """(match change in points 0…1, loss change %) of one bucket, None where not measured."""
    base, tuned = bucket.get("base") or {}, bucket.get("tuned") or {}
    match = (tuned["rouge_l"] - base["rouge_l"]) if base.get("rouge_l") is not None and \
        tuned.get("rouge_l") is not None else None
    return match, change_pct(base.get("loss"), tuned.get("loss"))


def _better(bucket: dict, match_gain: float, loss_drop: float) -> bool:
    """Answers match the reference clearly better; or the loss fell clearly and answers match at least a
    little better. A falling loss alone is not enough: from a base that knows nothing of the task
    (9 nats per token) a broken model's loss can fall by a quarter while every answer is gibberish."""
    match, loss = _delta(bucket)
    if match is not None and match >= match_gain:
        return True
    return loss is not None and loss <= -loss_drop and (match is None or match > 0)


def _learned(bucket: dict, limits: dict) -> tuple[bool, bool]:
    """(learned, not_yet) of the seen bucket. Where answers are scored, only a clear rise of the match counts as
    learned: the loss can halve while the answers stay at 4% of the reference, and that run has moved towards
    the data without being able to answer from it. Raw text has only its loss."""
    match, loss = _delta(bucket)
    fell = loss is not None and loss <= -limits["learned_loss_pct"]
    if match is None:
        return fell, False
    learned = match >= limits["learned_match"]
    return learned, fell and not learned


def facts_gain(bucket: dict, limits: dict) -> float | None:
    """Change in the share of answers right by their facts (points 0…1); None where too few can be judged."""
    base, tuned = bucket.get("base") or {}, bucket.get("tuned") or {}
    if base.get("facts") is None or tuned.get("facts") is None:
        return None
    if min(base.get("facts_judged", 0), tuned.get("facts_judged", 0)) < limits["facts_min"]:
        return None
    return tuned["facts"] - base["facts"]


def could_be_chance(bucket: dict, limits: dict) -> bool:
    """Whether the bucket's change of facts right could be chance: a coin tossed for each question that only one
    model answers right would split them at least as unevenly more than `chance_p` of the time (a one-sided sign
    test). A result stored before the counts were kept: False, as it was judged then."""
    change = bucket.get("facts_change")
    if not change:
        return False
    asked, more = change["gained"] + change["lost"], max(change["gained"], change["lost"])
    tail = sum(math.comb(asked, k) for k in range(more, asked + 1)) / 2 ** asked
    return tail > limits["chance_p"]


def partly_carried(seen: dict, unseen: dict, limits: dict) -> dict | None:
    """{seen, unseen} (% right) where the facts carry over to new questions clearly, but to fewer than half as
    many as on the questions it was taught: a user must hear that it answers mostly when asked the taught way."""
    if facts_gain(seen, limits) is None or facts_gain(unseen, limits) is None:
        return None
    taught, new = seen["tuned"]["facts"], unseen["tuned"]["facts"]
    return {"seen": pct(taught), "unseen": pct(new)} if new < taught / 2 else None


def forgetting_level(gatekeeper: dict, cf_level: str | None, limits: dict) -> str:
    match, loss = _delta(gatekeeper)
    lost = -match if match is not None else 0.0
    loss = loss or 0.0
    facts = facts_gain(gatekeeper, limits)
    lost_facts = -facts if facts is not None else 0.0
    if loss >= limits["severe_forgetting_pct"] or lost >= limits["severe_forgetting_match"] or cf_level == "error" \
            or lost_facts >= limits["severe_general_facts_drop"]:
        return "severe"
    if loss >= limits["some_forgetting_pct"] or lost >= limits["some_forgetting_match"] or cf_level == "warning" \
            or lost_facts > limits["general_facts_drop"]:
        return "some"
    return "little"


def unread_language(buckets: dict, limits: dict) -> dict | None:
    """{"language", "base", "other"} where most of the user's questions are in a language ('zh' or 'en') the base
    model does not read: it answers (almost) none of the general questions in it and a fair share in the other.
    Such a model learns to repeat the answers, not to understand a question put in new words."""
    asked = buckets["seen"].get("languages") or {}
    general = buckets["gatekeeper"].get("languages") or {}
    main = max(asked, key=lambda lang: asked[lang]["rows"], default=None)
    if main not in ("zh", "en") or 2 * asked[main]["rows"] < sum(entry["rows"] for entry in asked.values()):
        return None
    mine, other = general.get(main), general.get("en" if main == "zh" else "zh")
    if not mine or not other or min(mine["judged"], other["judged"]) < limits["facts_min"]:
        return None
    if mine["base"] > limits["unread_language_right"] or other["base"] < limits["read_language_right"]:
        return None
    return {"language": main, "base": pct(mine["base"]), "other": pct(other["base"])}


def _mix_up(summary: dict) -> dict:
    """The numbers and the shortened questions of a bucket's mix-ups (service.mixed_up), for its point."""
    return {**{k: summary[k] for k in ("count", "wrong", "times")},
            "question": _short(summary["question"]), "example": _short(summary["example"])}


def _short(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def _p(key: str, **params) -> dict:
    return {"key": f"evaluation.{key}", "params": params}


def _called(name: str, bucket: dict) -> str:
    """How the verdict's lines call a bucket: the user's own test questions as theirs, else by its name."""
    return "questions" if bucket.get("source") == "questions" else name


def _named(bucket: dict) -> dict:
    """The test questions' dataset name, for the points that name it."""
    return {"name": bucket["dataset"]} if bucket.get("dataset") else {}


def judge(buckets: dict, forgetting: dict, limits: dict, retention: float = 0.0) -> dict:
    """{"verdict", "headline", "points", "next", "signals"} from the measured buckets. `retention`: the share of
    general text the run already mixed in (the advice against forgetting differs when it was on)."""
    seen, unseen, general = buckets["seen"], buckets["unseen"], buckets["gatekeeper"]
    learned, not_yet = _learned(seen, limits) if seen.get("tuned") else (False, False)
    worse = bool(seen.get("tuned")) and not learned and (  # the same test, with base and tuned swapped
        _better({"base": seen["tuned"], "tuned": seen["base"]}, limits["worse_match"], limits["worse_loss_pct"]))
    transfers = (_better(unseen, limits["transfer_match"], limits["transfer_loss_pct"])
                 if unseen.get("tuned") else None)
    style_only = False
    seen_facts, unseen_facts = facts_gain(seen, limits), facts_gain(unseen, limits)
    by_chance = [name for name, gain, enough in (("seen", seen_facts, limits["learned_facts"]),
                                                 ("unseen", unseen_facts, limits["transfer_facts"]))
                 if gain is not None and gain >= enough and could_be_chance(buckets[name], limits)]
    if seen_facts is not None:  # answers with facts to check: the facts decide, not how the answers sound
        style_only = (learned or not_yet) and seen_facts < limits["learned_facts"]
        learned, not_yet = seen_facts >= limits["learned_facts"] and "seen" not in by_chance, False
        worse = seen_facts <= -limits["learned_facts"]
    if unseen_facts is not None:
        transfers = None if "unseen" in by_chance else unseen_facts >= limits["transfer_facts"]
    level = forgetting_level(general, forgetting.get("cf_level"), limits)
    general_facts = facts_gain(general, limits)
    general_fell = general_facts is not None and -general_facts > limits["general_facts_drop"]

    if worse or (level == "severe" and not learned):
        verdict = "harmful"
    elif learned and transfers is not False and level != "severe" and not general_fell:
        verdict = "improved"
    elif learned:
        verdict = "mixed"
    else:
        verdict = "no_gain"

    points = []
    for name in ("seen", "unseen", "gatekeeper"):
        if facts_gain(buckets[name], limits) is not None:
            points.append(_p(f"point.facts_{_called(name, buckets[name])}",
                             tuned=pct(buckets[name]["tuned"]["facts"]), base=pct(buckets[name]["base"]["facts"]),
                             judged=buckets[name]["tuned"]["facts_judged"], **_named(buckets[name])))
        probe = [(buckets[name].get(side) or {}).get("probe") for side in ("base", "tuned")]
        if None not in probe:
            points.append(_p(f"point.probe_{_called(name, buckets[name])}", tuned=pct(probe[1]), base=pct(probe[0]),
                             **_named(buckets[name])))
    for name in ("seen", "unseen"):
        bucket = buckets[name]
        key = f"point.{name}_{bucket['source']}" if name == "unseen" else "point.seen"
        if not bucket.get("tuned"):
            points.append(_p(bucket["missing"].removeprefix("evaluation.")))
        elif bucket["tuned"].get("rouge_l") is None:  # raw text (continued pre-training): loss only
            points.append(_p(key + "_loss", change=round(_delta(bucket)[1] or 0.0), rows=bucket["rows"]))
        else:
            points.append(_p(key, tuned=pct(bucket["tuned"]["rouge_l"]), base=pct(bucket["base"]["rouge_l"]),
                             rows=bucket["rows"], **_named(bucket)))
            if bucket["tuned"].get("exact_match") is not None:
                points.append(_p("point.exact", tuned=pct(bucket["tuned"]["exact_match"]),
                                 base=pct(bucket["base"]["exact_match"])))
    if unseen.get("left_out"):  # trained on since: not new questions any more (buckets.job_buckets)
        points.append(_p("point.questions_left_out", count=unseen["left_out"], **_named(unseen)))
    match, loss = _delta(general)
    points.append(_p(f"point.general_{level}", change=round(loss or 0.0), tuned=pct(general["tuned"]["rouge_l"]),
                     base=pct(general["base"]["rouge_l"])))
    if forgetting.get("cf_pct") is not None:
        points.append(_p("point.cf", pct=round(forgetting["cf_pct"]), nats=round(forgetting["cf_score"], 2)))

    steps = []
    if verdict == "harmful":
        steps.append(_p("next.lower_lr"))
    if level != "little":  # knowledge retention, or, where it was on already, a lower rate or a larger model
        steps.append(_p("next.retention") if retention < 0.3
                     else _p("next.retention_was_on", pct=round(100 * retention)))
    if style_only:
        steps.append(_p("next.facts_not_yet"))
    elif verdict == "no_gain" and "seen" not in by_chance:
        steps.append(_p("next.not_yet" if not_yet else "next.train_more"))
    for name in by_chance:
        bucket = buckets[name]
        points.append(_p(f"point.by_chance_{_called(name, bucket)}", judged=bucket["tuned"]["facts_judged"],
                         **bucket["facts_change"]))
    if by_chance:
        steps.append(_p("next.more_questions"))
    partly = partly_carried(seen, unseen, limits) if transfers else None  # rose, but far from the taught questions
    if partly:
        points.append(_p("point.partly_carried", **partly, **_named(unseen)))
    mixed = [name for name in ("seen", "unseen")
             if (buckets[name].get("mixed_up") or {}).get("count", 0) >= limits["mixed_up_min"]]
    for name in mixed:
        points.append(_p(f"point.mixed_up_{_called(name, buckets[name])}", **_mix_up(buckets[name]["mixed_up"]),
                         **_named(buckets[name])))
    if learned and transfers is False:
        steps.append(_p("next.more_variety"))
    elif learned and partly:
        steps.append(_p("next.ask_other_ways"))
    elif mixed and not style_only:
        steps.append(_p("next.tell_apart"))
    if transfers is None and "unseen" not in by_chance:
        steps.append(_p("next.hold_out"))
    unread = unread_language(buckets, limits)
    if unread:
        points.append(_p(f"point.unread_{unread['language']}", base=unread["base"], other=unread["other"]))
        steps.append(_p(f"next.model_reads_{unread['language']}"))
    if verdict == "improved":
        steps.append(_p("next.safety_export"))

    headline = _headline(verdict, seen, not_yet, level, style_only, general_fell)
    return {"verdict": verdict, "headline": _p(f"headline.{headline}"), "points": points, "next": steps,
            "signals": {"learned": learned, "not_yet": not_yet, "style_only": style_only, "transfers": transfers,
                        "worse": worse, "forgetting": level, "general_loss_pct": loss, "general_match_change": match,
                        "unread_language": unread["language"] if unread else None, "by_chance": by_chance,
                        "facts_gain": {"seen": seen_facts, "unseen": unseen_facts, "gatekeeper": general_facts}}}


def _headline(verdict: str, seen: dict, not_yet: bool, level: str, style_only: bool = False,
              general_fell: bool = False) -> str:
    """The case of the verdict a user must hear: a headline claims better answers only where the match rose,
    and a cost only where there was one."""
    if verdict == "no_gain" and style_only:
        return "style_not_facts"
    if verdict == "no_gain" and not_yet:
        return "not_yet"
    if verdict == "improved" and (seen.get("tuned") or {}).get("rouge_l") is None:
        return "improved_text"  # raw text: its loss fell, there are no answers to speak of
    if verdict == "mixed" and level != "severe" and not general_fell:
        return "mixed_memorised"  # the cost is that it does not carry over, not what it forgot
    return verdict


def verdict_text(result: dict, lang: str = "zh") -> str:
    """The verdict as plain sentences: the headline, what was measured, what to do next."""
    lines = [t(result["headline"]["key"], lang, **result["headline"]["params"])]
    lines += [t(p["key"], lang, **p["params"]) for p in result["points"]]
    if result["next"]:
        lines.append(t("evaluation.next_head", lang))
        job = {"job": result.get("job_id") or "JOB"}  # the steps that name a command name the job
        lines += [f"- {t(p['key'], lang, **{**job, **p['params']})}" for p in result["next"]]
    return "\n".join(lines)


RIGHT_MARK = {True: "✓", False: "✗", None: "·"}  # every fact stated, a fact missing or wrong, nothing to check


def answers_label(name: str, bucket: dict, lang: str) -> str:
    """The heading of a bucket's answers: the user's test questions by their dataset's name."""
    key = "ui.eval.samples_questions" if bucket.get("source") == "questions" else f"ui.eval.samples_{name}"
    return t(key, lang) + (f" ({bucket['dataset']})" if bucket.get("dataset") else "")


def answers_text(result: dict, lang: str = "zh") -> str:
    """The answers kept per bucket as plain lines (`easytune eval --answers`): each question, its reference and
    facts, both models' answers marked right or wrong, and the taught answer a wrong one is instead."""
    lines = []
    for name, bucket in (result.get("buckets") or {}).items():
        if not bucket.get("samples"):
            continue
        lines += ["", answers_label(name, bucket, lang)]
        for sample in bucket["samples"]:
            facts = ", ".join(sample.get("facts") or [])
            instead = sample.get("tuned_instead")
            lines += [f"{RIGHT_MARK[sample.get('tuned_right')]} {sample['question']}",
                      f"    {t('ui.eval.col_reference', lang)}: {sample['reference']}"
                      + (f" ({facts})" if facts else ""),
                      f"    {t('ui.eval.col_base', lang)} {RIGHT_MARK[sample.get('base_right')]} {sample['base']}",
                      f"    {t('ui.eval.col_tuned', lang)} {RIGHT_MARK[sample.get('tuned_right')]} {sample['tuned']}"
                      + (f" ({t('ui.eval.instead', lang, question=instead)})" if instead else "")]
    return "\n".join(lines).strip("\n")
