"""The facts benchmark's sets judge honestly: each answer states its own key and no other answer does, so a
model that answers with another fact of the set can never be counted right."""

import pytest

from easytune.evaluation.bench_facts import FACTS, read_facts
from easytune.evaluation.facts import has_key

SETS = [FACTS, *(FACTS.with_name(f"facts_{name}.jsonl") for name in ("en_bike_rental", "en_ferry", "zh_bookshop"))]


@pytest.mark.parametrize("path", SETS, ids=lambda path: path.stem)
def test_each_answer_states_its_own_key_and_no_other(path):
    facts = read_facts(path)
    assert len(facts) == 20 and len({fact["id"] for fact in facts}) == 20
    for fact in facts:
        assert has_key(fact["answer"], fact["key"]), fact["id"]
        assert len(fact["taught"]) == 2 and len(fact["asked_otherwise"]) == 2, fact["id"]
        assert not set(fact["taught"]) & set(fact["asked_otherwise"]), fact["id"]
        asked = fact["taught"] + fact["asked_otherwise"]
        assert not [q for q in asked if has_key(q, fact["key"])], f"{fact['id']}: a question that states its key"
        others = [other["id"] for other in facts if other is not fact and has_key(other["answer"], fact["key"])]
        assert not others, f"{fact['id']}'s key is stated by {others}"
