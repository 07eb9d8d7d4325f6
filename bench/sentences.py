"""The benchmark's input sentences.

Uses worker/demo_sentences.txt (the demo's sentences) when it is there; otherwise builds a
deterministic mixed workload like what producers send an embedding service: short reviews, FAQ
questions, news-like sentences, product listings full of codes and numbers, multi-sentence support
tickets with order numbers and URLs, and a few non-English texts (2 to ~110 tokens).
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


_BRANDS = ["Lenovo ThinkPad X1 Carbon Gen 11", "Samsung 990 PRO", "Sony WH-1000XM5",
           "Bosch GSR 18V-55", "Apple MacBook Air M3", "Logitech MX Master 3S",
           "Dell UltraSharp U2723QE", "Anker 737"]
_SPECS = ["2TB NVMe M.2 SSD (MZ-V9P2T0BW)", "14\" 2.8K OLED, i7-1365U, 32GB/1TB, Win11 Pro",
          "wireless noise-cancelling headphones, 30h battery, USB-C", "27\" 4K IPS USB-C hub 90W",
          "cordless drill driver 18 V, 2x 2.0 Ah batteries + charger GAL 18V-20", "140W 24,000mAh",
          "8-core CPU, 10-core GPU, 16GB RAM, 512GB SSD - Midnight", "8K DPI, Bluetooth/Logi Bolt"]
_TICKET_OPENERS = [
    "Hi, my order #{n} arrived yesterday but the box was damaged and two items are missing.",
    "Hello support, since the update to version 4.{d}.{d} the app crashes on start-up.",
    "I was charged twice (EUR {n}.{d}{d}) for the same subscription on {d}/0{d}/2026.",
    "Our API calls to https://api.example.com/v2/items?page={d} return HTTP 502 intermittently.",
]
_TICKET_MORE = [
    "I already tried reinstalling and clearing the cache, nothing changed.",
    "Could you please send a replacement or refund the missing items?",
    "The error message says: 'connection reset by peer (code 104)'.",
    "Please reply to jane.doe+support@example.org, I am travelling this week.",
    "This is blocking our release, so any workaround would be appreciated.",
]
_FOREIGN = [
    "Die Lieferung kam zwei Tage zu spät, aber die Qualität ist ausgezeichnet.",
    "Le service client a répondu rapidement et a résolu mon problème.",
    "¿Alguien sabe cómo cambiar la contraseña desde la aplicación móvil?",
    "De batterij gaat veel korter mee dan op de verpakking staat.",
    "Ich würde das Produkt jederzeit wieder kaufen.",
    "Le colis est arrivé endommagé et il manque une pièce.",
]


def _ticket(rng: random.Random) -> str:
    opener = rng.choice(_TICKET_OPENERS).format(
        n=rng.randint(10_000, 99_999), d=rng.randint(1, 9)
    )
    return " ".join([opener, *rng.sample(_TICKET_MORE, rng.randint(1, 3))])


def generated_sentences(n: int, seed: int = 7) -> list[str]:
    """A mixed workload: short reviews, FAQ questions, news-like sentences with clauses, product
    listings (codes, numbers), multi-sentence support tickets, and a few non-English texts."""
    rng = random.Random(seed)
    out: list[str] = []
    for _ in range(n):
        kind = rng.random()
        if kind < 0.10:
            out.append(rng.choice(_SHORT))
        elif kind < 0.20:
            out.append(rng.choice(_QUESTIONS))
        elif kind < 0.35:
            out.append(f"{rng.choice(_BRANDS)} {rng.choice(_SPECS)}")
        elif kind < 0.45:
            out.append(_ticket(rng))
        elif kind < 0.52:
            out.append(rng.choice(_FOREIGN))
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


def tuning_sentences(measured: int, n: int) -> list[str]:
    """`n` sentences for tuning, held out from the first `measured` that `load_sentences` gives
    (the source's next lines; generated ones where it has too few)."""
    sentences, _ = load_sentences(measured + n)
    held_out = sentences[measured:]
    if set(held_out).isdisjoint(sentences[:measured]):
        return held_out
    return generated_sentences(measured + n)[measured:]  # the source cycled into the measured
