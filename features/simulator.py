"""A realistic, fully vectorised CRM simulator with a known generative model and an exact oracle.

``simulate_crm`` produces the three contract tables (``leads``, ``activities``, ``outcomes``) plus a
``truth`` table with each lead's latent state, the additive parts of its conversion logit, its true
conversion probability and whether it converts. Everything is drawn from one
``np.random.default_rng(seed)`` with array operations only (no Python loop per lead or per event), so
1M leads / ~18M activities take well under a minute.

Generative model (times in days since ``start``; ``exported_at = end``):

* Leads are created with a growing rate over ``[start, end)``, fewer at weekends, mostly in business
  hours. They belong to companies (industry, size, revenue, type, country, domain); students belong
  to universities (``.edu``).
* Latent buying intent ``= channel shift + seniority shift + eps - 1 * job_seeker`` with ``eps`` on a
  15-point grid over [-3, 3] (normal weights) and ``job_seeker`` drawn from what the export shows
  (students, individual contributors, social). Engagement events per lead ~ ``Poisson(18.3 *
  exp(0.5 * intent) * G)``, ``G ~ Gamma(2, rate 2)``, each at ``created_at + Exponential(tau *
  type_scale)`` with ``tau`` one of nine LogNormal(log 18 d, 0.7) quantiles; the event-type mix shifts
  with intent (pricing/product/demo/webinar up, blog/e-mail opens down; careers pages for job seekers).
  A webinar takes place 7 days after each registration, attended with ``sigmoid(-0.2 + 0.8 intent)``;
  unsubscribes (``sigmoid(-3 - 1.2 intent)``) and bounces stop e-mail engagement.
* Sales touches follow a lead's first form fill (by seniority and company size) or its demo request
  (92 %), decided on what sales can see at that moment, 1-10 touches over days to weeks. The
  follow-up *causes* a change in conversion, different per lead: an early one (after a form fill)
  puts executives and low-intent leads off and helps engaged managers; one after a demo request
  helps nearly everyone. ``truth`` records each lead's potential probabilities (``p_untouched``,
  ``p_form_follow_up``, ``p_demo_follow_up``), the follow-up it got and its propensity.
* ``logit = logit_base + logit_fit + logit_intent + logit_touch`` (formulas in
  ``_conversion_logits``), built to test what trees add: intent counts fully only for in-profile
  leads (manager or above, corporate e-mail) and saturates; seniority x department and company-size
  bands (a threshold step, best at 200-1999 employees) in the fit. Engagement *reveals* intent
  rather than causing conversion. ``true_probability = sigmoid(logit)``,
  ``converts ~ Bernoulli(true_probability)`` and ``converted_at = created_at + delay`` with
  ``delay ~ Gamma(shape=2, scale=14 days)`` drawn independently of everything else. Conversions after
  ``exported_at`` are censored (no outcome row); the export drops every activity after
  ``converted_at`` or ``exported_at``. The follow-up changes *whether* a lead converts, not when
  (a simplification: the delay stays independent, so the effect also applies to leads that
  converted before their follow-up would have come).
* ``drift=True`` (``leadscore simulate --drift``): the base rate climbs over the period
  (``-3.15 + 0.9 u`` instead of ``-2.6 - 0.6 u``), the channel mix moves (paid search and social
  grow, web forms and trade shows shrink), and a market index shared by every lead created on a day
  (``SimulatedCRM.market``, written as ``market.parquet``; also ``truth.market_index``) cycles
  around 100 +- 4, then climbs out of that range in the last quarter (to ~112), moving the logit by
  ``0.03 * (index - 100)``.

Two oracles score snapshots ``(lead_id, as_of)`` for "converts within the horizon":

* ``point_in_time_oracle_probability``: the Bayes-optimal probability given the lead's export up to
  ``as_of`` (exact: the latent grids are finite and the engagement volume integrates out). This is
  the best any point-in-time model can do, and the yardstick for "the model is within 0.01 AUC".
  It conditions on the sales follow-up seen by ``as_of`` and integrates over the one still to come.
* ``oracle_probability``: knows the latent intent (``true_probability``): an information ceiling.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from scipy import stats

from leadscore.features.contract import ActivityType, Channel, PageCategory, Seniority

__all__ = [
    "CONVERSION_DELAY",
    "DELAY_SCALE_DAYS",
    "DELAY_SHAPE",
    "FREEMAIL_DOMAINS",
    "SimulatedCRM",
    "oracle_probability",
    "point_in_time_oracle_probability",
    "simulate_crm",
    "true_contact_effect",
    "true_form_follow_up_effect",
    "write_crm",
]

DAY_NS = 86_400 * 10**9
DELAY_SHAPE = 2.0
DELAY_SCALE_DAYS = 14.0
#: Conversion delay (days after ``created_at``) of every converter: Gamma(shape 2, scale 14 days).
CONVERSION_DELAY = stats.gamma(a=DELAY_SHAPE, scale=DELAY_SCALE_DAYS)

FREEMAIL_DOMAINS: tuple[str, ...] = ("gmail.com", "yahoo.com", "hotmail.com", "outlook.com")

_FREEMAIL_P = np.array([0.55, 0.15, 0.12, 0.18])


def _words(text: str) -> list[str]:
    return text.split()


# ---------------------------------------------------------------------------------------------------
# Vocabularies and parameters
# ---------------------------------------------------------------------------------------------------
_CHANNELS = [c.value for c in Channel]
# web_form, paid_search, organic_search, webinar, trade_show, content_download, referral, partner,
# social, purchased_list
_CHANNEL_P = np.array([0.16, 0.14, 0.14, 0.08, 0.06, 0.10, 0.06, 0.06, 0.10, 0.10])
_CHANNEL_INTENT = np.array([0.3, 0.0, 0.1, 0.5, 0.2, 0.0, 0.7, 0.3, -0.4, -1.5])
_CHANNEL_FREEMAIL = np.array([0.24, 0.24, 0.24, 0.20, 0.12, 0.28, 0.15, 0.12, 0.40, 0.08])
_CH = {c: i for i, c in enumerate(_CHANNELS)}

_SENIORITIES = [s.value for s in Seniority]
# c_level, vp, director, manager, individual_contributor, student, other
_SENIORITY_P = np.array([0.04, 0.06, 0.12, 0.22, 0.38, 0.08, 0.10])
_SENIORITY_INTENT = np.array([0.1, 0.15, 0.15, 0.1, 0.0, -0.4, -0.1])
_SENIORITY_FIT = np.array([0.5, 0.6, 0.45, 0.25, 0.0, -1.5, -0.3])
_SENIORITY_SALES = np.array([1.0, 1.0, 0.8, 0.4, 0.0, -2.0, -0.5])
_SEN = {s: i for i, s in enumerate(_SENIORITIES)}

_DEPARTMENTS = ["sales", "marketing", "it", "engineering", "finance", "operations", "hr", "other"]
_DEPARTMENT_P = np.array([0.14, 0.20, 0.18, 0.18, 0.08, 0.10, 0.05, 0.07])
_DEPT_LABEL = ["Sales", "Marketing", "IT", "Engineering", "Finance", "Operations", "Human Resources", ""]

_COUNTRIES = ["US", "GB", "DE", "FR", "CA", "AU", "NL", "IN", "BR", "ES", "SE", "JP"]
_COUNTRY_P = np.array([0.38, 0.10, 0.09, 0.06, 0.06, 0.04, 0.04, 0.08, 0.04, 0.03, 0.03, 0.05])
_COUNTRY_TLD = _words(".com .co.uk .de .fr .ca .com.au .nl .in .com.br .es .se .co.jp")
_COUNTRY_DIAL = ["1", "44", "49", "33", "1", "61", "31", "91", "55", "34", "46", "81"]

_INDUSTRIES = _words(
    "software financial_services healthcare manufacturing retail education government media telecom other"
)
_INDUSTRY_P = np.array([0.20, 0.12, 0.10, 0.12, 0.09, 0.07, 0.05, 0.07, 0.06, 0.12])
_INDUSTRY_FIT = np.array([0.35, 0.25, 0.1, 0.0, -0.1, -0.4, -0.3, -0.05, 0.15, -0.15])
_REVENUE_PER_EMPLOYEE = np.array([250e3, 400e3, 150e3, 200e3, 120e3, 60e3, 80e3, 180e3, 300e3, 150e3])
_EDUCATION = _INDUSTRIES.index("education")

_COMPANY_TYPES = ["private", "public", "nonprofit", "government", "education"]
# P(company_type | industry), rows in _INDUSTRIES order.
_COMPANY_TYPE_P = np.array(
    [
        [0.78, 0.18, 0.02, 0.01, 0.01],
        [0.60, 0.36, 0.02, 0.01, 0.01],
        [0.55, 0.20, 0.20, 0.04, 0.01],
        [0.75, 0.22, 0.01, 0.01, 0.01],
        [0.74, 0.24, 0.01, 0.005, 0.005],
        [0.08, 0.01, 0.10, 0.06, 0.75],
        [0.05, 0.02, 0.03, 0.88, 0.02],
        [0.75, 0.20, 0.04, 0.005, 0.005],
        [0.55, 0.40, 0.01, 0.03, 0.01],
        [0.70, 0.12, 0.14, 0.02, 0.02],
    ]
)

_FIRST_NAMES = _words(
    "James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara Richard "
    "Susan Joseph Jessica Thomas Sarah Charles Karen Daniel Lisa Matthew Nancy Anthony Sandra Mark "
    "Ashley Paul Emily Steven Michelle Andrew Amanda Kevin Melissa Brian Laura George Anna Lukas "
    "Sofia Hannah Felix Emma Louis Chloe Lucas Camille Arjun Priya Rahul Ananya Wei Mei Hiroshi Yuki "
    "Sven Ingrid Pedro Ana Javier Lucia Olivia Noah Liam Mia Ethan Ava Finn Lea Daan Julia Oscar Elsa "
    "Mateo Valentina"
)
_LAST_NAMES = _words(
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez Wilson "
    "Anderson Thomas Taylor Moore Jackson Martin Lee Thompson White Harris Clark Lewis Robinson "
    "Walker Young Allen King Wright Scott Green Baker Adams Nelson Hill Campbell Mitchell Roberts "
    "Carter Phillips Evans Turner Mueller Schmidt Schneider Fischer Weber Dubois Moreau Laurent "
    "Bernard Patel Sharma Singh Kumar Gupta Wang Li Zhang Chen Tanaka Suzuki Sato Andersson Johansson "
    "Nilsson Silva Santos Oliveira Fernandez Gonzalez Jansen DeVries Bakker Murphy Kelly OBrien Walsh "
    "Ryan Byrne"
)
_COMPANY_PREFIX = _words(
    "acme nova blue north summit bright apex quantum vertex stellar cedar harbor iron silver green "
    "river clear swift prime lumen orbit pioneer atlas zenith terra cobalt ember falcon granite helix "
    "indigo jade kinetic lunar maple nimbus onyx polar radiant sage tidal umbra vivid willow xeno "
    "yellow zephyr alpine beacon crest delta echo fusion glacier horizon insight juniper keystone "
    "lattice meridian"
)
_COMPANY_SUFFIX = _words(
    "tech soft labs works systems data logic cloud networks solutions dynamics analytics health bank "
    "capital retail media telecom foods motors energy bio robotics security partners ventures "
    "industries digital mobile"
)
_COMPANY_TAIL = ["", "", "", "group", "inc", "hq", "global", "corp", "co", "io"]
_UNIVERSITIES = _words(
    "northfield lakeside riverton eastbrook westmont highland oakridge pinecrest fairview brookdale "
    "stonebridge clearwater redwood silverlake kingsport glenwood ashford millbrook hawthorne bayview "
    "crestwood elmhurst granville thornton"
)

# Job titles by (seniority, department); "{D}" is the department label.
_TITLE_TEMPLATES: dict[str, list[str]] = {
    "vp": ["VP of {D}", "Vice President, {D}", "SVP {D}"],
    "director": ["Director of {D}", "{D} Director", "Senior Director, {D}"],
    "manager": ["{D} Manager", "Senior {D} Manager", "{D} Team Lead"],
}
_TITLE_SPECIAL: dict[tuple[str, str], list[str]] = {
    ("c_level", "sales"): ["Chief Revenue Officer", "CRO", "Chief Sales Officer"],
    ("c_level", "marketing"): ["Chief Marketing Officer", "CMO"],
    ("c_level", "it"): ["Chief Information Officer", "CIO"],
    ("c_level", "engineering"): ["Chief Technology Officer", "CTO"],
    ("c_level", "finance"): ["Chief Financial Officer", "CFO"],
    ("c_level", "operations"): ["Chief Operating Officer", "COO"],
    ("c_level", "hr"): ["Chief People Officer", "Chief Human Resources Officer"],
    ("c_level", "other"): ["CEO", "Founder & CEO", "Managing Director"],
    ("vp", "other"): ["VP Strategy", "VP Business Development"],
    ("director", "other"): ["Director", "Director of Strategy"],
    ("manager", "other"): ["Project Manager", "Office Manager", "Program Manager"],
    ("individual_contributor", "sales"): ["Account Executive", "Sales Development Representative"],
    ("individual_contributor", "marketing"): ["Marketing Specialist", "Marketing Coordinator"],
    ("individual_contributor", "it"): ["Systems Administrator", "IT Specialist", "Network Engineer"],
    ("individual_contributor", "engineering"): ["Software Engineer", "Data Engineer", "Developer"],
    ("individual_contributor", "finance"): ["Financial Analyst", "Accountant"],
    ("individual_contributor", "operations"): ["Operations Analyst", "Business Analyst"],
    ("individual_contributor", "hr"): ["HR Generalist", "Recruiter", "Talent Acquisition Specialist"],
    ("individual_contributor", "other"): ["Analyst", "Specialist", "Associate"],
}
_TITLE_STUDENT = ["Student", "Graduate Student", "PhD Candidate", "MBA Student", "Research Assistant"]
_TITLE_OTHER = ["Consultant", "Owner", "Freelancer", "Advisor", "Partner"]
_TITLE_VARIANTS = 5

# Event kinds: (activity_type, page_category or None, mix weight, intent slope, time-scale factor).
# The first _N_MIX kinds are drawn from the per-lead engagement mix; the others are derived.
_KINDS: list[tuple[ActivityType, PageCategory | None, float, float, float]] = [
    (ActivityType.PAGE_VIEW, PageCategory.PRICING, 0.045, 0.55, 1.0),
    (ActivityType.PAGE_VIEW, PageCategory.PRODUCT, 0.11, 0.30, 1.0),
    (ActivityType.PAGE_VIEW, PageCategory.DOCS, 0.07, 0.20, 1.2),
    (ActivityType.PAGE_VIEW, PageCategory.BLOG, 0.12, -0.10, 1.5),
    (ActivityType.PAGE_VIEW, PageCategory.CAREERS, 0.008, -0.30, 1.0),
    (ActivityType.PAGE_VIEW, PageCategory.OTHER, 0.10, 0.0, 1.2),
    (ActivityType.FORM_FILL, None, 0.018, 0.30, 1.0),
    (ActivityType.CONTENT_DOWNLOAD, None, 0.035, 0.10, 1.5),
    (ActivityType.WEBINAR_REGISTERED, None, 0.02, 0.35, 1.5),
    (ActivityType.EMAIL_OPEN, None, 0.34, -0.10, 3.0),
    (ActivityType.EMAIL_CLICK, None, 0.06, 0.25, 3.0),
    (ActivityType.DEMO_REQUEST, None, 0.0025, 1.0, 1.0),
    (ActivityType.WEBINAR_ATTENDED, None, 0.0, 0.0, 0.0),
    (ActivityType.UNSUBSCRIBE, None, 0.0, 0.0, 0.0),
    (ActivityType.BOUNCE, None, 0.0, 0.0, 0.0),
    (ActivityType.SALES_CALL, None, 0.0, 0.0, 0.0),
    (ActivityType.SALES_EMAIL, None, 0.0, 0.0, 0.0),
    (ActivityType.SALES_MEETING, None, 0.0, 0.0, 0.0),
]
_N_MIX = 12
(
    _K_PRICING,
    _K_PRODUCT,
    _K_DOCS,
    _K_BLOG,
    _K_CAREERS,
    _K_PV_OTHER,
    _K_FORM,
    _K_CONTENT,
    _K_WEB_REG,
    _K_OPEN,
    _K_CLICK,
    _K_DEMO,
    _K_WEB_ATT,
    _K_UNSUB,
    _K_BOUNCE,
    _K_CALL,
    _K_SALES_EMAIL,
    _K_MEETING,
) = range(len(_KINDS))
_ACTIVITY_TYPES = [t.value for t in ActivityType]
_PAGE_CATEGORIES = [p.value for p in PageCategory]
_KIND_TYPE = np.array([_ACTIVITY_TYPES.index(k[0].value) for k in _KINDS], dtype=np.int8)
_KIND_PAGE = np.array([-1 if k[1] is None else _PAGE_CATEGORIES.index(k[1].value) for k in _KINDS])
_MIX_LOGW = np.log(np.array([k[2] for k in _KINDS[:_N_MIX]]))
_MIX_SLOPE = np.array([k[3] for k in _KINDS[:_N_MIX]])
_MIX_SCALE = np.array([k[4] for k in _KINDS[:_N_MIX]])

_EMAIL_THEMES = ["Product Newsletter", "Customer Stories", "Nurture Series", "Product Update"]
_WEBINAR_THEMES = ["AI Lead Scoring", "Pipeline Analytics", "Customer Onboarding", "Revenue Operations"]

# Conversion-logit coefficients (see _conversion_logits).
_BASE_INTERCEPT = -2.6
_BASE_DRIFT = -0.6
#: with ``drift=True`` the base rate climbs instead:
#: ``_BASE_INTERCEPT + _DRIFT_BASE_OFFSET + _DRIFT_BASE_SLOPE * u``
_DRIFT_BASE_OFFSET, _DRIFT_BASE_SLOPE = -0.55, 0.9
_FIT_FREEMAIL = -0.7
_FIT_PURCHASED = -0.9
#: company size: a threshold step function of the employee count (lowest count of each band, logit)
_SIZE_BANDS = np.array([0.0, 10.0, 50.0, 200.0, 2000.0, 10_000.0])
_SIZE_FIT = np.array([-1.4, -0.4, 0.5, 1.0, 0.6, -0.3])
#: seniority x department: the buying centre. Senior people in IT/engineering buy, technical
#: individual contributors read the docs but do not; rows in _SENIORITIES order, columns in _DEPARTMENTS
_SEN_DEPT_FIT = np.array(
    [
        # sales marketing  it   eng  finance ops   hr   other
        [0.40, 0.40, 1.20, 1.20, -0.40, 0.00, -1.00, -0.40],  # c_level
        [0.40, 0.40, 1.20, 1.20, -0.40, 0.00, -1.00, -0.40],  # vp
        [0.20, 0.20, 1.00, 1.00, -0.40, 0.00, -1.00, -0.40],  # director
        [0.00, 0.00, 0.40, 0.40, -0.20, 0.00, -0.40, -0.20],  # manager
        [0.00, 0.00, -0.40, -0.40, 0.00, 0.00, 0.00, 0.00],  # individual_contributor
        [0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00],  # student
        [0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00],  # other
    ]
)
#: buying intent counts fully only for in-profile leads (manager or above, corporate e-mail); for the
#: rest engagement says little about conversion. Its effect saturates: ``coef * S * tanh(intent / S)``.
_PROFILE_SENIORITIES = np.array([True, True, True, True, False, False, False])
_INTENT_EFFECT_IN_PROFILE = 2.2
_INTENT_EFFECT_OUT_OF_PROFILE = 0.2
_INTENT_SATURATION = 2.5

# Causal effects of sales touches on the conversion logit (see _touch_effects). A follow-up of a form
# fill comes early (before the lead asked for a demo): it puts off executives and low-intent leads and
# helps engaged mid-level buyers; a follow-up of a demo request helps nearly everyone.
_TOUCH_FORM_BASE = np.array([-0.9, -0.7, -0.2, 0.3, 0.2, -0.4, -0.1])
_TOUCH_FORM_INTENT = 0.4
_TOUCH_DEMO_BASE = np.array([0.7, 0.7, 0.6, 0.5, 0.4, 0.1, 0.3])
_TOUCH_DEMO_INTENT = 0.2
#: sales follows a demo request up with this probability; the first touch comes 0.02 + Exp(1) days
#: after the trigger
_DEMO_FOLLOW_UP = 0.92
_FIRST_TOUCH_MIN_DAYS = 0.02

# --drift: the channel mix moves (log-weight change per unit of period position, _CHANNELS order) and a
# market index shared by all leads shifts the conversion logit by _MARKET_EFFECT * (index - 100).
_DRIFT_CHANNEL_SHIFT = np.array([-0.8, 1.0, 0.3, 0.0, -0.8, 0.3, -0.5, -0.3, 1.2, 0.5])
_MARKET_EFFECT = 0.03

# Latent state grids: the simulator draws from them, so the point-in-time oracle's sums are exact.
#: intent noise: 15 points on [-3, 3] with normal weights (sd ~1)
_EPS_GRID = np.linspace(-3.0, 3.0, 15)
_EPS_P = np.exp(-0.5 * _EPS_GRID**2) / np.exp(-0.5 * _EPS_GRID**2).sum()
#: engagement time scale (days): nine LogNormal(log 18, 0.7) quantiles, equally likely
_TAU_GRID = np.exp(np.log(18.0) + 0.7 * stats.norm.ppf((np.arange(9) + 0.5) / 9))
#: engagement volume: Poisson(_EVENT_RATE * exp(_EVENT_INTENT * intent) * G), G ~ Gamma(shape 2, rate 2)
_EVENT_RATE = 18.3
_EVENT_INTENT = 0.5
_G_SHAPE = 2.0
_G_RATE = 2.0
_JOB_SEEKER_INTENT = -1.0
_CAREERS_JOB_SEEKER = np.log(40.0)
_OPEN_PURCHASED = np.log(2.5)
_DOCS_STUDENT = np.log(1.5)
#: a webinar takes place this many days after each registration; attendance ~ sigmoid(a + b * intent)
_WEBINAR_DELAY_DAYS = 7.0
_ATTEND_A, _ATTEND_B = -0.2, 0.8
#: unsubscribe ~ sigmoid(a + b * intent) + purchased bump, at created + Exponential(2 * tau)
_UNSUB_A, _UNSUB_B, _UNSUB_PURCHASED = -3.0, -1.2, 0.04


@dataclass(frozen=True)
class SimulatedCRM:
    """A simulated CRM export plus the generative truth behind it."""

    leads: pd.DataFrame
    """Exactly the ``LeadsSchema`` columns, one row per lead, ordered by ``created_at``."""
    activities: pd.DataFrame
    """``ActivitiesSchema`` columns, ordered by ``lead_id`` then ``timestamp``."""
    outcomes: pd.DataFrame
    """``OutcomesSchema`` columns: converters whose ``converted_at`` is not after ``exported_at``."""
    truth: pd.DataFrame
    """Per lead: ``true_probability``, ``converts``, latent intent, logit parts and their inputs; the
    sales follow-up it got (``followed_up``: none/form/demo), its propensity and causal logit effects,
    and the potential probabilities ``p_untouched`` / ``p_form_follow_up`` / ``p_demo_follow_up``."""
    exported_at: pd.Timestamp
    """Export time: no timestamp in any observed table is after it."""
    market: pd.DataFrame | None = None
    """With ``drift``: the daily market index (``date``, ``market_index``), shared by all leads."""


# ---------------------------------------------------------------------------------------------------
# Small vectorised helpers
# ---------------------------------------------------------------------------------------------------
def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _sample_rows(rng: np.random.Generator, cum: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Inverse-CDF draw of one category per element; ``cum[rows[i]]`` is element i's cumulative row."""
    u = rng.random(rows.shape[0])
    out = np.zeros(rows.shape[0], dtype=np.int8)
    for k in range(cum.shape[1] - 1):
        out += u > cum[:, k][rows]
    return out


