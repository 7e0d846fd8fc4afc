"""The contract's vocabularies and the score tiers, as plain enums.

Pandas-free on purpose: the service definition (and the ``bentoml serve`` supervisor that imports
it) uses them without loading pandas, pandera or LightGBM.
"""

from __future__ import annotations

from enum import StrEnum

# Cell texts a CSV export means as "no value": pandas' own default list, written out so that the
# reader and the service use one list whatever the pandas version (see ReadOptions.missing_text).
DEFAULT_MISSING_TEXT: tuple[str, ...] = (
    "",
    "#N/A",
    "#N/A N/A",
    "#NA",
    "-1.#IND",
    "-1.#QNAN",
    "-NaN",
    "-nan",
    "1.#IND",
    "1.#QNAN",
    "<NA>",
    "N/A",
    "NA",
    "NULL",
    "NaN",
    "None",
    "n/a",
    "nan",
    "null",
)


class InputLayout(StrEnum):
    """What a model's feature transform reads: the leads it can score."""

    LEADSCORE = "leadscore"  # leads + timestamped activities in leadscore's own contract
    EVENT_EXPORT = "event_export"  # an export's own lead rows with its own activity rows nested
    FLAT_EXPORT = "flat_export"  # one pre-aggregated export row per lead (no activities)


class Channel(StrEnum):
    """How the lead reached us (its source)."""

    WEB_FORM = "web_form"
    PAID_SEARCH = "paid_search"
    ORGANIC_SEARCH = "organic_search"
    WEBINAR = "webinar"
    TRADE_SHOW = "trade_show"
    CONTENT_DOWNLOAD = "content_download"
    REFERRAL = "referral"
    PARTNER = "partner"
    SOCIAL = "social"
    PURCHASED_LIST = "purchased_list"


class ActivityType(StrEnum):
    """What a lead (or a rep, for sales touches) did."""

    PAGE_VIEW = "page_view"
    FORM_FILL = "form_fill"
    CONTENT_DOWNLOAD = "content_download"
    WEBINAR_REGISTERED = "webinar_registered"
    WEBINAR_ATTENDED = "webinar_attended"
    EMAIL_OPEN = "email_open"
    EMAIL_CLICK = "email_click"
    DEMO_REQUEST = "demo_request"
    SALES_CALL = "sales_call"
    SALES_EMAIL = "sales_email"
    SALES_MEETING = "sales_meeting"
    UNSUBSCRIBE = "unsubscribe"
    BOUNCE = "bounce"


class PageCategory(StrEnum):
    """Category of the page a ``page_view`` was on."""

    PRICING = "pricing"
    PRODUCT = "product"
    DOCS = "docs"
    BLOG = "blog"
    CAREERS = "careers"
    OTHER = "other"


class Seniority(StrEnum):
    C_LEVEL = "c_level"
    VP = "vp"
    DIRECTOR = "director"
    MANAGER = "manager"
    INDIVIDUAL_CONTRIBUTOR = "individual_contributor"
    STUDENT = "student"
    OTHER = "other"


class Tier(StrEnum):
    """What a rep should do with the lead now."""

    SALES_READY = "sales_ready"  # at or above the SQL threshold: call now
    MARKETING_QUALIFIED = "marketing_qualified"  # at or above the MQL threshold: warm, keep nurturing
    NURTURE = "nurture"  # below MQL, fit is fine
    NOT_A_FIT = "not_a_fit"  # below MQL, fit grade D and little engagement
    REVIEW_OUTSIDE_PROFILE = "review_outside_profile"  # below MQL, fit grade D, but highly engaged


class LeadStatus(StrEnum):
    """Where the lead stands before any score: only open leads are scored."""

    OPEN = "open"  # scored
    CONVERTED = "converted"  # already an opportunity: work the opportunity, no score
    DISQUALIFIED = "disqualified"  # closed by sales: no score
    NOT_YET_CREATED = "not_yet_created"  # the as-of time is before the lead existed: nothing to score
