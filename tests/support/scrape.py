"""Reading a process's Prometheus metrics in the end-to-end suites."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(port: int) -> Samples:
    """Every sample at http://127.0.0.1:<port>/metrics, by name and labels."""
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.get(f"http://127.0.0.1:{port}/metrics")
    assert answer.status_code == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def assert_no_label_holds(samples: Samples, *forbidden: str) -> None:
    """No label value contains any of `forbidden` (instance ids, phone numbers, secrets)."""
    for name, labels in samples:
        for label, text in labels:
            for word in forbidden:
                assert word not in text, f"{name}{{{label}=...}} holds a forbidden value"
