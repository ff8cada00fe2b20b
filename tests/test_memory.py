"""Memory: facts read from what people say, updated, forgotten, found by their questions.

The embedder is the real MiniLM; the stores are real SQLite files.
"""

from __future__ import annotations

import sqlite3
import statistics
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from coda.integrations.memory import VoiceMemory
from coda.memory.answers import from_memory
from coda.memory.extraction import extract
from coda.memory.model_extractor import checked, worth_a_model
from coda.memory.perspective import second_person, third_person
from coda.memory.questions import forget_request, likely_questions, personal_question
from coda.memory.store import NewMemory, SQLiteMemoryStore
from coda.modes.selection import KNOWN_REPLY
from coda.voice import (
    VoiceManager,
    VoiceMemoryConfig,
    VoiceMemoryIntegration,
    VoiceMessage,
    VoiceProcessingMode,
)

SCOPE = "user:ada"

# What people say, and the facts (first person, normalized) the rules must read.
LABELLED = [
    ("My dog is called Bella.", ["My dog is called Bella."]),
    ("I live in Lisbon.", ["I live in Lisbon."]),
    ("Um, I really like jazz music.", ["I like jazz music."]),
    ("Remember that my sister is a doctor.", ["My sister is a doctor."]),
    ("I'm allergic to peanuts.", ["I am allergic to peanuts."]),
    ("My favourite colour is green.", ["My favourite colour is green."]),
    ("Call me Ada.", ["My name is Ada."]),
    ("I have two cats. They are lazy.", ["I have two cats."]),
    ("We have a cat called Luna.", ["We have a cat called Luna.", "Our cat is called Luna."]),
    ("I moved to Berlin last year.", ["I live in Berlin."]),
    ("I work as a nurse at the city hospital.", ["I work as a nurse at the city hospital."]),
    ("I don't eat meat.", ["I don't eat meat."]),
    ("Hi, my name is Ada and I live in Porto.", ["My name is Ada.", "I live in Porto."]),
    ("My brother works for Siemens.", ["My brother works at Siemens."]),
    ("I'm vegetarian.", ["I am vegetarian."]),
    ("I'm 34 years old.", ["My age is 34."]),
    ("What is my dog called?", []),
    ("Is my sister a doctor?", []),
    ("Tell me a joke.", []),
    ("The weather is nice today.", []),
    ("What is 17 times 23?", []),
    ("I think so.", []),
    ("I went to the shop.", []),
    ("I'm tired.", []),
    ("I'm going home.", []),
    ("Do you like jazz?", []),
    ("Forget my wifi password.", []),
]


def test_the_rules_read_what_people_say() -> None:
    """Precision and recall 1.0 on the labelled utterances, the issue's misses included."""
    expected = {m for _, ms in LABELLED for m in ms}
    found = {f.text for text, _ in LABELLED for f in extract(text)}
    assert found - expected == set()  # nothing wrong (precision 1.0)
    assert expected - found == set()  # nothing missed (recall 1.0)
    (jazz,) = extract("I really like jazz music.")
    assert jazz.kind == "preference"
    (meat,) = extract("I don't eat meat.")
    assert meat.negated and meat.key == "i|eat|meat"


def test_keys_decide_what_supersedes_what() -> None:
    def key(text: str) -> str:
        return extract(text)[-1].key

    # One city at a time, whichever way it is said.
    assert key("I live in Berlin.") == key("I moved from Berlin to Paris.") == "i|live in"
    assert key("My sister lives in Lisbon.") != key("I live in Lisbon.")
    assert key("We have a cat called Luna.") == key("Our cat is named Tom.") == "my cat|is called"
    # Many likes; "I eat meat" undoes "I don't eat meat", "I eat fish" adds to it.
    assert key("I like tea.") != key("I like jazz.")
    assert key("I eat meat.") == key("I don't eat meat.") != key("I eat fish.")


def test_perspective_about_and_towards_the_user() -> None:
    assert second_person("My sister lives in Lisbon.") == "Your sister lives in Lisbon."
    assert second_person("I am allergic to peanuts.") == "You are allergic to peanuts."
    assert second_person("I'm from Porto.") == "You're from Porto."
    assert second_person("I was born in Madrid.") == "You were born in Madrid."
    assert second_person("Our cat and I like jazz.") == "Your cat and you like jazz."
    assert second_person("Call me Ada.") == "You like to be called Ada."
    assert second_person("The weather is nice.") == "The weather is nice."  # nothing to turn
    assert third_person("My sister lives in Lisbon.") == "The user's sister lives in Lisbon."
    assert third_person("I am allergic to peanuts.") == "The user is allergic to peanuts."
    assert third_person("I don't eat meat.") == "The user doesn't eat meat."
    assert third_person("We have a cat called Luna.") == "The user has a cat called Luna."
    assert third_person("I study law.") == "The user studies law."


