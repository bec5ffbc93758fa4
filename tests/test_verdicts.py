"""The verdict rule on synthetic intervals, the claim registry, and the summary built from findings."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from unetdyn.paper import claims as cl
from unetdyn.paper.claimplots import FINDINGS_MIME, MEMBERS_MIME, findings_frame, sensitivity_plot
from unetdyn.paper.claims import CLAIMS, MARGINS, Claim
from unetdyn.paper.readings import Reading
from unetdyn.paper.summary import collect_findings, lead_markdown, summary_markdown
from unetdyn.paper.verdicts import Finding, claim_rows, finding, judge, note, sensitivity, what_holds

VALUE = Claim("v", "w", "Fig. 0", "q", "value", 0.795, "ssim")  # margin 0.03: [0.765, 0.825]
BOUND = Claim("b", "w", "Fig. 0", "q", "at_least", 0.8, "ssim")
DOWN = Claim("d", "w", "Fig. 0", "q", "negative", None, "psnr")  # must clear 0 by 1 dB
STEP = Claim("t", "w", "Fig. 0", "q", "value", 7, "n")  # [5, 9]


@pytest.mark.parametrize("c,lo,hi,expected", [
    (VALUE, 0.795, 0.805, "holds"),        # inside the margin (the shortcut at 1000 samples)
    (VALUE, 0.83, 0.86, "differs"),        # wholly outside it
    (VALUE, 0.80, 0.84, "imprecise"),      # straddling its edge
    (VALUE, 0.70, 0.90, "imprecise"),      # wider than the margin, around the paper's value
    (STEP, 15, np.inf, "differs"),         # censored at the grid's edge, the known part already outside
    (STEP, 8, np.inf, "imprecise"),        # censored, reaching into the region
    (STEP, 3, np.inf, "imprecise"),        # censored, spanning the region: never agreement
    (DOWN, -18.4, -17.5, "holds"),         # directional, clears zero by the margin
    (DOWN, -1.5, -0.5, "imprecise"),       # directional, straddles the margin
    (DOWN, -0.6, 0.4, "differs"),          # directional, practically absent
    (BOUND, 0.81, 0.95, "holds"),          # a bound met by the whole interval
    (BOUND, 0.79, 0.85, "imprecise"),      # a bound missed by part of it, within the margin
    (BOUND, 0.70, 0.76, "differs"),        # a bound missed by more than the margin
    (VALUE, np.nan, np.nan, "imprecise"),  # no interval
])
def test_the_verdict_rule(c, lo, hi, expected):
    assert judge(lo, hi, c) == expected


def test_an_untested_reading_never_holds():
    zero = Claim("o", "w", "Fig. 0", "q", "value", 0, "count")
    assert judge(0, 0, zero) == "holds"
    assert judge(0, 0, zero, untested="3 of 5 pairs tie") == "imprecise"
    assert judge(1, 2, zero, untested="3 of 5 pairs tie") == "differs"


def test_why_names_the_region_and_the_turning_margin():
    f = finding("shortcut-ssim", "s", Reading(0.800, 0.795, 0.805, digits=3))
    assert f.verdict == "holds"
    assert f.why == ("[0.795, 0.805] lies inside [0.765, 0.825]; it would stop holding with a margin under 0.010 "
                     "(declared: 0.03)")
    g = finding("n-limit", "s", Reading(np.inf, np.inf, np.inf, top=15))  # ">= 15": known to be at least 15
    assert g.verdict == "differs" and "margin of 8 or more" in g.why and g.ours == ">= 15 [>= 15, >= 15]"
    h = finding("fig8-crossing", "s", Reading(66, 64, 69), paper=65)  # the paper's other number
    assert h.paper == "65" and h.verdict == "holds"


def test_every_claim_is_well_formed():
    assert 15 <= sum(c.judged for c in CLAIMS.values()) <= 22
    for c in CLAIMS.values():
        assert c.words and c.where and c.quantity and c.short, c.id
        if c.judged:
            assert c.unit in MARGINS and MARGINS[c.unit][2], c.id  # a margin with its reason
            inner, outer = c.regions()
            assert outer[0] <= inner[0] <= inner[1] <= outer[1], c.id
            assert c.chapter and c.own, c.id
    assert CLAIMS["shortcut-ssim"].paper_se == pytest.approx(0.0055, abs=2e-4)  # MAD 0.044 over 100 prompts


def test_a_finding_must_name_a_registered_claim():
    with pytest.raises(KeyError, match="not in the registry"):
        Finding("no-such-claim", "s", "1", "-")
    with pytest.raises(ValueError, match="takes no verdict"):
        finding("speedup-split", "s", Reading(1, 1, 1))
    with pytest.raises(ValueError, match="kind"):
        Claim("x", "w", "Fig. 0", "q", "roughly", 1, "ssim")


def test_sensitivity_says_where_the_verdict_turns():
    reads = {0.7: Reading(60, 58, 62), 0.8: Reading(41, 39, 43), 0.9: Reading(19, 18, 20), 0.95: Reading(8, 7, 9)}
    s = sensitivity("x0-accurate", "x0_threshold", list(reads), 0.8, reads.__getitem__)
    assert s.verdicts == ("differs", "differs", "holds", "differs")
    assert s.text() == "Turns over x0_threshold 0.7 to 0.95: differs for 0.7 to 0.8, holds at 0.9, differs at 0.95"
    flat = sensitivity("x0-accurate", "x0_threshold", [0.7, 0.8], 0.8, lambda v: Reading(18, 17, 19))
    assert flat.text() == "Robust over x0_threshold 0.7 to 0.8: holds at every value"
    fig = sensitivity_plot([s, flat])
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 2


def test_a_verdict_set_by_a_choice_of_ours_is_imprecise():
    reads = {0.7: Reading(60, 58, 62), 0.8: Reading(41, 39, 43), 0.9: Reading(19, 18, 20)}
    turns = sensitivity("x0-accurate", "x0_threshold", list(reads), 0.8, reads.__getitem__)
    f = finding("x0-accurate", "x0_threshold = 0.8", reads[0.8], choices=[turns], own=True)
    assert f.verdict == "imprecise"
    assert f.why.startswith("the verdict turns over a choice of ours that the paper does not make (x0_threshold); "
                            "at the book's value it differs: [39, 43] lies wholly outside")
    assert "holds at 0.9" in f.why
    # a choice over whose range the verdict does not turn leaves it alone, and says so
    steady = sensitivity("x0-accurate", "x0_threshold", [0.7, 0.8], 0.8, lambda v: Reading(41, 39, 43))
    f = finding("x0-accurate", "x0_threshold = 0.8", reads[0.8], choices=[steady], own=True)
    assert f.verdict == "differs" and f.why.endswith("Robust over x0_threshold 0.7 to 0.8: differs at every value")
    # a value the paper gives (its 0.8 threshold) varied for context never changes the verdict
    f = finding("x0-accurate", "x0_threshold = 0.8", reads[0.8], context=[turns], own=True)
    assert f.verdict == "differs" and "Turns over x0_threshold" in f.why


def _findings() -> list[Finding]:
    return [
        finding("shortcut-ssim", "fair", Reading(0.800, 0.795, 0.805, digits=3), own=True),
        finding("shortcut-ssim", "book", Reading(0.817, 0.803, 0.832, digits=3)),
        finding("n-limit", "own", Reading(np.inf, np.inf, np.inf, top=15), own=True),
        finding("n-limit", "other", Reading(6, 4, 7)),
        finding("relax-0.8", "own", Reading(0.95, 0.94, 0.96, digits=3), own=True),
        note("speedup-split", "parts", "17.0% of FLOPs", own=True),
    ]


def test_one_row_per_claim_with_its_own_verdict():
    rows = {r["claim"].id: r for r in claim_rows(_findings())}
    assert list(rows) == [c for c in CLAIMS if c in rows]  # registry order
    assert rows["shortcut-ssim"]["verdict"] == "holds" and (rows["shortcut-ssim"]["held"], rows["shortcut-ssim"]["judged"]) == (1, 2)
    assert rows["n-limit"]["verdict"] == "differs"
    assert rows["speedup-split"]["verdict"] == "-"
    text = what_holds(_findings())
    assert "**Holds** (2)" in text and "**Differs** (1)" in text and "5% + 22%" not in text


def test_the_summary_counts_claims_not_rows(tmp_path):
    nb = {"cells": [
        {"cell_type": "markdown", "source": ["(findings-6)=\n", "## x"]},
        {"cell_type": "code", "source": [], "outputs": [
            {"output_type": "display_data", "data": {FINDINGS_MIME: json.dumps([f.to_dict() for f in _findings()])}}]},
    ]}
    path = tmp_path / "06_shortcut.ipynb"
    path.write_text(json.dumps(nb))
    back = collect_findings(path)
    assert [f.verdict for f in back] == [f.verdict for f in _findings()]
    assert (back[2].lo, back[2].hi) == (15, np.inf)  # a censored end survives JSON
    page = summary_markdown([path])
    assert "**In all: 3 claims; 2 hold, 1 differ, 0 are imprecise.**" in page
    assert "Listed apart" in page and "the paper's arithmetic" in page
    assert page.count("<details>") == 1
    for q in MARGINS:
        assert f"| {q} |" in page
    lead = lead_markdown([path])
    assert "3 claims" in lead and "**Differs:** blocks can be removed for at most ~7 steps." in lead
    assert len(lead.strip().splitlines()) <= 6


def test_findings_frame_marks_the_own_setting():
    df = findings_frame(_findings())
    assert df.setting[0].endswith("(its own setting)") and not df.setting[1].endswith("(its own setting)")
    assert list(df.columns) == ["claim", "setting", "paper", "ours [95% interval]", "verdict", "why"]


def test_margins_are_declared_once():
    assert cl.MARGINS["ssim"][0] == 0.03 and cl.MARGINS["t"][0] == 5


def test_the_summary_reads_each_claim_across_the_members_it_was_read_on(tmp_path):
    findings = {FINDINGS_MIME: json.dumps([f.to_dict() for f in _findings()])}
    claims = {"n-limit": {"builtin": "differs", "builtin:seed1": "differs", "across": "differs on every member",
                          "read on": "2 of 2"},
              "relax-0.8": {"builtin": "holds", "builtin:seed1": "not run", "across": "one member read so far",
                            "read on": "1 of 2"}}
    members = {MEMBERS_MIME: json.dumps({"members": ["builtin", "builtin:seed1"], "claims": claims})}
    paths = []
    for name, data in (("06_shortcut", findings), ("10_is_it_the_model", members)):
        paths.append(tmp_path / f"{name}.ipynb")
        paths[-1].write_text(json.dumps({"cells": [{"cell_type": "code", "source": [],
                                                    "outputs": [{"output_type": "display_data", "data": data}]}]}))
    lines = summary_markdown(paths).splitlines()
    assert "| claim | builtin | seed1 | across members |" in lines
    # the claims table and the per-member table end each row with the reading across members
    n_limit = [line for line in lines if line.startswith("| blocks can be removed") and "member" in line]
    relax = [line for line in lines if line.startswith("| relaxing r") and "member" in line]
    assert len(n_limit) == 2 and all(line.endswith("| **differs on every member** |") for line in n_limit)
    assert len(relax) == 2 and all(line.endswith("| one member read so far |") for line in relax)
    assert "| blocks can be removed for at most ~7 steps (Figs. 9, 20) | **differs** | **differs** |" in n_limit[1]
    lead = lead_markdown(paths)
    assert "On 2 models of the family ([chapter 10](10_is_it_the_model)), the claims read: " in lead
    assert "1 differs on every member, 1 read on one member only so far." in lead


def test_the_members_table_names_members_short_and_keeps_their_full_names_for_the_summary(monkeypatch):
    import IPython.display
    import pandas as pd

    from unetdyn.paper.claimplots import show_members

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda data, raw=False: shown.append(data))
    verdicts = pd.DataFrame({"builtin": ["differs"], "builtin:seed1": ["not run"], "across": ["one member read so far"],
                             "read on": ["1 of 2"]}, index=pd.Index(["n-limit"], name="claim"))
    show_members(verdicts)
    (data,) = shown
    assert ">seed1</th>" in data["text/html"] and "builtin:seed1" not in data["text/html"]
    # how many members were read sits in the across cell, where it is partial
    assert ">one member read so far</td>" in data["text/html"] and ">read on</th>" not in data["text/html"]
    assert json.loads(data[MEMBERS_MIME])["members"] == ["builtin", "builtin:seed1"]


def test_the_members_table_colours_an_across_cell_by_its_reading_not_its_note(monkeypatch):
    import IPython.display
    import pandas as pd

    from unetdyn.paper.claimplots import show_members

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda data, raw=False: shown.append(data))
    verdicts = pd.DataFrame({"builtin": ["holds"], "builtin:seed1": ["holds"], "builtin:seed2": ["not run"],
                             "across": ["holds so far"], "read on": ["2 of 3"]}, index=pd.Index(["n-limit"], name="claim"))
    show_members(verdicts)
    (data,) = shown
    html = data["text/html"]
    assert ">holds so far (read on 2 of 3)</td>" in html
    cell = re.search(r'<td id="(T_\w+)"[^>]*>holds so far', html).group(1)
    assert re.search(rf"#{cell} {{\s*background-color: #eef8ec", html)
