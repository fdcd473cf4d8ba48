"""The end-of-run statistics table and event listings (issue 18, item 4)."""

import re

import jax
import pytest

import diffgen
from diffgen.cli import main
from diffgen.listing import statistics_table


def test_statistics_table_sigma_is_cross_section_and_listing(capsys):
    assert main(["generate", "--events", "3000", "--seed", "5", "--offset", "0", "--quiet", "--list", "2",
                 "--bins", "4"]) == 0
    text = capsys.readouterr().out
    m = re.search(r"\|\s+sigma = ([0-9.e+-]+) \+- ([0-9.e+-]+) pb", text)
    assert m, text
    gen = diffgen.presets.ee_mumu()
    sigma, err = diffgen.cross_section(gen, gen.default_params(), jax.random.key(5), 3000)
    assert float(m.group(1)) == pytest.approx(float(sigma), rel=2e-6)
    assert float(m.group(2)) == pytest.approx(float(err), rel=2e-3)
    assert re.search(r"events generated\s+3000", text) and re.search(r"events accepted \(status 0\)\s+3000", text)
    listings = text.split("diffgen Event Listing")[1:]
    assert len(listings) == 2 and "(event 0)" in listings[0] and "(event 1)" in listings[1]
    sums = [line.split() for part in listings for line in part.splitlines() if line.strip().startswith("sum")]
    assert [[float(x) for x in s[1:]] for s in sums] == [[0.0, 0.0, 0.0, 91.188]] * 2  # momentum conservation
    assert " mu- " in listings[0] and " e+ " in listings[0]


def test_statistics_table_names_flags_and_states_the_bias():
    text = statistics_table(n=1000, flags={"FAILED_KINEMATICS": 30, "CAPACITY_OVERFLOW": 20, "NONFINITE": 0},
                            n_flagged=50, sigma_pb=950.0, error_pb=5.0)
    assert re.search(r"events flagged \(weight 0\)\s+50", text)
    assert re.search(r"FAILED_KINEMATICS\s+30", text) and re.search(r"CAPACITY_OVERFLOW\s+20", text)
    assert "NONFINITE" not in text
    assert "low by ~50 pb (5.26%)" in text  # 950 * 0.05 / 0.95
    assert len({len(line) for line in text.splitlines()}) == 1  # a box