def test_personal_questions_and_forget_requests() -> None:
    for question in (
        "What is my name?",
        "Where do I live?",
        "In which city does my sister live?",
        "How old am I?",
        "Can you tell me my wifi password?",
        "What am I allergic to?",
    ):
        assert personal_question(question) is not None, question
    for other in (
        "What should I cook for my sister?",
        "What is the capital of France?",
        "Tell me a joke.",
        "How do I make pasta?",
        "My name is Ada.",
    ):
        assert personal_question(other) is None, other
    asked = personal_question("What is my wifi password?")
    assert asked is not None
    assert asked.not_told() == "I don't know. You haven't told me about your wifi password yet."
    assert forget_request("Please forget my wifi password.") == "my wifi password"
    assert forget_request("Forget it.") is None
    assert forget_request("My name is Ada.") is None


def test_the_model_cannot_invent_a_value() -> None:
    said = "My grandmother was a teacher in Lyon."
    facts = checked(
        said,
        [
            {"subject": "my grandmother", "relation": "was", "value": "a teacher", "negated": True},
            {"subject": "my grandmother", "relation": "lives in", "value": "Paris"},  # not said
            {"subject": "the weather", "relation": "is", "value": "Lyon"},  # not about the user
        ],
    )
    assert [f.text for f in facts] == ["My grandmother was a teacher."]  # no negation was said
    assert worth_a_model(said) and not worth_a_model("What is my dog called?")
    assert not worth_a_model("The weather is nice today.")


@pytest.fixture
async def memory(tmp_path: Path) -> AsyncIterator[VoiceMemoryIntegration]:
    integration = VoiceMemoryIntegration(
        VoiceMemory.at(tmp_path / "memory.sqlite3"), VoiceMemoryConfig(model_extraction=False)
    )
    yield integration
    await integration.close()


async def test_a_question_finds_the_statement_that_answers_it(
    memory: VoiceMemoryIntegration,
) -> None:
    """Indexing facts by their questions closes MiniLM's question/statement gap."""
    pairs = [
        ("My sister lives in Lisbon.", "In which city does my sister live?"),
        ("We have a cat called Luna.", "What's the name of our cat?"),
        ("I work as a nurse.", "What's my job?"),
        ("I moved to Berlin last year.", "Where do I live now?"),
        ("My name is Ada.", "Do you remember my name?"),
        ("My brother works for Siemens.", "Who does my brother work for?"),
        ("I'm from Canada.", "Where am I from?"),
    ]
    embedder = (await memory._ready()).embedder
    direct = []
    for statement, question in pairs:
        await memory.learn(SCOPE, statement)
        vectors = await embedder.embed([statement, question])
        direct.append(float(vectors[0] @ vectors[1]))
    indexed = []
    for statement, question in pairs:
        (found, *_) = await memory.search(SCOPE, question, 3, threshold=0.0)
        assert found["text"] == extract(statement)[-1].text, question
        indexed.append(found["cosine"])
    # Measured: statement alone 0.36-0.75 (mean 0.53); with its questions 0.85-1.0.
    assert statistics.mean(direct) < 0.65
    assert statistics.mean(indexed) >= 0.9 and min(indexed) >= 0.8
    # Unrelated facts stay out: someone else's, or another pet's.
    for question in ("Where does my mother live?", "What is my dog called?"):
        assert await memory.search(SCOPE, question, 5) == [], question
    # The brother's employer is about him, but does not say where he lives.
    brother = await memory.recall(SCOPE, "Where does my brother live?")
    assert brother["reply"] == "I don't know. You haven't told me that yet."
    mine = await memory.search(SCOPE, "Where do I live?", 5)
    assert [m["text"] for m in mine] == ["I live in Berlin."]  # not the sister's Lisbon


async def test_updates_supersede_and_keep_history(memory: VoiceMemoryIntegration) -> None:
    await memory.learn(SCOPE, "I live in Berlin.")
    await memory.learn(SCOPE, "I moved from Berlin to Paris.")
    found = await memory.search(SCOPE, "Where do I live?", 5)
    assert [m["text"] for m in found] == ["I live in Paris."]
    store = (await memory._ready()).store
    assert [m.text for m in await store.history(SCOPE)] == ["I live in Berlin."]
    await memory.learn(SCOPE, "I don't eat meat.")
    await memory.learn(SCOPE, "I eat meat again.")
    found = await memory.search(SCOPE, "Do I eat meat?", 5)
    assert [m["text"] for m in found] == ["I eat meat."]
    await memory.learn(SCOPE, "I live in Paris.")  # a repeat is merged, not history
    stats = memory.get_integration_stats()
    assert stats["updated"] == 2 and stats["merged"] == 1
    assert await store.count(SCOPE) == 2