def _str_array(vocab: list[str], codes: np.ndarray, null: npt.ArrayLike | None = None) -> pa.Array:
    """Arrow string array ``vocab[codes]``, null where ``null`` or ``codes < 0``."""
    mask = codes < 0 if null is None else (np.asarray(null) | (codes < 0))
    indices = pa.array(codes, mask=mask) if mask.any() else pa.array(codes)
    return pc.take(pa.array(vocab, pa.large_string()), indices)


def _null_where(arr: pa.Array, null: npt.ArrayLike) -> pa.Array:
    return pc.if_else(pa.array(np.asarray(null)), pa.scalar(None, pa.string()), arr)


def _int_str(values: npt.ArrayLike, width: int = 0) -> pa.Array:
    out = pc.cast(pa.array(np.asarray(values, dtype=np.int64)), pa.string())
    return pc.utf8_lpad(out, width, "0") if width else out


def _series(arr: pa.Array | pa.ChunkedArray) -> pd.Series:
    return pd.Series(arr, dtype="str")


def _group_min(values: np.ndarray, groups: np.ndarray, n: int) -> np.ndarray:
    out = np.full(n, np.inf)
    np.minimum.at(out, groups, values)
    return out


@contextmanager
def _stages(enabled: bool, total: int) -> Iterator[Callable[[str], None]]:
    """Yield ``step(description)``, advancing a rich progress bar when enabled."""
    if not enabled:
        yield lambda _description: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("[bold]simulate_crm"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
    )
    with Progress(*columns) as bar:
        task = bar.add_task("starting", total=total)
        started = False

        def step(description: str) -> None:
            nonlocal started
            if started:
                bar.advance(task)
            started = True
            bar.update(task, description=description)

        yield step
        bar.update(task, completed=total, description="done")


