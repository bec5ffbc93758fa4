"""The paper's claims: what each says, how we read it, and the margin its verdict is judged with.

Every finding row of every chapter names one of these (:class:`~unetdyn.paper.verdicts.Finding`),
so the book's summary has one row per claim, not one per reading. A claim is read at its
*own* setting (the paper's, where the paper names one) and often at other settings too; its
verdict comes from the own setting, and the others show as detail.

A margin is the smallest difference that matters in practice for the claim's quantity
(:data:`MARGINS` gives each with its reason). They are ours: the paper gives none. Thresholds
and windows that the paper does not give are ours too, and each reading that rests on one
shows its verdict over a declared range of it (:func:`unetdyn.paper.verdicts.sensitivity`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["MARGINS", "Claim", "CLAIMS", "claim", "PAPER_SE_SHORTCUT"]

# quantity -> (margin, decimals to print, why this margin)
MARGINS: dict[str, tuple[float, int, str]] = {
    "ssim": (0.03, 3, "SSIM to the output: about 5 of the paper's own standard errors at 100 prompts (0.0055, from "
                      "its MAD of 0.044), and finer than its figures resolve (their +-2 sd bands are about 0.2 wide)"),
    "ssim spread": (0.015, 3, "a spread of SSIM over samples: a third of the paper's MAD of 0.044; at 100 samples the "
                              "MAD itself has a standard error of about 0.004"),
    "psnr": (1.0, 1, "PSNR in dB: the smallest gap that reads as 'notably lower' between two PSNR curves; images that "
                     "differ by less than 1 dB are hard to tell apart"),
    "t": (5.0, 0, "a time step read off a curve: one step of the paper's t_start grid (every 5 steps in Figs. 4 and "
                  "8), off which it reads its t values by eye"),
    "n": (2.0, 0, "a number of intervened steps: Fig. 9 reads its limit by eye off curves over n = 1..15; +-2 steps "
                  "is what such a reading resolves"),
    "r": (3.0, 0, "a relaxation length: the paper's own ranges are 2 and 5 steps wide ([10, 12], [15, 20]); 3 is "
                  "about their mean width"),
    "share": (0.03, 2, "a share of samples: 3 points, finer than 'most' can mean and about the 95% half-width of a "
                       "share near 0.5 at 1000 samples"),
    "time saved": (0.03, 3, "a share of inference cost saved: 3 points; '~27%' is stated to the point, and this CPU's "
                            "wall-clock shares move by about 3 points between timing rounds"),
    "count": (0.0, 0, "a count of violations: the claim is that there are none"),
}

# The paper's standard error of its mean SSIM: MAD 0.044 over 100 prompts; for a normal
# spread sd = MAD * sqrt(pi / 2), so SE = 0.044 * 1.2533 / sqrt(100).
PAPER_SE_SHORTCUT = 0.044 * float(np.sqrt(np.pi / 2)) / 10

KINDS = ("value", "range", "at_least", "at_most", "positive", "negative", "ours", "construction", "inconsistency")


@dataclass(frozen=True)
class Claim:
    """One claim of the paper.

    Attributes:
        id: a short stable name; findings refer to it.
        words: the paper's words, quoted.
        where: figure or section.
        quantity: what we read, and how (the reading function of :mod:`unetdyn.paper.readings`).
        kind: how the paper's value is judged (see :mod:`unetdyn.paper.verdicts`); ``ours``: a
            check of our own, ``construction``: shared with GLIDE by construction,
            ``inconsistency``: a statement of the paper that its own numbers contradict; these
            three take no verdict and are not counted.
        paper: the value, ``(low, high)`` for a range, the bound, or None.
        unit: the quantity's kind, a key of :data:`MARGINS` (its margin and reason).
        chapter: the notebook that reads the claim at its own setting.
        own: the setting whose verdict is the claim's.
        short: a few words for tables.
        paper_text: the paper's value as printed.
        paper_se: the paper's own standard error, where its numbers give one.
        choices: the choices of ours the reading rests on (notebook parameters), shown with
            their sensitivity.
    """

    id: str
    words: str
    where: str
    quantity: str
    kind: str
    paper: float | tuple[float, float] | None
    unit: str = ""
    chapter: str = ""
    own: str = ""
    short: str = ""
    paper_text: str = ""
    paper_se: float | None = None
    choices: str = ""

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"claim {self.id}: kind {self.kind!r} is not one of {KINDS}")
        if self.kind in KINDS[:6] and self.unit not in MARGINS:
            raise ValueError(f"claim {self.id}: unit {self.unit!r} is not one of {sorted(MARGINS)}")

    @property
    def margin(self) -> float:
        return MARGINS[self.unit][0] if self.unit in MARGINS else 0.0

    @property
    def digits(self) -> int:
        return MARGINS[self.unit][1] if self.unit in MARGINS else 3

    @property
    def reason(self) -> str:
        return MARGINS[self.unit][2] if self.unit in MARGINS else ""

    @property
    def judged(self) -> bool:
        """Whether the claim takes a verdict (and counts in the tally)."""
        return self.kind in KINDS[:6]

    def regions(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """``(inner, outer)``: an interval inside ``inner`` holds; one wholly outside ``outer`` differs."""
        m, v, inf = self.margin, self.paper, np.inf
        if self.kind == "value":
            r = (v - m, v + m)
            return r, r
        if self.kind == "range":
            r = (v[0] - m, v[1] + m)
            return r, r
        if self.kind == "at_least":
            return (v, inf), (v - m, inf)
        if self.kind == "at_most":
            return (-inf, v), (-inf, v + m)
        if self.kind == "positive":
            return (m, inf), (m, inf)
        if self.kind == "negative":
            return (-inf, -m), (-inf, -m)
        raise ValueError(f"claim {self.id} is {self.kind}: it has no region")

    def turning_margin(self, lo: float, hi: float) -> str:
        """Where the verdict on ``[lo, hi]`` would turn as the margin changes, in words ("" if it would not).

        Example:
            >>> Claim("x", "w", "Fig. 0", "q", "value", 0.795, "ssim").turning_margin(0.795, 0.805)
            'it would stop holding with a margin under 0.010'
        """
        f = lambda m: fmt_margin(m, self.digits)  # noqa: E731
        if self.kind in ("value", "range"):
            a, b = (self.paper, self.paper) if self.kind == "value" else self.paper
            gap = max(a - hi, lo - b)
            if gap > self.margin:
                return f"it would stop differing with a margin of {f(gap)} or more"
            if not (np.isfinite(lo) and np.isfinite(hi)):
                return ""
            need = max(a - lo, hi - b, 0.0)
            return (f"it would stop holding with a margin under {f(need)}" if need <= self.margin
                    else f"it would hold with a margin of {f(need)} or more")
        if self.kind in ("positive", "negative"):
            lo_, hi_ = (lo, hi) if self.kind == "positive" else (-hi, -lo)
            if lo_ >= self.margin:
                return f"it would stop holding with a margin over {f(lo_)}"
            if hi_ < self.margin:
                return f"it would stop differing with a margin of {f(hi_)} or less" if hi_ > 0 else ""
            return f"it would hold with a margin of {f(lo_)} or less" if lo_ > 0 else ""
        if self.kind in ("at_least", "at_most"):
            short = (self.paper - hi) if self.kind == "at_least" else (lo - self.paper)
            return f"it would stop differing with a margin of {f(short)} or more" if short > self.margin else ""
        return ""

    @property
    def paper_value(self) -> str:
        if self.paper_text:
            return self.paper_text
        if self.kind == "range":
            return f"[{self.paper[0]:g}, {self.paper[1]:g}]"
        if self.kind == "at_least":
            return f">= {self.paper:g}"
        if self.kind == "at_most":
            return f"<= {self.paper:g}"
        if self.kind == "positive":
            return "> 0"
        if self.kind == "negative":
            return "< 0"
        return "-" if self.paper is None else f"{self.paper:g}"


def fmt_margin(m: float, digits: int) -> str:
    """A margin at ``digits`` decimals, or to one significant figure where those show only zeros."""
    return f"{m:.{digits}f}" if abs(m) >= 10 ** -digits or m == 0 else f"{m:.1g}"


def _claims(*cs: Claim) -> dict[str, Claim]:
    out = {}
    for c in cs:
        if c.id in out:
            raise ValueError(f"claim {c.id} is registered twice")
        out[c.id] = c
    return out


# The settings the chapters name (their own-setting strings must match these exactly).
SHORTCUT_SETTING = "the paper's Fig. 8 setting for the shortcut: nb = 8, t_start = 60 (paper t_start)"

CLAIMS: dict[str, Claim] = _claims(
    # -- chapter 1: phases ----------------------------------------------------------------------
    Claim("phase-dip", "in phase 2, the model transitioned from a pure generative to a denoising phase with some "
          "semantic changes. This transition is marked by decreased PSNR and SSIM", "Fig. 4",
          "held-out contrast of the deepest dip of Fig. 4's mean SSIM curve (readings.dip, valley_contrast): found on "
          "half the samples, measured on the other half", "positive", None, "ssim", "01_phases", "held-out contrast",
          "a dip of SSIM marks phase 2", "a dip (> 0)"),
    Claim("phase-boundaries", "Fig. 4 highlights three discernible patterns", "Fig. 4",
          "the dip's peak and bottom t_start (readings.dip)", "ours", None, chapter="01_phases",
          short="where the phases meet (the paper marks them by eye)", paper_text="marked by eye, no number"),
    Claim("early-harms-late-benign", "Eliminating early time steps ... resulted in significant semantic alterations "
          "... while the later stages demonstrated substantial denoising efforts", "Figs. 3, 4",
          "Fig. 4's mean SSIM at late t_start (<= late) minus at early t_start (> early), n = 5", "positive", None,
          "ssim", "01_phases", "late minus early window", "removing early steps harms, late ones are benign",
          "late - early > 0", choices="early, late"),
    Claim("one-step-benign", "modifying a single time step does not substantially alter the model's output",
          "Exploration of generation phases", "share of outputs with SSIM < 0.8 when one step is removed (a jump of 2), "
          "pooled over the t_start grid of Fig. 18", "at_most", 0.5, "share", "01_phases",
          "n = 1 (Fig. 1b: a jump of 2), pooled over t_start", "removing one step changes little",
          "few outputs change (<= 0.5)"),
    Claim("five-steps-pronounced", "even this small modification [n = 5] has a pronounced influence on the model's "
          "output", "Figs. 3, 18", "share of outputs with SSIM < 0.8 when 5 steps are removed (Eq. 4: a jump of 5), "
          "pooled over the t_start grid", "at_least", 0.5, "share", "01_phases", "n = 5 (Eq. 4: a jump of 5), pooled "
          "over t_start", "removing five steps changes most outputs", "most (> 0.5)", choices="pooling over t_start"),
    Claim("beta-pickup", "a significant noise pick up in noise beyond t > 85", "Fig. 15",
          "GLIDE's beta schedule respaced to 100 steps", "construction", None, chapter="01_phases",
          short="beta picks up beyond t = 85", paper_text="t > 85"),
    Claim("psnr-rise", "the area around time steps t in [15, 18] shows a sharp rise in PSNR values", "Fig. 16",
          "first t from which the one-step PSNR gain of x_t stays above rise_factor times its median (readings.rise_start)",
          "range", (15, 18), "t", "01_phases", "rise_factor = 2", "PSNR of x_t rises sharply at t in [15, 18]",
          choices="rise_factor"),
    Claim("x0-accurate", "x_est0 at t = 18 offers an accurate representation", "Fig. 17",
          "first t from which the x0 estimate's mean SSIM to the output stays >= x0_threshold (readings.x0_accurate_step)",
          "range", (17, 18), "t", "01_phases", "x0_threshold = 0.8", "the x0 estimate is accurate from t = 18",
          "t = 18 (captions: 17)", choices="x0_threshold"),
    Claim("x0-at-25", "whether x0 estimates at t <= 25 adequately preserve global image structure", "Fig. 17",
          "mean SSIM of the x0 estimate at t = 25 to the output, against the paper's semantic threshold 0.8",
          "at_least", 0.8, "ssim", "01_phases", "t = 25", "the x0 estimate keeps the global structure by t = 25"),
    Claim("eq4-variance", "Eq. 4 (the jump's noise term)", "Eq. 4",
          "mean SSIM change over Fig. 4's grid when the jump adds the one-step sigma_t instead of the stride's",
          "ours", None, chapter="01_phases", short="Eq. 4 read literally: the jump's noise", paper_text="-"),
    # -- chapter 2: skips or blocks ------------------------------------------------------------
    Claim("skips-cost-psnr", "The PSNR values when removing skip connections ... are notably lower compared to "
          "removing deconvolution blocks", "Fig. 7", "mean over t_start <= late of PSNR(skips zeroed) - PSNR(blocks "
          "removed), ns = nb = 2, n = 5", "negative", None, "psnr", "02_skip_vs_deconv", "t_start <= 50",
          "zeroing top skips costs more PSNR than removing bottom blocks", "notably lower (< 0)", choices="late"),
    Claim("blocks-redundant-late", "removing lower deconvolutional blocks shows minimal effects post Phase 1, "
          "possibly indicating their redundancy", "Figs. 6, 7", "mean SSIM over t_start <= late, bottom nb = 2 blocks "
          "removed for n = 5 steps", "at_least", 0.8, "ssim", "02_skip_vs_deconv", "t_start <= 50",
          "bottom blocks are redundant after phase 1", "minimal effect (>= 0.8)", choices="late"),
    Claim("early-blocks-change", "during Phase 1 of the generation process ... both interventions induce semantic "
          "changes", "Figs. 5-7", "mean SSIM over t_start > early, bottom nb = 2 blocks removed for n = 5 steps",
          "at_most", 0.8, "ssim", "02_skip_vs_deconv", "t_start > 75", "removing bottom blocks in phase 1 changes "
          "the semantics", "semantic changes (< 0.8)", choices="early"),
    Claim("early-skips-change", "during Phase 1 of the generation process ... both interventions induce semantic "
          "changes", "Figs. 5-7", "mean SSIM over t_start > early, top ns = 2 skips zeroed for n = 5 steps",
          "at_most", 0.8, "ssim", "02_skip_vs_deconv", "t_start > 75", "zeroing top skips in phase 1 changes the "
          "semantics", "semantic changes (< 0.8)", choices="early"),
    # -- chapter 3: the nb sweep ---------------------------------------------------------------
    Claim("fig8-crossing", "nb = 2 achieves an SSIM of 0.8 sooner than nb = 4 (at t_start ~ 68), nb = 4 reaches the "
          "same threshold earlier than nb = 6 (at t_start ~ 65)", "Fig. 8",
          "first t_start from which the mean SSIM with the bottom nb blocks removed for 5 steps stays >= 0.8 "
          "(readings.crossing); the sentence fits either block count to each number, both are read",
          "value", 68, "t", "03_nb_sweep", "nb = 2 (reading: 68 -> nb = 2, 65 -> nb = 4)",
          "where removing nb blocks becomes harmless", "~68 (nb = 2)"),
    Claim("bottom-up-order", "This pattern suggests a gradual reduction in the significance of these blocks bottom-up "
          "over time", "Figs. 8, 19", "adjacent nb pairs whose larger nb crosses 0.8 earlier (readings.crossing); pairs "
          "tied at the grid's first t_start do not test the order", "value", 0, "count", "03_nb_sweep",
          "nb = 2..12", "larger nb become redundant later (bottom-up)", "0 violations"),
    # -- chapter 4: the n limit -----------------------------------------------------------------
    Claim("n-limit", "no more than n = 7 time steps can be removed without compromising the output", "Figs. 9, 20",
          "largest n such that every n' <= n keeps the mean SSIM >= 0.8 (readings.run_limit)", "value", 7, "n",
          "04_n_limit", SHORTCUT_SETTING, "blocks can be removed for at most ~7 steps", "7"),
    # -- chapter 5: relaxation ------------------------------------------------------------------
    Claim("relax-0.8", "with r in [15, 20], we can indeed intervene for another n steps without significantly "
          "impacting the output (maintaining SSIM >= 0.8)", "Fig. 10",
          "lowest mean SSIM of cut (n = 7), relax r, cut (n = 7) over r in [15, 20]", "at_least", 0.8, "ssim",
          "05_relaxation", SHORTCUT_SETTING, "relaxing r in [15, 20] keeps SSIM >= 0.8", "SSIM >= 0.8 at r in [15, 20]"),
    Claim("relax-0.75", "reducing this quality threshold to SSIM >= 0.75 would require relaxations for only "
          "r in [10, 12] steps", "Fig. 10", "lowest mean SSIM of cut (n = 7), relax r, cut (n = 7) over r in [10, 12]",
          "at_least", 0.75, "ssim", "05_relaxation", SHORTCUT_SETTING, "relaxing r in [10, 12] keeps SSIM >= 0.75",
          "SSIM >= 0.75 at r in [10, 12]"),
    Claim("relax-smallest", "r in [15, 20] / r in [10, 12]", "Fig. 10", "the smallest r from which the mean SSIM "
          "stays >= the threshold (readings.crossing): a stricter reading than the paper's, which says these r suffice",
          "ours", None, chapter="05_relaxation", short="the smallest relaxation needed (our stricter reading)",
          paper_text="-"),
    # -- chapter 6: the shortcut ----------------------------------------------------------------
    Claim("shortcut-ssim", "Histogram of SSIM values between the original x0 and the intervened images ... for all "
          "100 samples (mean = 0.795, mad = 0.044)", "Fig. 13", "mean SSIM of the shortcut's output to the full "
          "sampler's", "value", 0.795, "ssim", "07_alternatives", "the fair comparison's samples",
          "the shortcut's mean SSIM is 0.795", "0.795", PAPER_SE_SHORTCUT),
    Claim("shortcut-mad", "(mean = 0.795, mad = 0.044)", "Fig. 13", "mean absolute deviation of the shortcut's SSIM "
          "over samples", "value", 0.044, "ssim spread", "06_shortcut", "the book's 100 samples",
          "the spread of the shortcut's SSIM (MAD 0.044)", "0.044"),
    Claim("shortcut-band", "the distribution of acceptable SSIM values in [0.7, 0.9] across most 100 samples",
          "Fig. 13", "share of samples whose shortcut SSIM lies in [0.7, 0.9]", "at_least", 0.5, "share",
          "06_shortcut", "the book's 100 samples", "most samples land in SSIM [0.7, 0.9]", "most (> 0.5)"),
    Claim("speedup", "improve inference time by ~27% with minimal degradation in output quality", "Abstract; Fig. 11",
          "share of inference cost the shortcut saves, in FLOPs (counted by running each step) or wall-clock "
          "(median over timing rounds; the interval is the range over rounds)", "value", 0.27, "time saved",
          "07_alternatives", "GLIDE's architecture, FLOPs, text encoded every step as its notebook does",
          "the shortcut saves ~27% of inference time", "~27%"),
    Claim("speedup-split", "About 5% from the unet interventions and 22% from skipping the last 17 time steps",
          "Approximated results", "the FLOP share saved by each part", "inconsistency", None, chapter="06_shortcut",
          short="5% + 22%: skipping 17 of 100 equal steps saves at most 17%", paper_text="5% + 22%"),
    Claim("adapted-shortcut", "While Figure 11 shows one potential shortcut inference method, it is not the sole "
          "strategy", "Fig. 11", "the paper's pattern moved to this model's Fig. 8 crossings and x0 criterion", "ours",
          None, chapter="06_shortcut", short="the shortcut adapted to this model", paper_text="-"),
    # -- chapter 8: our goals -------------------------------------------------------------------
    Claim("search-goals", "Further optimizing the pruned architecture for inference could lead to more accurate "
          "results", "Conclusions", "the schedule search's goals: FLOP and wall-clock speed-up, held-out mean SSIM",
          "ours", None, chapter="08_beyond", short="our search's goals (not the paper's)", paper_text="-"),
)


def claim(claim_id: str) -> Claim:
    """The registered claim, or a KeyError naming the known ids."""
    try:
        return CLAIMS[claim_id]
    except KeyError:
        raise KeyError(f"no claim {claim_id!r}; registered: {', '.join(CLAIMS)}") from None