async def test_forgetting_removes_the_fact_and_says_so(memory: VoiceMemoryIntegration) -> None:
    await memory.learn(SCOPE, "My wifi password is tulip42.")
    await memory.learn(SCOPE, "My wifi password is daisy7.")  # history of the same fact
    await memory.learn(SCOPE, "My sister lives in Lisbon.")
    recalled = await memory.recall(SCOPE, "Please forget my wifi password.")
    assert recalled["reply"] == "Okay, I've forgotten your wifi password."
    store = (await memory._ready()).store
    assert await store.count(SCOPE) == 1 and await store.history(SCOPE) == []
    asked = await memory.recall(SCOPE, "What is my wifi password?")
    assert asked["reply"] == "I don't know. You haven't told me about your wifi password yet."
    nothing = await memory.recall(SCOPE, "Forget my bank PIN.")
    assert nothing["reply"] == "I didn't have anything saved about your bank PIN."
    assert await memory.learn(SCOPE, "Forget my sister.") == 0  # a request, not a fact


async def test_answers_from_memory_are_in_the_second_person(
    memory: VoiceMemoryIntegration,
) -> None:
    await memory.learn(SCOPE, "We have a cat called Luna.")
    await memory.learn(SCOPE, "I'm allergic to peanuts. I'm also allergic to shellfish.")
    cat = await memory.recall(SCOPE, "What's our cat called?")
    assert cat["reply"] == "Your cat is called Luna."
    allergies = await memory.recall(SCOPE, "What am I allergic to?")
    said = {s.strip(".") for s in allergies["reply"].split(". ")}
    assert said == {"You are allergic to peanuts", "You are allergic to shellfish"}
    assert "The user is allergic to peanuts." in allergies["system_context"]
    # Not told: said honestly, unless this conversation already spoke of it.
    dog = personal_question("What is my dog called?")
    assert dog is not None
    told = from_memory(dog, [], 0.8, [])
    assert told is not None and told.used == ()
    assert told.text == "I don't know. You haven't told me about your dog yet."
    assert from_memory(dog, [], 0.8, ["My dog is called Rex."]) is None  # the LLM has the history
    asked_before = from_memory(dog, [], 0.8, ["What is my dog called?"])  # a question tells nothing
    assert asked_before is not None and "haven't told me" in asked_before.text
    knowledge = await memory.recall(SCOPE, "What is the capital of France?")
    assert knowledge["reply"] is None and knowledge["memories"] == []


async def test_a_store_from_before_facts_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:  # the schema before facts, with one memory
        db.execute(
            "CREATE TABLE memories (id INTEGER PRIMARY KEY AUTOINCREMENT, scope TEXT NOT NULL, "
            "kind TEXT NOT NULL, text TEXT NOT NULL, embedding BLOB NOT NULL, importance REAL "
            "NOT NULL, mentions INTEGER NOT NULL DEFAULT 1, created_at REAL NOT NULL, "
            "updated_at REAL NOT NULL)"
        )
        vector = bytes(4 * 384)
        db.execute(
            "INSERT INTO memories (scope, kind, text, embedding, importance, created_at, "
            "updated_at) VALUES (?, 'fact', 'I like tea.', ?, 0.5, 0, 0)",
            (SCOPE, vector),
        )
    store = SQLiteMemoryStore(path)
    await store.open()
    assert await store.count(SCOPE) == 1
    unit = np.zeros(384, np.float32)
    unit[0] = 1.0
    _, outcome = await store.remember(
        SCOPE, NewMemory("fact", "I live in Rome.", unit, "i|live in")
    )
    assert outcome == "new" and await store.count(SCOPE) == 2
    await store.close()


def test_likely_questions_speak_as_the_user() -> None:
    (sister,) = extract("My sister lives in Lisbon.")
    assert likely_questions(sister).startswith("Where does my sister live?")
    (allergy,) = extract("I'm allergic to peanuts.")
    assert "What am I allergic to?" in likely_questions(allergy)


async def test_a_reply_from_memory_needs_no_race(manager: VoiceManager) -> None:
    """Asked for adaptive (or hybrid), a known reply is spoken by the cascade, and says why."""
    told = VoiceMessage("race-told", b"", text_content="My dog is called Rex.", speaker="racer")
    await manager.process_voice_message(told)
    await manager.engine.require_ready().background.settled("racer", 120)
    asked = VoiceMessage("race-asked", b"", text_content="What is my dog called?", speaker="racer")
    response = await manager.process_voice_message(asked, VoiceProcessingMode.ADAPTIVE)
    assert response.text_content == "Your dog is called Rex."
    assert response.metadata["answered_from_memory"] is True
    selection = response.metadata["mode_selection"]
    assert selection["requested"] == "adaptive" and selection["chosen"] == "llm_enhanced"
    assert selection["reason"] == KNOWN_REPLY