def _job_title_table() -> tuple[list[str], np.ndarray]:
    """Vocabulary and a (seniority, department, variant) -> title-code table."""
    vocab: list[str] = []
    table = np.zeros((len(_SENIORITIES), len(_DEPARTMENTS), _TITLE_VARIANTS), dtype=np.int32)
    for si, sen in enumerate(_SENIORITIES):
        for di, dept in enumerate(_DEPARTMENTS):
            if (sen, dept) in _TITLE_SPECIAL:
                titles = _TITLE_SPECIAL[(sen, dept)]
            elif sen in _TITLE_TEMPLATES:
                titles = [t.format(D=_DEPT_LABEL[di]) for t in _TITLE_TEMPLATES[sen]]
            elif sen == "student":
                titles = _TITLE_STUDENT
            else:
                titles = _TITLE_OTHER
            for v in range(_TITLE_VARIANTS):
                title = titles[v % len(titles)]
                if title not in vocab:
                    vocab.append(title)
                table[si, di, v] = vocab.index(title)
    return vocab, table


def _to_timestamp(value: str | pd.Timestamp) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts


# ---------------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------------
def simulate_crm(
    *,
    n_leads: int,
    seed: int,
    start: str | pd.Timestamp = "2024-01-01",
    end: str | pd.Timestamp = "2025-12-31",
    drift: bool = False,
    progress: bool = False,
) -> SimulatedCRM:
    """Simulate a CRM export of ``n_leads`` leads created in ``[start, end)``, exported at ``end``.

    Deterministic for a given ``seed``; ``progress`` shows a rich progress bar over the stages.
    ``drift`` makes the funnel move over time: the base rate climbs, the channel mix shifts and a
    market index (``SimulatedCRM.market``) leaves its earlier range in the last quarter of the period.
    """
    if n_leads < 1:
        raise ValueError("n_leads must be at least 1")
    start_ts, end_ts = _to_timestamp(start), _to_timestamp(end)
    if end_ts <= start_ts:
        raise ValueError("end must be after start")
    rng = np.random.default_rng(seed)
    n = int(n_leads)
    start_ns = int(start_ts.as_unit("ns").value)
    span_s = (end_ts - start_ts) // pd.Timedelta(seconds=1)
    span = span_s / 86_400.0  # days; exported_at = start + span

    with _stages(progress, 6) as step:
        step("lead creation times")
        created, u_period = _creation_times(rng, n=n, start_ts=start_ts, span=span)
        quarter_starts, campaign_names = _quarters(start_ts, end_ts)

        step("people and companies")
        people = _people(rng, n=n, u_period=u_period, drift=drift)

        step("engagement events")
        ev, feats = _engagement(rng, people=people, created=created, quarter_starts=quarter_starts)

        step("sales touches")
        touches = _sales_touches(rng, people=people, feats=feats)
        feats["n_sales_touches"] = touches.pop("count")
        follow_up = {k: touches.pop(k) for k in ("form_first", "form_touched", "demo_touched", "p_form")}

        step("conversion")
        market = _market_index(created, span=span, seed=seed) if drift else None
        parts = _conversion_logits(people=people, u_period=u_period, market=market, touches=follow_up)
        logit = np.add.reduce(list(parts.values()))
        prob = _sigmoid(logit)
        untouched = logit - parts["logit_touch"]
        effect_form, effect_demo = _touch_effects(intent=people["intent"], seniority=people["seniority"])
        converts = rng.random(n) < prob
        delay = CONVERSION_DELAY.rvs(size=n, random_state=rng)  # independent of everything else
        conv_t = np.where(converts, created + delay, np.inf)

        step("assemble tables")
        width = max(7, len(str(n)))
        lead_ids = pc.binary_join_element_wise("L", _int_str(np.arange(1, n + 1), width), "").cast(
            pa.large_string()
        )
        activities = _assemble_activities(
            ev=ev,
            touches=touches,
            conv_t=conv_t,
            span=span,
            lead_ids=lead_ids,
            start_ns=start_ns,
            campaign_names=campaign_names,
        )
        del ev, touches
        created_ns = start_ns + np.round(created * 86_400).astype(np.int64) * 10**9
        leads = _assemble_leads(rng, people=people, lead_ids=lead_ids, created_ns=created_ns)
        delay_ns = np.round(delay * DAY_NS).astype(np.int64)
        conv_ns = created_ns + delay_ns
        exported_ns = start_ns + span_s * 10**9
        observed = converts & (conv_ns <= exported_ns)
        amount = np.exp(
            np.log(12_000.0)
            + 0.3 * np.clip(np.log(people["employee_count"] / 100.0), -3, 5)
            + rng.normal(0.0, 0.6, n)
        )
        amount = np.maximum(np.round(amount, -2), 100.0)
        amount[rng.random(n) < 0.03] = np.nan
        won_ns, won_amount = _closed_won(
            np.random.default_rng([seed, 20_261_127]),  # its own stream: nothing else changes with it
            people=people,
            conv_ns=conv_ns,
            amount=amount,
            exported_ns=exported_ns,
        )
        outcomes = pd.DataFrame(
            {
                "lead_id": _series(lead_ids.filter(pa.array(observed))),
                "converted_at": conv_ns[observed].view("datetime64[ns]"),
                "opportunity_amount": amount[observed],
                "won_at": won_ns[observed].view("datetime64[ns]"),
                "won_amount": won_amount[observed],
            }
        )
        truth = pd.DataFrame(
            {
                "lead_id": _series(lead_ids),
                "true_probability": prob,
                "converts": converts,
                **parts,
                "logit": logit,
                "intent": people["intent"],
                "intent_coefficient": _intent_coefficient(people),
                "intent_prior_mean": people["intent_prior_mean"],
                "job_seeker": people["job_seeker"],
                "job_seeker_prior": people["job_seeker_prior"],
                "engagement_tau_days": feats["tau"],
                "engagement_volume": feats["volume"],
                "freemail": people["freemail"],
                "n_pricing_views": feats["n_pricing"],
                "n_webinars_attended": feats["n_attended"],
                "has_demo_request": feats["has_demo"],
                "n_sales_touches": feats["n_sales_touches"],
                "form_first": follow_up["form_first"],
                "form_follow_up_probability": follow_up["p_form"],
                "followed_up": np.where(
                    follow_up["form_touched"], "form", np.where(follow_up["demo_touched"], "demo", "none")
                ),
                "effect_form_follow_up": effect_form,
                "effect_demo_follow_up": effect_demo,
                "p_untouched": _sigmoid(untouched),
                "p_form_follow_up": _sigmoid(untouched + effect_form),
                "p_demo_follow_up": _sigmoid(untouched + effect_demo),
                "n_careers_views": feats["n_careers"],
                "unsubscribed": feats["unsubscribed"],
                "bounced": feats["bounced"],
                "conversion_delay_days": np.where(converts, delay, np.nan),
                "converted_at": np.where(converts, conv_ns, np.iinfo(np.int64).min).view("datetime64[ns]"),
            }
        )
        market_table = None
        if market is not None:
            truth["market_index"] = market
            days = np.arange(int(np.ceil(span)) + 1)
            market_table = pd.DataFrame(
                {
                    "date": (start_ns + days * DAY_NS).view("datetime64[ns]"),
                    "market_index": np.round(_market_index(days.astype(float), span=span, seed=seed), 6),
                }
            )
    return SimulatedCRM(
        leads=leads,
        activities=activities,
        outcomes=outcomes,
        truth=truth,
        exported_at=end_ts.as_unit("ns"),
        market=market_table,
    )


