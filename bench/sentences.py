"""The benchmark's input sentences.

Uses worker/demo_sentences.txt (the demo's real sentences) when it is there; otherwise builds a
deterministic set of English sentences whose length mix (4 to ~60 words, most 8-25) resembles
what producers send an embedding model: titles, questions, support tickets, review snippets.
"""

from __future__ import annotations

import random
from pathlib import Path

DEMO_SENTENCES = Path(__file__).resolve().parent.parent / "worker" / "demo_sentences.txt"

_SUBJECTS = [
    "The customer", "A small team of engineers", "Our nightly batch job", "The new release",
    "My neighbour's dog", "The city council", "A heavy storm", "The support agent",
    "This laptop", "The queue worker", "An old friend from school", "The quarterly report",
    "The train to Edinburgh", "Her research group", "The museum", "A local bakery",
]
_VERBS = [
    "reported", "fixed", "delayed", "announced", "reviewed", "cancelled", "improved",
    "described", "rejected", "published", "forgot", "measured", "shipped", "questioned",
]
_OBJECTS = [
    "the billing problem", "a faster checkout page", "the results of the survey",
    "a plan to reduce energy use", "the broken login flow", "the summer schedule",
    "an unexpected error in the payment service", "the price of fresh bread",
    "a list of open questions", "the final version of the contract", "new bike lanes",
    "the memory leak in the image pipeline", "a surprisingly good novel",
]
_CLAUSES = [
    "after the meeting on Tuesday", "because nobody had tested it on older phones",
    "although the deadline had already passed", "while most of the staff were on holiday",
    "without telling anyone in the finance department", "as the rain finally stopped",
    "before the auditors arrived", "so that the night shift could go home early",
    "even though the documentation said it was impossible", "in front of a large crowd",
    "despite several complaints from long-time users", "once the servers had been restarted",
]
_QUESTIONS = [
    "How do I reset my password if I no longer have access to my email?",
    "Why is my order still marked as pending after three days?",
    "Can I change the delivery address after the parcel has shipped?",
    "What is the difference between the standard and the premium plan?",
    "Is there a way to export all my data as a spreadsheet?",
    "Where can I find the invoice for last month?",
]
_SHORT = ["Great product.", "Not worth the money.", "Works as expected.", "Terrible support!",
          "Fast delivery, well packed.", "Would buy again."]


def generated_sentences(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    out: list[str] = []
    for _ in range(n):
        kind = rng.random()
        if kind < 0.12:
            out.append(rng.choice(_SHORT))
        elif kind < 0.25:
            out.append(rng.choice(_QUESTIONS))
        else:
            parts = [rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS)]
            for _ in range(rng.choice([0, 0, 1, 1, 1, 2, 3])):
                parts.append(rng.choice(_CLAUSES))
            out.append(" ".join(parts) + ".")
    return out


def load_sentences(n: int) -> tuple[list[str], str]:
    """`n` sentences (cycled if the source has fewer) and a word saying where they came from."""
    if DEMO_SENTENCES.is_file():
        lines = [s.strip() for s in DEMO_SENTENCES.read_text().splitlines() if s.strip()]
        if lines:
            return [lines[i % len(lines)] for i in range(n)], str(DEMO_SENTENCES.name)
    return generated_sentences(n), "generated (bench/sentences.py)"
