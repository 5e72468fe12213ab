"""The records behind RESULTS.md (`make results`): every entry of `benchmarks/results.yaml`
is a loadable config with ≥ 3 seeds, and RESULTS.md's generated table is the one its records
give, so that no number in it was typed by hand."""

import importlib.util
from pathlib import Path

from jaxdyn import experiments

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("reproduce", ROOT / "benchmarks" / "reproduce.py")
reproduce = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reproduce)


def test_every_entry_is_a_loadable_config_with_three_seeds_and_headline_figures():
    for name, entry in reproduce.manifest().items():
        experiment, _ = experiments.load(ROOT / entry["config"], entry.get("overrides", []))
        seeds = entry["seeds"]
        assert len(set(seeds)) == len(seeds) >= 3, name
        assert entry["headline"], name
        assert entry["protocol"].strip(), f"{name}: say the splits, the selection, the seeds"


def test_results_table_is_generated_from_the_records():
    records = reproduce.records()
    entries = reproduce.manifest()
    assert {r["name"] for r in records} == set(entries), "an entry has no record: run it"
    for record in records:
        entry = entries[record["name"]]
        for key in ("seeds", "headline", "config"):
            assert record[key] == entry[key], (record["name"], key)
        assert record["overrides"] == entry.get("overrides", []), record["name"]
        for key in record["headline"]:
            assert key in record["statistics"], (record["name"], key)
    text = reproduce.RESULTS.read_text()
    generated = text.split(reproduce.BEGIN, 1)[1].split(reproduce.END, 1)[0].strip()
    assert generated == (reproduce.table(records) if records else ""), (
        "RESULTS.md's generated table differs from benchmarks/records: run "
        "`python benchmarks/reproduce.py --table`"
    )