def write_crm(
    crm: SimulatedCRM, *, out_dir: Path, file_format: Literal["parquet", "csv"] = "parquet"
) -> dict[str, Path]:
    """Write ``leads``, ``activities``, ``outcomes``, ``truth`` (and ``market`` when simulated with drift)
    to ``out_dir``; return their paths."""
    if file_format not in ("parquet", "csv"):
        raise ValueError(f"unknown file_format {file_format!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    names = ("leads", "activities", "outcomes", "truth") + (("market",) if crm.market is not None else ())
    for name in names:
        frame: pd.DataFrame = getattr(crm, name)
        path = out_dir / f"{name}.{file_format}"
        if file_format == "parquet":
            frame.to_parquet(path, index=False)
        else:
            frame.to_csv(path, index=False)
        paths[name] = path
    return paths


def oracle_probability(
    *, truth: pd.DataFrame, leads: pd.DataFrame, snapshots: pd.DataFrame, horizon_days: int
) -> np.ndarray:
    """Exact P(lead converts in ``(as_of, as_of + horizon]`` | not converted by ``as_of``) per snapshot.

    ``p * (F(s + H) - F(s)) / (1 - p * F(s))`` with ``p`` the lead's ``true_probability``,
    ``s = as_of - created_at`` in days and ``F`` the conversion-delay CDF (``CONVERSION_DELAY``).
    """
    if horizon_days <= 0:
        raise ValueError("horizon_days must be positive")
    ids = snapshots["lead_id"].to_numpy()
    t_pos = pd.Index(truth["lead_id"]).get_indexer(ids)
    l_pos = pd.Index(leads["lead_id"]).get_indexer(ids)
    if (t_pos < 0).any() or (l_pos < 0).any():
        raise KeyError("snapshots reference lead_ids missing from truth or leads")
    p = truth["true_probability"].to_numpy(dtype=float)[t_pos]
    created = pd.to_datetime(leads["created_at"]).to_numpy("datetime64[ns]")[l_pos]
    as_of = pd.to_datetime(snapshots["as_of"]).to_numpy("datetime64[ns]")
    s = (as_of - created).astype(np.int64) / DAY_NS
    f_now = CONVERSION_DELAY.cdf(s)
    f_end = CONVERSION_DELAY.cdf(s + float(horizon_days))
    return np.clip(p * (f_end - f_now) / (1.0 - p * f_now), 0.0, 1.0)


def _truth_at(*, crm: SimulatedCRM, snapshots: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """The truth rows of each snapshot's lead and the share of its conversion delay passed by ``as_of``."""
    ids = snapshots["lead_id"].to_numpy()
    t_pos = pd.Index(crm.truth["lead_id"]).get_indexer(ids)
    l_pos = pd.Index(crm.leads["lead_id"]).get_indexer(ids)
    if (t_pos < 0).any() or (l_pos < 0).any():
        raise KeyError("snapshots reference lead_ids missing from truth or leads")
    created = crm.leads["created_at"].to_numpy("datetime64[ns]")[l_pos]
    s = (pd.to_datetime(snapshots["as_of"]).to_numpy("datetime64[ns]") - created).astype(np.int64) / DAY_NS
    return crm.truth.iloc[t_pos], CONVERSION_DELAY.cdf(np.maximum(s, 0.0))


def true_form_follow_up_effect(*, crm: SimulatedCRM, snapshots: pd.DataFrame) -> np.ndarray:
    """True effect of following up a lead's form fill now, per snapshot (``lead_id``, ``as_of``).

    ``P(converts | followed up) - P(converts | not followed up)`` for a lead not converted by
    ``as_of``, from its latent state: without the form follow-up the lead may still get the demo
    follow-up later (with the sales rule's 92 % if it ever requests a demo). This is the individual
    effect an uplift model of "follow up this form fill" should rank by.
    """
    truth, f_now = _truth_at(crm=crm, snapshots=snapshots)

    def converts(p: np.ndarray) -> np.ndarray:
        return p * (1 - f_now) / (1 - p * f_now)

    p0, p_form, p_demo = (
        truth[c].to_numpy(dtype=float) for c in ("p_untouched", "p_form_follow_up", "p_demo_follow_up")
    )
    demo_later = truth["has_demo_request"].to_numpy(dtype=bool)
    without = np.where(
        demo_later, _DEMO_FOLLOW_UP * converts(p_demo) + (1 - _DEMO_FOLLOW_UP) * converts(p0), converts(p0)
    )
    return np.asarray(converts(p_form) - without)


def true_contact_effect(*, crm: SimulatedCRM, snapshots: pd.DataFrame) -> np.ndarray:
    """True effect of a sales follow-up now, per snapshot of a lead nobody has contacted yet.

    A lead that has requested a demo by ``as_of`` gets the demo follow-up's effect
    (``P(converts | demo follow-up) - P(converts | none)``); any other gets the early follow-up's,
    :func:`true_form_follow_up_effect` (against waiting, with the demo follow-up it may still get).
    """
    truth, f_now = _truth_at(crm=crm, snapshots=snapshots)
    ids = snapshots["lead_id"].to_numpy()
    as_of = pd.to_datetime(snapshots["as_of"]).to_numpy("datetime64[ns]")
    p0, p_demo = (truth[c].to_numpy(dtype=float) for c in ("p_untouched", "p_demo_follow_up"))
    demos = crm.activities[crm.activities["activity_type"] == "demo_request"]
    first_demo = demos.groupby("lead_id")["timestamp"].min()
    demo_at = pd.Series(ids).map(first_demo).to_numpy("datetime64[ns]")
    requested = ~np.isnat(demo_at) & (demo_at <= as_of)

    def converts(p: np.ndarray) -> np.ndarray:
        return p * (1 - f_now) / (1 - p * f_now)

    early = true_form_follow_up_effect(crm=crm, snapshots=snapshots)
    return np.where(requested, converts(p_demo) - converts(p0), early)


_CREATION_CHANNELS = np.array(
    [_CH[c] for c in ("web_form", "content_download", "webinar", "paid_search", "organic_search", "social")]
)
_EMAIL_KINDS = np.array([_K_OPEN, _K_CLICK])


def point_in_time_oracle_probability(
    *, crm: SimulatedCRM, snapshots: pd.DataFrame, horizon_days: int, chunk_rows: int = 20_000
) -> np.ndarray:
    """Bayes-optimal P(converts in ``(as_of, as_of + horizon]``) given what is observable at ``as_of``.

    The best score any model can reach from a lead's exported history up to ``as_of``: the
    simulator's own generative model inverted exactly. Per snapshot it sums over the latent grid
    (intent noise x job seeker x engagement time scale, each drawn from a finite grid) weighted by
    prior x likelihood of the lead's exported activities up to ``as_of`` (event counts and times per
    kind, webinar attendance, unsubscribe, e-mail stop), integrates the engagement volume out
    analytically (Gamma-Poisson) and conditions on "not converted by ``as_of``". The sales follow-up
    changes the conversion probability, so the sum also runs over the follow-up path (none, after
    the form fill, after the demo request): a touch seen by ``as_of`` fixes it (its delay, kinds and
    count tell the two triggers apart), a trigger not yet followed up leaves it pending, and a lead
    with no trigger yet gets the chance that one comes (form fill or demo request first) and is
    followed up. Bounces carry no information and cancel. It does know the true fit values where
    the export lost them (e.g. a missing industry) and the follow-up propensity, which a model
    cannot. Exact up to the export's whole-second timestamps.

    Compare with ``oracle_probability``, which knows the latent intent itself (an information ceiling
    that no model of the export can reach).
    """
    if horizon_days <= 0:
        raise ValueError("horizon_days must be positive")
    leads, truth = crm.leads, crm.truth
    ids = snapshots["lead_id"].to_numpy()
    l_pos = pd.Index(leads["lead_id"]).get_indexer(ids)
    t_pos = pd.Index(truth["lead_id"]).get_indexer(ids)
    if (l_pos < 0).any() or (t_pos < 0).any():
        raise KeyError("snapshots reference lead_ids missing from truth or leads")
    n_snap = ids.shape[0]
    created_ns = leads["created_at"].to_numpy("datetime64[ns]").astype(np.int64)
    as_of_ns = pd.to_datetime(snapshots["as_of"]).to_numpy("datetime64[ns]").astype(np.int64)
    if (as_of_ns > crm.exported_at.as_unit("ns").value).any():
        raise ValueError(f"as_of after the export ({crm.exported_at}): the export cannot show that history")
    s = (as_of_ns - created_ns[l_pos]) / DAY_NS
    seen_days = np.maximum(s, 0.0)  # a snapshot before creation has seen nothing yet

    # each snapshot's activities up to as_of, through one sort on (lead position, time)
    acts = crm.activities
    a_lead = pd.Index(leads["lead_id"]).get_indexer(acts["lead_id"]).astype(np.int64)
    a_ns = acts["timestamp"].to_numpy("datetime64[ns]").astype(np.int64)
    order = np.lexsort((a_ns, a_lead))
    a_lead, a_ns = a_lead[order], a_ns[order]
    type_code = pd.Categorical(acts["activity_type"], categories=_ACTIVITY_TYPES).codes[order]
    page_code = pd.Categorical(acts["page_category"], categories=_PAGE_CATEGORIES).codes[order]
    kind_of = np.full((len(_ACTIVITY_TYPES), len(_PAGE_CATEGORIES) + 1), -1, dtype=np.int8)
    for k in range(len(_KINDS)):
        kind_of[_KIND_TYPE[k], _KIND_PAGE[k] + 1] = k
    a_kind = np.where(type_code >= 0, kind_of[type_code, page_code.astype(np.int64) + 1], -1)
    # one packed (lead, second) key: the simulator writes whole seconds
    base_ns = min(int(a_ns.min(initial=as_of_ns.min())), int(as_of_ns.min())) // 10**9 * 10**9
    a_key = (a_lead << 34) | ((a_ns - base_ns) // 10**9)
    first = np.searchsorted(a_key, l_pos.astype(np.int64) << 34, side="left")
    upto = np.searchsorted(
        a_key, (l_pos.astype(np.int64) << 34) | ((as_of_ns - base_ns) // 10**9), side="right"
    )
    sizes = upto - first
    sid = np.repeat(np.arange(n_snap), sizes)
    rows = np.arange(sid.shape[0]) - np.repeat(np.cumsum(sizes) - sizes, sizes) + np.repeat(first, sizes)
    kind, t_ns = a_kind[rows], a_ns[rows]
    t = (t_ns - created_ns[l_pos][sid]) / DAY_NS

    channel = pd.Categorical(leads["channel"], categories=_CHANNELS).codes[l_pos]
    seniority = pd.Categorical(leads["seniority"], categories=_SENIORITIES).codes[l_pos]
    purchased = (channel == _CH["purchased_list"]).astype(float)
    student = (seniority == _SEN["student"]).astype(float)
    creation = (t_ns == created_ns[l_pos][sid]) & (kind < _N_MIX) & np.isin(channel[sid], _CREATION_CHANNELS)

    mix = (kind >= 0) & (kind < _N_MIX) & ~creation
    counts = np.bincount(sid[mix] * _N_MIX + kind[mix], minlength=n_snap * _N_MIX).reshape(n_snap, _N_MIX)
    time_sum = np.bincount(sid[mix], weights=t[mix] / _MIX_SCALE[kind[mix]], minlength=n_snap)
    week_ns = int(_WEBINAR_DELAY_DAYS * DAY_NS)
    known_reg = np.bincount(sid[(kind == _K_WEB_REG) & (t_ns + week_ns <= as_of_ns[sid])], minlength=n_snap)
    attended = np.bincount(sid[kind == _K_WEB_ATT], minlength=n_snap)
    unsub_t = _group_min(t[kind == _K_UNSUB], sid[kind == _K_UNSUB], n_snap)
    bounce_t = _group_min(t[kind == _K_BOUNCE], sid[kind == _K_BOUNCE], n_snap)
    exposure_end = np.tile(seen_days[:, None], (1, _N_MIX))
    exposure_end[:, _EMAIL_KINDS] = np.minimum(np.minimum(unsub_t, bounce_t), seen_days)[:, None]

    prior_mean = truth["intent_prior_mean"].to_numpy(dtype=float)[t_pos]
    seeker_prior = truth["job_seeker_prior"].to_numpy(dtype=float)[t_pos]
    fixed_logit = (truth["logit_base"] + truth["logit_fit"]).to_numpy(dtype=float)[t_pos]
    intent_coef = truth["intent_coefficient"].to_numpy(dtype=float)[t_pos]
    f_now = CONVERSION_DELAY.cdf(s)
    f_end = CONVERSION_DELAY.cdf(s + float(horizon_days))
    follow = _follow_up_evidence(
        kind=kind,
        t=t,
        sid=sid,
        n_snap=n_snap,
        s=s,
        web_form=channel == _CH["web_form"],
        p_form=truth["form_follow_up_probability"].to_numpy(dtype=float)[t_pos],
    )

    out = np.empty(n_snap)
    seeker = np.array([0.0, 1.0])
    tau = _TAU_GRID
    for lo in range(0, n_snap, chunk_rows):
        c = slice(lo, min(lo + chunk_rows, n_snap))
        m = c.stop - c.start
        # latent states: intent noise j, job seeker b (axes 1, 2); time scale on the last axis
        z = prior_mean[c, None, None] + _EPS_GRID[None, :, None] + _JOB_SEEKER_INTENT * seeker[None, None, :]
        logw = _event_mix_logits(
            intent=z,
            job_seeker=np.broadcast_to(seeker, z.shape),
            purchased=purchased[c, None, None],
            student=student[c, None, None],
        )
        logp = logw - np.logaddexp.reduce(logw, axis=-1, keepdims=True)
        exposure = -np.expm1(-exposure_end[c, None, :] / (tau[None, :, None] * _MIX_SCALE[None, None, :]))
        unit = np.einsum("sjbk,smk->sjbm", np.exp(logp), exposure)
        log_mu = np.log(_EVENT_RATE) + _EVENT_INTENT * z
        n_events = counts[c].sum(axis=1).astype(float)
        nb = n_events[:, None, None, None]
        ll = (
            (n_events[:, None, None] * log_mu + np.einsum("sjbk,sk->sjb", logp, counts[c]))[..., None]
            - (_G_SHAPE + nb) * np.log(_G_RATE + np.exp(log_mu)[..., None] * unit)
            - time_sum[c, None, None, None] / tau
            - nb * np.log(tau)
        )
        attend = _sigmoid(_ATTEND_A + _ATTEND_B * z)
        att, reg = attended[c, None, None], known_reg[c, None, None]
        ll += (att * np.log(attend) + np.maximum(reg - att, 0) * np.log1p(-attend))[..., None]
        p_unsub = np.minimum(
            1.0, _sigmoid(_UNSUB_A + _UNSUB_B * z) + _UNSUB_PURCHASED * purchased[c, None, None]
        )
        p_unsub = p_unsub[..., None]
        u = unsub_t[c, None, None, None]
        seen = np.isfinite(u)
        ll += np.where(
            seen,
            np.log(p_unsub) - np.where(seen, u, 0.0) / (2 * tau) - np.log(2 * tau),
            np.log1p(-p_unsub * -np.expm1(-seen_days[c, None, None, None] / (2 * tau))),
        )
        ll += (
            np.log(_EPS_P)[None, :, None]
            + np.log(np.stack([1 - seeker_prior[c], seeker_prior[c]], -1))[:, None, :]
        )[..., None]
        w = np.exp(ll - ll.reshape(m, -1).max(axis=1)[:, None, None, None])
        # which follow-up (none, form, demo) the lead gets: P(touch evidence, follow-up | latent state)
        mu = np.exp(log_mu)[..., None]
        a_post, r_post = _G_SHAPE + nb, _G_RATE + mu * unit  # posterior of the engagement volume
        remaining = np.exp(-seen_days[c, None, None, None] / tau)  # scale 1: forms and demos alike
        c_form = mu * np.exp(logp[..., _K_FORM])[..., None] * remaining
        c_demo = mu * np.exp(logp[..., _K_DEMO])[..., None] * remaining
        w_none, w_form, w_demo = _follow_up_weights(
            follow={k: v[c] for k, v in follow.items()},
            no_demo=np.exp(-a_post * np.log1p(c_demo / r_post)),
            no_trigger=np.exp(-a_post * np.log1p((c_form + c_demo) / r_post)),
            form_share=c_form / (c_form + c_demo),
        )
        base = fixed_logit[c, None, None] + _intent_logit(intent=z, coef=intent_coef[c, None, None])
        effect_form, effect_demo = _touch_effects(intent=z, seniority=seniority[c, None, None])
        fn = f_now[c, None, None, None]
        num = np.zeros(m)
        den = np.zeros(m)
        for weight, logit in ((w_none, base), (w_form, base + effect_form), (w_demo, base + effect_demo)):
            p_conv = _sigmoid(logit)[..., None]
            num += (w * weight * p_conv).reshape(m, -1).sum(axis=1)
            den += (w * weight * (1.0 - p_conv * fn)).reshape(m, -1).sum(axis=1)
        out[c] = num * (f_end[c] - f_now[c]) / den
    return np.clip(out, 0.0, 1.0)


_TOUCH_KIND_P = {  # P(call, e-mail, meeting) of every touch of a form-led and a demo-led follow-up
    "form": np.array([0.40, 0.52, 0.08]),
    "demo": np.array([0.35, 0.40, 0.25]),
}
_TOUCH_EXTRA_MEAN = {"form": 1.8, "demo": 3.5}  # touches per follow-up: min(1 + Poisson(mean), 10)
_MAX_TOUCHES = 10
_LATER_TOUCH_GAP_DAYS = 4.0
_SECOND = 1.0 / 86_400
assert _MIX_SCALE[_K_FORM] == _MIX_SCALE[_K_DEMO] == 1.0  # the oracle's "which trigger comes first"


def _first_gap_density(touch: np.ndarray, trigger: np.ndarray) -> np.ndarray:
    """Density of the first touch's delay after its trigger (0.02 + Exp(1) days); whole-second slack."""
    both = np.isfinite(touch) & np.isfinite(trigger)
    gap = np.where(both, touch, 0.0) - np.where(both, trigger, 0.0)
    ok = both & (gap >= _FIRST_TOUCH_MIN_DAYS - 2 * _SECOND)
    return np.where(ok, np.exp(-np.maximum(gap - _FIRST_TOUCH_MIN_DAYS, 0.0)), 0.0)


def _no_touch_yet(elapsed: np.ndarray) -> np.ndarray:
    """P(the first touch comes more than ``elapsed`` days after its trigger)."""
    return np.exp(-np.maximum(elapsed - _FIRST_TOUCH_MIN_DAYS, 0.0))


def _touch_sequence_likelihood(
    *, path: str, n_touch: np.ndarray, kind_counts: np.ndarray, since_last: np.ndarray
) -> np.ndarray:
    """P(touch kinds seen and no further touch by as_of | follow-up path), up to path-free factors."""
    probs = _TOUCH_KIND_P[path]
    kinds = np.exp(kind_counts @ np.log(probs))
    k = np.clip(n_touch, 1, _MAX_TOUCHES).astype(int)
    extra = stats.poisson(_TOUCH_EXTRA_MEAN[path])
    pmf = np.where(k < _MAX_TOUCHES, extra.pmf(k - 1), extra.sf(_MAX_TOUCHES - 2))
    more = np.where(k < _MAX_TOUCHES, extra.sf(k - 1), 0.0)
    return kinds * (pmf + more * np.exp(-since_last / _LATER_TOUCH_GAP_DAYS))


def _follow_up_evidence(
    *,
    kind: np.ndarray,
    t: np.ndarray,
    sid: np.ndarray,
    n_snap: int,
    s: np.ndarray,
    web_form: np.ndarray,
    p_form: np.ndarray,
) -> dict[str, np.ndarray]:
    """Per snapshot, what the export shows of the sales follow-up by as_of, as path weights.

    Returns the case (``touched``: a follow-up is seen; ``form_open``: a form fill came first, no
    demo request and no touch yet; ``no_trigger``: neither a form fill nor a demo request yet; else
    a trigger without a touch yet) and the weights of the paths that do not depend on the latent
    state. A web-form lead's first form fill is its creation, known even before it.
    """
    t_form = _group_min(t[kind == _K_FORM], sid[kind == _K_FORM], n_snap)
    t_form = np.where(web_form, np.minimum(t_form, 0.0), t_form)
    t_demo = _group_min(t[kind == _K_DEMO], sid[kind == _K_DEMO], n_snap)
    sales = (kind == _K_CALL) | (kind == _K_SALES_EMAIL) | (kind == _K_MEETING)
    t_touch = _group_min(t[sales], sid[sales], n_snap)
    t_last = -_group_min(-t[sales], sid[sales], n_snap)
    n_touch = np.bincount(sid[sales], minlength=n_snap)
    kind_counts = np.stack(
        [np.bincount(sid[kind == k], minlength=n_snap) for k in (_K_CALL, _K_SALES_EMAIL, _K_MEETING)], 1
    ).astype(float)
    form_first = np.isfinite(t_form) & (t_form < t_demo)
    demo_first = np.isfinite(t_demo) & ~form_first
    touched = np.isfinite(t_touch)
    demo_seen = np.isfinite(t_demo)
    since_last = np.where(touched, s - t_last, 0.0)

    w_none, w_form, w_demo = np.zeros(n_snap), np.zeros(n_snap), np.zeros(n_snap)
    # a touch is seen: it follows the form fill or the demo request (both possible when the demo
    # request came between the form fill and the first touch)
    seq = {
        path: _touch_sequence_likelihood(
            path=path, n_touch=n_touch, kind_counts=kind_counts, since_last=since_last
        )
        for path in ("form", "demo")
    }
    lf = p_form * _first_gap_density(t_touch, t_form) * seq["form"]
    ld = (1 - p_form) * _DEMO_FOLLOW_UP * _first_gap_density(t_touch, t_demo) * seq["demo"]
    tf = touched & form_first
    scale = np.where(tf, lf + ld, 1.0)
    scale = np.where(scale > 0, scale, 1.0)
    w_form = np.where(tf, lf / scale, w_form)
    w_demo = np.where(tf, ld / scale, w_demo)
    w_demo = np.where(touched & demo_first, 1.0, w_demo)
    w_none = np.where(touched & ~form_first & ~demo_first, 1.0, w_none)
    # no touch yet after a trigger
    open_form = ~touched & form_first
    pending_form = p_form * _no_touch_yet(s - t_form)
    w_form = np.where(open_form, pending_form, w_form)
    both = open_form & demo_seen
    w_demo = np.where(both, (1 - p_form) * _DEMO_FOLLOW_UP * _no_touch_yet(s - t_demo), w_demo)
    w_none = np.where(both, (1 - p_form) * (1 - _DEMO_FOLLOW_UP), w_none)
    open_demo = ~touched & demo_first
    w_demo = np.where(open_demo, _DEMO_FOLLOW_UP * _no_touch_yet(s - t_demo), w_demo)
    w_none = np.where(open_demo, 1 - _DEMO_FOLLOW_UP, w_none)
    return {
        "form_open": (open_form & ~demo_seen).astype(float),
        "no_trigger": (~touched & ~form_first & ~demo_first).astype(float),
        "p_form": p_form,
        "w_none": w_none,
        "w_form": w_form,
        "w_demo": w_demo,
    }


def _follow_up_weights(
    *, follow: dict[str, np.ndarray], no_demo: np.ndarray, no_trigger: np.ndarray, form_share: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """P(touch evidence, follow-up path | latent state) for the paths none, form, demo.

    ``no_demo`` / ``no_trigger``: posterior P(no demo request / neither trigger after as_of) given
    the latent state (engagement volume integrated out); ``form_share``: P(the next trigger is a
    form fill). Leads whose trigger is still to come get the sales rule's probabilities.
    """
    shape = no_demo.shape
    ex = (slice(None), None, None, None)
    p_form = follow["p_form"][ex]
    form_open = follow["form_open"][ex] > 0
    none_yet = follow["no_trigger"][ex] > 0
    # a form fill came first, no demo request yet: one may still come and be followed up
    demo_later = 1.0 - no_demo
    w_form = np.broadcast_to(follow["w_form"][ex], shape).copy()
    w_demo = np.where(
        form_open, (1 - p_form) * _DEMO_FOLLOW_UP * demo_later, np.broadcast_to(follow["w_demo"][ex], shape)
    )
    w_none = np.where(
        form_open,
        (1 - p_form) * (1 - _DEMO_FOLLOW_UP * demo_later),
        np.broadcast_to(follow["w_none"][ex], shape),
    )
    # neither trigger yet: which comes first, if any
    some = 1.0 - no_trigger
    form_then = some * form_share
    form_then_no_demo = no_demo - no_trigger
    f0 = p_form * form_then
    d0 = _DEMO_FOLLOW_UP * (some * (1 - form_share) + (1 - p_form) * (form_then - form_then_no_demo))
    w_form = np.where(none_yet, f0, w_form)
    w_demo = np.where(none_yet, d0, w_demo)
    w_none = np.where(none_yet, 1.0 - f0 - d0, w_none)
    return w_none, w_form, w_demo


# ---------------------------------------------------------------------------------------------------
# Generation stages
# ---------------------------------------------------------------------------------------------------
def _creation_times(
    rng: np.random.Generator, *, n: int, start_ts: pd.Timestamp, span: float
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted creation times (days since start, whole seconds) and their position in the period."""
    n_days = int(np.ceil(span))
    day = np.arange(n_days)
    weekday = (start_ts.dayofweek + day) % 7
    weight = np.exp(np.log(2.5) * day / max(n_days, 1)) * np.where(weekday >= 5, 0.35, 1.0)
    # the last day may be partial
    weight *= np.clip(span - day, 0.0, 1.0)
    d = rng.choice(n_days, size=n, p=weight / weight.sum())
    business = rng.random(n) < 0.85
    hour = np.where(business, np.clip(rng.normal(14.5, 3.0, n), 0.0, 23.99), rng.uniform(0.0, 24.0, n))
    created = np.minimum(d + hour / 24.0, span - 1.0 / 86_400)
    created = np.floor(np.sort(created) * 86_400) / 86_400
    return created, created / span


def _people(rng: np.random.Generator, *, n: int, u_period: np.ndarray, drift: bool) -> dict[str, np.ndarray]:
    """Latent per-lead attributes (true values, before export missingness).

    With ``drift`` the channel mix moves over the period (``_DRIFT_CHANNEL_SHIFT``): paid search and
    social grow, web forms, trade shows and referrals shrink.
    """
    if drift:
        logw = np.log(_CHANNEL_P)[None, :] + _DRIFT_CHANNEL_SHIFT[None, :] * u_period[:, None]
        p = np.exp(logw - logw.max(axis=1, keepdims=True))
        cum = np.cumsum(p / p.sum(axis=1, keepdims=True), axis=1)
        channel = _sample_rows(rng, cum, np.arange(n))
    else:
        channel = rng.choice(len(_CHANNELS), size=n, p=_CHANNEL_P).astype(np.int8)
    seniority = rng.choice(len(_SENIORITIES), size=n, p=_SENIORITY_P).astype(np.int8)
    department = rng.choice(len(_DEPARTMENTS), size=n, p=_DEPARTMENT_P).astype(np.int8)
    student = seniority == _SEN["student"]
    department[student] = _DEPARTMENTS.index("other")

    # companies: leads concentrate on larger companies
    n_comp = max(20, n // 3)
    c_industry = rng.choice(len(_INDUSTRIES), size=n_comp, p=_INDUSTRY_P).astype(np.int8)
    c_size = np.clip(np.round(np.exp(rng.normal(np.log(150.0), 1.9, n_comp))), 1, 500_000)
    c_country = rng.choice(len(_COUNTRIES), size=n_comp, p=_COUNTRY_P).astype(np.int8)
    c_type = _sample_rows(rng, np.cumsum(_COMPANY_TYPE_P, axis=1), c_industry.astype(np.intp))
    go_public = (c_type == 0) & (c_size > 5000) & (rng.random(n_comp) < 0.5)
    c_type[go_public] = 1
    c_rev_per_emp = _REVENUE_PER_EMPLOYEE[c_industry] * np.exp(rng.normal(0.0, 0.5, n_comp))
    w = c_size**0.6
    company = rng.choice(n_comp, size=n, p=w / w.sum())

    # students belong to universities
    n_uni = len(_UNIVERSITIES)
    uni_size = np.round(np.exp(np.log(3000.0) + 0.8 * np.linspace(-1.5, 1.5, n_uni)))
    university = rng.integers(0, n_uni, n)

    industry = np.where(student, _EDUCATION, c_industry[company]).astype(np.int8)
    employee_count = np.where(student, uni_size[university], c_size[company])
    revenue = np.where(student, uni_size[university] * 80e3, c_size[company] * c_rev_per_emp[company])
    company_type = np.where(student, _COMPANY_TYPES.index("education"), c_type[company]).astype(np.int8)
    country = np.where(student & (rng.random(n) < 0.7), 0, c_country[company]).astype(np.int8)

    p_free = np.where(student, 0.45, _CHANNEL_FREEMAIL[channel])
    freemail = rng.random(n) < p_free

    intent_prior_mean = _CHANNEL_INTENT[channel] + _SENIORITY_INTENT[seniority]
    intent = intent_prior_mean + _EPS_GRID[rng.choice(_EPS_GRID.shape[0], size=n, p=_EPS_P)]
    job_seeker_prior = _job_seeker_prior(channel=channel, seniority=seniority)
    job_seeker = rng.random(n) < job_seeker_prior
    intent = intent + _JOB_SEEKER_INTENT * job_seeker
    return {
        "channel": channel,
        "seniority": seniority,
        "department": department,
        "student": student,
        "company": company,
        "n_comp": np.array(n_comp),
        "c_country": c_country,
        "university": university,
        "industry": industry,
        "employee_count": employee_count,
        "annual_revenue": np.round(revenue, -3),
        "company_type": company_type,
        "country": country,
        "freemail": freemail,
        "intent": intent,
        "intent_prior_mean": intent_prior_mean,
        "job_seeker": job_seeker,
        "job_seeker_prior": job_seeker_prior,
    }


def _job_seeker_prior(*, channel: np.ndarray, seniority: np.ndarray) -> np.ndarray:
    """P(job seeker) from what the export shows: students, individual contributors, social."""
    return (
        0.03
        + 0.12 * (seniority == _SEN["student"])
        + 0.03 * (seniority == _SEN["individual_contributor"])
        + 0.02 * (channel == _CH["social"])
    )


def _event_mix_logits(
    *, intent: np.ndarray, job_seeker: np.ndarray, purchased: np.ndarray, student: np.ndarray
) -> np.ndarray:
    """Unnormalised log weights of the _N_MIX event kinds, shape ``intent.shape + (_N_MIX,)``."""
    logw = _MIX_LOGW + _MIX_SLOPE * intent[..., None]
    logw[..., _K_CAREERS] += _CAREERS_JOB_SEEKER * job_seeker
    logw[..., _K_OPEN] += _OPEN_PURCHASED * purchased
    logw[..., _K_DOCS] += _DOCS_STUDENT * student
    return logw


def _engagement(
    rng: np.random.Generator,
    *,
    people: dict[str, np.ndarray],
    created: np.ndarray,
    quarter_starts: np.ndarray,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Latent (untruncated) engagement stream and the per-lead counts the conversion logit uses."""
    n = created.shape[0]
    intent, channel = people["intent"], people["channel"]
    purchased = channel == _CH["purchased_list"]
    tau = _TAU_GRID[rng.integers(0, _TAU_GRID.shape[0], n)]  # per-lead engagement time scale (days)
    volume = rng.gamma(_G_SHAPE, 1.0 / _G_RATE, n)  # per-lead engagement volume multiplier

    # per-lead event-type mix
    logw = _event_mix_logits(
        intent=intent, job_seeker=people["job_seeker"], purchased=purchased, student=people["student"]
    )
    mix = np.exp(logw - logw.max(axis=1, keepdims=True))
    cum = np.cumsum(mix / mix.sum(axis=1, keepdims=True), axis=1)
    del logw, mix

    rate = _EVENT_RATE * np.exp(_EVENT_INTENT * intent) * volume
    counts = rng.poisson(rate)
    lead = np.repeat(np.arange(n, dtype=np.int32), counts)
    kind = _sample_rows(rng, cum, lead)
    del cum
    t = created[lead] + rng.exponential(1.0, lead.shape[0]) * tau[lead] * _MIX_SCALE[kind]

    # the event that created the lead (form fill, content download, webinar registration, landing page)
    first_kind = np.full(n, -1, dtype=np.int8)
    first_kind[channel == _CH["web_form"]] = _K_FORM
    first_kind[channel == _CH["content_download"]] = _K_CONTENT
    first_kind[channel == _CH["webinar"]] = _K_WEB_REG
    landing = np.isin(channel, [_CH["paid_search"], _CH["organic_search"], _CH["social"]])
    landing_kind = np.array([_K_PRODUCT, _K_BLOG, _K_PRICING, _K_PV_OTHER], dtype=np.int8)
    first_kind[landing] = landing_kind[rng.choice(4, size=int(landing.sum()), p=[0.4, 0.3, 0.1, 0.2])]
    has_first = np.flatnonzero(first_kind >= 0).astype(np.int32)
    lead = np.concatenate([has_first, lead])
    kind = np.concatenate([first_kind[has_first], kind])
    t = np.concatenate([created[has_first], t])

    # the webinar of each registration takes place a week later; who attends depends on intent
    reg = np.flatnonzero(kind == _K_WEB_REG)
    attends = rng.random(reg.shape[0]) < _sigmoid(_ATTEND_A + _ATTEND_B * intent[lead[reg]])
    reg_att = reg[attends]
    att_t = t[reg_att] + _WEBINAR_DELAY_DAYS

    # unsubscribe and bounce: at most one each per lead; no e-mail engagement after either
    p_unsub = np.minimum(1.0, _sigmoid(_UNSUB_A + _UNSUB_B * intent) + _UNSUB_PURCHASED * purchased)
    unsub = rng.random(n) < p_unsub
    unsub_t = np.where(unsub, created + rng.exponential(1.0, n) * 2.0 * tau, np.inf)
    bounced = rng.random(n) < 0.01 + 0.05 * purchased
    bounce_t = np.where(bounced, created + rng.exponential(5.0, n), np.inf)
    stop_t = np.minimum(unsub_t, bounce_t)
    email = (kind == _K_OPEN) | (kind == _K_CLICK)
    keep = ~(email & (t > stop_t[lead]))

    # campaigns by quarter of the event: most e-mails belong to a newsletter or nurture campaign, every
    # webinar registration to a webinar (its attendance inherits the campaign)
    campaign = np.full(lead.shape[0], -1, dtype=np.int16)
    mail = np.flatnonzero(email)
    mail = mail[rng.random(mail.shape[0]) < 0.75]
    campaign[mail] = _campaign_code(
        t[mail], quarter_starts, rng.integers(0, len(_EMAIL_THEMES), mail.shape[0])
    )
    campaign[reg] = _campaign_code(
        t[reg], quarter_starts, len(_EMAIL_THEMES) + rng.integers(0, len(_WEBINAR_THEMES), reg.shape[0])
    )

    u_lead, b_lead = np.flatnonzero(unsub).astype(np.int32), np.flatnonzero(bounced).astype(np.int32)
    n_stop = u_lead.shape[0] + b_lead.shape[0]
    ev = {
        "lead": np.concatenate([lead[keep], lead[reg_att], u_lead, b_lead]),
        "t": np.concatenate([t[keep], att_t, unsub_t[u_lead], bounce_t[b_lead]]),
        "kind": np.concatenate(
            [
                kind[keep],
                np.full(reg_att.shape[0], _K_WEB_ATT, np.int8),
                np.full(u_lead.shape[0], _K_UNSUB, np.int8),
                np.full(b_lead.shape[0], _K_BOUNCE, np.int8),
            ]
        ),
        "campaign": np.concatenate([campaign[keep], campaign[reg_att], np.full(n_stop, -1, np.int16)]),
    }
    del lead, t, kind, campaign, keep
    ev_lead, ev_kind, ev_t = ev["lead"], ev["kind"], ev["t"]
    demo = ev_kind == _K_DEMO
    form = ev_kind == _K_FORM
    feats = {
        "n_pricing": np.bincount(ev_lead[ev_kind == _K_PRICING], minlength=n),
        "n_careers": np.bincount(ev_lead[ev_kind == _K_CAREERS], minlength=n),
        "n_attended": np.bincount(ev_lead[ev_kind == _K_WEB_ATT], minlength=n),
        "first_demo_t": _group_min(ev_t[demo], ev_lead[demo], n),
        "first_form_t": _group_min(ev_t[form], ev_lead[form], n),
        "unsubscribed": unsub,
        "bounced": bounced,
        "tau": tau,
        "volume": volume,
    }
    feats["has_demo"] = np.isfinite(feats["first_demo_t"])
    return ev, feats


def _sales_touches(
    rng: np.random.Generator, *, people: dict[str, np.ndarray], feats: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Sales calls, e-mails and meetings after a lead raises its hand, decided on what sales can see.

    A first form fill that comes before any demo request is followed up with a probability driven
    by seniority and company size; a demo request (first, or after an ignored form) with 92 %. The
    decision uses only what has happened by the trigger, never the latent intent, so sales touches
    tell a model nothing about intent beyond the form or demo that triggered them.
    """
    n = people["intent"].shape[0]
    has_demo = feats["has_demo"]
    has_form = np.isfinite(feats["first_form_t"])
    p_form = _form_follow_up_probability(people)
    form_first = has_form & (feats["first_form_t"] < feats["first_demo_t"])
    form_touched = form_first & (rng.random(n) < p_form)
    demo_touched = has_demo & ~form_touched & (rng.random(n) < _DEMO_FOLLOW_UP)
    touched = form_touched | demo_touched
    extra = rng.poisson(np.where(demo_touched, 3.5, 1.8), n)
    count = np.where(touched, np.minimum(1 + extra, 10), 0)
    trigger = np.where(form_touched, feats["first_form_t"], feats["first_demo_t"])

    lead = np.repeat(np.arange(n, dtype=np.int32), count)
    m = lead.shape[0]
    first = np.zeros(m, dtype=bool)
    nz = count > 0
    starts = (np.cumsum(count) - count)[nz]
    first[starts] = True
    gap = np.where(first, _FIRST_TOUCH_MIN_DAYS + rng.exponential(1.0, m), rng.exponential(4.0, m))
    cs = np.cumsum(gap)
    offset = np.repeat(cs[starts] - gap[starts], count[nz])
    t = trigger[lead] + (cs - offset)
    demo_led = demo_touched[lead]
    u = rng.random(m)
    kind = (_K_CALL + (u > np.where(demo_led, 0.35, 0.40)) + (u > np.where(demo_led, 0.75, 0.92))).astype(
        np.int8
    )
    return {
        "lead": lead,
        "t": t,
        "kind": kind,
        "count": count,
        "form_first": form_first,
        "form_touched": form_touched,
        "demo_touched": demo_touched,
        "p_form": p_form,
    }


def _closed_won(
    rng: np.random.Generator,
    *,
    people: dict[str, np.ndarray],
    conv_ns: np.ndarray,
    amount: np.ndarray,
    exported_ns: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Which opportunities are won, when (NaT: lost, open, or won after the export) and for how much.

    About a quarter of opportunities are won, more often at larger companies and with senior buyers,
    15 days or more after the opportunity opens (median ~38), for the opportunity's amount.
    """
    n = conv_ns.shape[0]
    size_z = np.clip(np.log10(people["employee_count"]) - 2.0, -2.0, 2.5)
    p_win = _sigmoid(-1.3 + 0.35 * size_z + 0.25 * _SENIORITY_SALES[people["seniority"]])
    wins = rng.random(n) < p_win
    delay_days = 15.0 + rng.gamma(2.0, 14.0, n)
    won_ns = conv_ns + np.round(delay_days * DAY_NS).astype(np.int64)
    wins &= won_ns <= exported_ns
    won_amount = np.where(wins, amount, np.nan)  # closed at the opportunity's amount
    return np.where(wins, won_ns, np.iinfo(np.int64).min), won_amount


def _form_follow_up_probability(people: dict[str, np.ndarray]) -> np.ndarray:
    """P(sales follows up a lead's first form fill): by seniority and (true) company size."""
    size_z = np.clip(np.log10(people["employee_count"]) - 2.0, -2.0, 2.5)
    return _sigmoid(-0.5 + 0.5 * _SENIORITY_SALES[people["seniority"]] + 0.3 * size_z)


def _market_index(days: np.ndarray, *, span: float, seed: int) -> np.ndarray:
    """The market index on each day (``--drift``): shared by every lead created that day.

    A yearly cycle around 100 (+-4) with a small seeded wobble for the first 75 % of the period, then
    a climb of 60 points per period that takes it out of its earlier range (about 112 at the end).
    """
    n_days = int(np.ceil(span)) + 1
    wobble = np.cumsum(np.random.default_rng([seed, 20_251_126]).normal(0.0, 0.15, n_days))
    wobble -= np.linspace(0.0, 1.0, n_days) * wobble[-1]  # a bridge: no trend from the noise
    day = np.clip(np.floor(days).astype(np.int64), 0, n_days - 1)
    u = day / max(span, 1.0)
    return 100.0 + 4.0 * np.sin(2 * np.pi * day / 365.25) + wobble[day] + 60.0 * np.maximum(u - 0.75, 0.0)


def _intent_logit(*, intent: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """The intent part of the conversion logit: saturating, scaled by the lead's profile."""
    return coef * _INTENT_SATURATION * np.tanh(intent / _INTENT_SATURATION)


def _touch_effects(*, intent: np.ndarray, seniority: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Causal logit effects of a sales follow-up of a form fill and of a demo request."""
    form = _TOUCH_FORM_BASE[seniority] + _TOUCH_FORM_INTENT * intent
    demo = _TOUCH_DEMO_BASE[seniority] + _TOUCH_DEMO_INTENT * intent
    return form, demo


def _size_fit(employee_count: np.ndarray) -> np.ndarray:
    return _SIZE_FIT[np.searchsorted(_SIZE_BANDS, employee_count, side="right") - 1]


def _conversion_logits(
    *,
    people: dict[str, np.ndarray],
    u_period: np.ndarray,
    market: np.ndarray | None,
    touches: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """The additive parts of each lead's conversion logit.

    * ``logit_base = -2.6 - 0.6 * u`` with ``u`` in [0, 1] the position of ``created_at`` in the
      period; with ``--drift`` ``-3.15 + 0.9 * u + 0.03 * (market_index - 100)`` (the base rate climbs
      and follows the market index of the creation day)
    * ``logit_fit = seniority[c_level .5, vp .6, director .45, manager .25, ic 0, student -1.5,
      other -.3] + seniority x department (_SEN_DEPT_FIT: senior people in IT/engineering +1/+1.2,
      in HR -1; technical individual contributors -.4) + company-size band (_SIZE_BANDS/_SIZE_FIT:
      <10 -1.4, 10-49 -.4, 50-199 .5, 200-1999 1.0, 2000-9999 .6, 10000+ -.3) + industry[software .35,
      financial .25, healthcare .1, manufacturing 0, retail -.1, education -.4, government -.3, media
      -.05, telecom .15, other -.15] - 0.7 * freemail - 0.9 * purchased_list`` (true values, not the
      export's missing ones)
    * ``logit_intent = coef * 2.5 * tanh(intent / 2.5)`` with ``coef`` 2.2 for in-profile leads
      (manager or above with a corporate e-mail) and 0.2 for the rest: buying intent drives conversion
      and saturates; engagement (pricing views, demo requests, webinars, unsubscribes, careers
      visits) is how intent shows, not a cause, and it matters much more in profile
    * ``logit_touch``: the causal effect of the sales follow-up the lead gets (``_touch_effects``):
      after a form fill ``form_base[seniority] + 0.4 * intent`` (executives and low intent are put
      off by an early call), after a demo request ``demo_base[seniority] + 0.2 * intent``. The
      effect is on whether the lead converts, not when (the delay stays independent).
    """
    seniority = people["seniority"]
    purchased = people["channel"] == _CH["purchased_list"]
    if market is None:
        base = _BASE_INTERCEPT + _BASE_DRIFT * u_period
    else:
        base = (
            _BASE_INTERCEPT
            + _DRIFT_BASE_OFFSET
            + _DRIFT_BASE_SLOPE * u_period
            + _MARKET_EFFECT * (market - 100.0)
        )
    effect_form, effect_demo = _touch_effects(intent=people["intent"], seniority=seniority)
    return {
        "logit_base": base,
        "logit_fit": _SENIORITY_FIT[seniority]
        + _SEN_DEPT_FIT[seniority, people["department"]]
        + _size_fit(people["employee_count"])
        + _INDUSTRY_FIT[people["industry"]]
        + _FIT_FREEMAIL * people["freemail"]
        + _FIT_PURCHASED * purchased,
        "logit_intent": _intent_logit(intent=people["intent"], coef=_intent_coefficient(people)),
        "logit_touch": np.where(touches["form_touched"], effect_form, 0.0)
        + np.where(touches["demo_touched"], effect_demo, 0.0),
    }


def _intent_coefficient(people: dict[str, np.ndarray]) -> np.ndarray:
    in_profile = _PROFILE_SENIORITIES[people["seniority"]] & ~people["freemail"]
    return np.where(in_profile, _INTENT_EFFECT_IN_PROFILE, _INTENT_EFFECT_OUT_OF_PROFILE)


def _quarters(start_ts: pd.Timestamp, end_ts: pd.Timestamp) -> tuple[np.ndarray, list[str]]:
    """Start of each calendar quarter (days since ``start``) and the campaign names, 8 per quarter."""
    first = pd.Timestamp(year=start_ts.year, month=3 * ((start_ts.month - 1) // 3) + 1, day=1)
    starts = pd.date_range(first, end_ts, freq="QS")
    names = [
        f"{q.year}-Q{q.quarter} {theme}"
        if k < len(_EMAIL_THEMES)
        else f"{q.year}-Q{q.quarter} Webinar: {theme}"
        for q in starts
        for k, theme in enumerate(_EMAIL_THEMES + _WEBINAR_THEMES)
    ]
    return ((starts - start_ts) / pd.Timedelta(days=1)).to_numpy(dtype=float), names


def _campaign_code(t: np.ndarray, quarter_starts: np.ndarray, theme: np.ndarray) -> np.ndarray:
    quarter = np.clip(np.searchsorted(quarter_starts, t, side="right") - 1, 0, quarter_starts.shape[0] - 1)
    return (quarter * (len(_EMAIL_THEMES) + len(_WEBINAR_THEMES)) + theme).astype(np.int16)


def _assemble_activities(
    *,
    ev: dict[str, np.ndarray],
    touches: dict[str, np.ndarray],
    conv_t: np.ndarray,
    span: float,
    lead_ids: pa.Array,
    start_ns: int,
    campaign_names: list[str],
) -> pd.DataFrame:
    """Censor the latent stream at conversion and export, then build the activities table."""
    lead = np.concatenate([ev["lead"], touches["lead"]])
    t = np.concatenate([ev["t"], touches["t"]])
    kind = np.concatenate([ev["kind"], touches["kind"]])
    campaign = np.concatenate([ev["campaign"], np.full(touches["lead"].shape[0], -1, np.int16)])

    # censor at conversion and export, then order by (lead, timestamp) through one packed int64 key
    keep = (t <= conv_t[lead]) & (t <= span)
    # whole seconds; the epsilon absorbs float rounding of created_at (itself a whole second)
    t_s = np.floor(t[keep] * 86_400 + 1e-6).astype(np.int64)
    key = (lead[keep].astype(np.int64) << 34) | t_s
    kind, campaign = kind[keep], campaign[keep]
    del lead, t, t_s, keep
    order = np.argsort(key)
    key, kind, campaign = key[order], kind[order], campaign[order]
    del order
    return pd.DataFrame(
        {
            "lead_id": _series(pc.take(lead_ids, pa.array(key >> 34))),
            "timestamp": (start_ns + (key & ((1 << 34) - 1)) * 10**9).view("datetime64[ns]"),
            "activity_type": _series(_str_array(_ACTIVITY_TYPES, _KIND_TYPE[kind])),
            "page_category": _series(_str_array(_PAGE_CATEGORIES, _KIND_PAGE[kind])),
            "campaign": _series(_str_array(campaign_names, campaign)),
        }
    )


def _assemble_leads(
    rng: np.random.Generator, *, people: dict[str, np.ndarray], lead_ids: pa.Array, created_ns: np.ndarray
) -> pd.DataFrame:
    """Build the exported leads table: fit columns with realistic missingness and PII."""
    n = created_ns.shape[0]
    student = people["student"]
    seniority = people["seniority"]

    title_vocab, title_table = _job_title_table()
    title_code = title_table[seniority, people["department"], rng.integers(0, _TITLE_VARIANTS, n)]
    job_title = _str_array(title_vocab, title_code, null=rng.random(n) < 0.04)
    job_title = pc.if_else(pa.array(rng.random(n) < 0.04), pc.utf8_lower(job_title), job_title)

    dept_missing = rng.random(n) < np.where(student, 0.7, 0.08)
    emp_missing = rng.random(n) < 0.12
    rev_missing = np.where(emp_missing, rng.random(n) < 0.7, rng.random(n) < 0.04)

    # names and e-mail
    first = pa.array(_FIRST_NAMES)
    last = pa.array(_LAST_NAMES)
    fi = rng.integers(0, len(_FIRST_NAMES), n)
    li = rng.integers(0, len(_LAST_NAMES), n)
    first_name, last_name = pc.take(first, pa.array(fi)), pc.take(last, pa.array(li))
    first_l, last_l = pc.utf8_lower(first_name), pc.utf8_lower(last_name)
    local = pc.choose(
        pa.array(
            np.where(
                people["freemail"],
                rng.choice([0, 3, 4], size=n, p=[0.3, 0.35, 0.35]),
                np.where(
                    student,
                    rng.choice([0, 1], size=n, p=[0.7, 0.3]),
                    rng.choice(3, size=n, p=[0.55, 0.3, 0.15]),
                ),
            ).astype(np.int8)
        ),
        pc.binary_join_element_wise(first_l, last_l, "."),
        pc.binary_join_element_wise(pc.utf8_slice_codeunits(first_l, 0, 1), last_l, ""),
        first_l,
        pc.binary_join_element_wise(first_l, last_l, _int_str(rng.integers(1, 100, n)), ""),
        pc.binary_join_element_wise(first_l, last_l, _int_str(rng.integers(1965, 2006, n)), ""),
    )
    n_comp = int(people["n_comp"])
    combos = len(_COMPANY_PREFIX) * len(_COMPANY_SUFFIX) * len(_COMPANY_TAIL)
    combo = rng.permutation(combos)[np.arange(n_comp) % combos]
    dup = np.arange(n_comp) // combos
    pre = combo // (len(_COMPANY_SUFFIX) * len(_COMPANY_TAIL))
    suf = (combo // len(_COMPANY_TAIL)) % len(_COMPANY_SUFFIX)
    tail = combo % len(_COMPANY_TAIL)
    tld = np.where(rng.random(n_comp) < 0.6, 0, people["c_country"])
    comp_domain = pc.binary_join_element_wise(
        pc.take(pa.array(_COMPANY_PREFIX), pa.array(pre)),
        pc.take(pa.array(_COMPANY_SUFFIX), pa.array(suf)),
        pc.take(pa.array(_COMPANY_TAIL), pa.array(tail)),
        _null_where(_int_str(dup + 1), dup == 0).fill_null(""),
        pc.take(pa.array(_COUNTRY_TLD), pa.array(tld)),
        "",
    )
    domains = pa.concat_arrays(
        [comp_domain, pa.array([f"{u}.edu" for u in _UNIVERSITIES]), pa.array(list(FREEMAIL_DOMAINS))]
    )
    free_idx = n_comp + len(_UNIVERSITIES) + rng.choice(len(FREEMAIL_DOMAINS), size=n, p=_FREEMAIL_P)
    dom_idx = np.where(
        people["freemail"], free_idx, np.where(student, n_comp + people["university"], people["company"])
    )
    email = pc.binary_join_element_wise(local, pc.take(domains, pa.array(dom_idx)), "@")
    email = _null_where(email, rng.random(n) < 0.02)

    # phone numbers in the lead's country format
    nanp = np.isin(people["country"], [_COUNTRIES.index("US"), _COUNTRIES.index("CA")])
    dial = pc.take(pa.array(_COUNTRY_DIAL), pa.array(people["country"]))
    phone_nanp = pc.binary_join_element_wise(
        "+1 ",
        _int_str(rng.integers(201, 990, n)),
        "-",
        _int_str(rng.integers(200, 1000, n)),
        "-",
        _int_str(rng.integers(0, 10_000, n), 4),
        "",
    )
    phone_intl = pc.binary_join_element_wise(
        "+",
        dial,
        " ",
        _int_str(rng.integers(10, 100, n)),
        " ",
        _int_str(rng.integers(1_000_000, 10_000_000, n)),
        "",
    )
    phone = _null_where(pc.if_else(pa.array(nanp), phone_nanp, phone_intl), rng.random(n) < 0.28)

    return pd.DataFrame(
        {
            "lead_id": _series(lead_ids),
            "created_at": created_ns.view("datetime64[ns]"),
            "channel": _series(_str_array(_CHANNELS, people["channel"])),
            "job_title": _series(job_title),
            "seniority": _series(_str_array(_SENIORITIES, seniority)),
            "department": _series(_str_array(_DEPARTMENTS, people["department"], null=dept_missing)),
            "country": _series(_str_array(_COUNTRIES, people["country"], null=rng.random(n) < 0.06)),
            "industry": _series(_str_array(_INDUSTRIES, people["industry"], null=rng.random(n) < 0.10)),
            "employee_count": np.where(emp_missing, np.nan, people["employee_count"]),
            "annual_revenue": np.where(rev_missing, np.nan, people["annual_revenue"]),
            "company_type": _series(
                _str_array(_COMPANY_TYPES, people["company_type"], null=rng.random(n) < 0.09)
            ),
            "email": _series(email),
            "first_name": _series(_null_where(first_name, rng.random(n) < 0.005)),
            "last_name": _series(_null_where(last_name, rng.random(n) < 0.01)),
            "phone": _series(phone),
        }
    )
