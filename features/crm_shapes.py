"""The simulator's native export re-shaped as real CRM products write it: Salesforce and HubSpot.

Same leads, same events, same outcomes; only object and field names, activity names, value
vocabularies, date formats and separators change, plus the columns a real export carries that
are set after the fact (lead status, deal stage, owner, close date): leakage a mapping must mark.
``examples/salesforce.yaml`` and ``examples/hubspot.yaml`` map them back through the event mapping.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import numpy as np
import pandas as pd

from leadscore.features.simulator import SimulatedCRM


class CrmShape(StrEnum):
    NATIVE = "native"
    SALESFORCE = "salesforce"
    HUBSPOT = "hubspot"


SALESFORCE_SOURCES = {
    "web_form": "Web",
    "paid_search": "Paid Search",
    "organic_search": "Organic Search",
    "webinar": "Webinar",
    "trade_show": "Trade Show",
    "content_download": "Content Syndication",
    "referral": "Employee Referral",
    "partner": "Partner Referral",
    "social": "Social Media",
    "purchased_list": "Purchased List",
}
SALESFORCE_ACTIVITIES = {
    "page_view": "Page View",
    "form_fill": "Form Success",
    "content_download": "File Download",
    "webinar_registered": "Webinar Registered",
    "webinar_attended": "Webinar Attended",
    "email_open": "Email Open",
    "email_click": "Email Click",
    "demo_request": "Demo Request",
    "sales_call": "Call",
    "sales_email": "Email",
    "sales_meeting": "Meeting",
    "unsubscribe": "Opted Out",
    "bounce": "Email Bounced",
}
SALESFORCE_PAGES = {
    "pricing": "/pricing",
    "product": "/product",
    "docs": "/docs",
    "blog": "/blog",
    "careers": "/careers",
    "other": "/",
}
HUBSPOT_SOURCES = {
    "web_form": "DIRECT_TRAFFIC",
    "paid_search": "PAID_SEARCH",
    "organic_search": "ORGANIC_SEARCH",
    "webinar": "OTHER_CAMPAIGNS",
    "trade_show": "OFFLINE",
    "content_download": "EMAIL_MARKETING",
    "referral": "REFERRALS",
    "partner": "PARTNER",
    "social": "SOCIAL_MEDIA",
    "purchased_list": "IMPORT",
}
HUBSPOT_ACTIVITIES = {
    "page_view": "Page view",
    "form_fill": "Form submission",
    "content_download": "Document viewed",
    "webinar_registered": "Webinar registration",
    "webinar_attended": "Webinar attendance",
    "email_open": "Marketing email opened",
    "email_click": "Marketing email clicked",
    "demo_request": "Demo requested",
    "sales_call": "Call",
    "sales_email": "Email",
    "sales_meeting": "Meeting",
    "unsubscribe": "Unsubscribed",
    "bounce": "Email bounced",
}
HUBSPOT_PAGES = {
    "pricing": "Pricing",
    "product": "Product tour",
    "docs": "Documentation",
    "blog": "Blog",
    "careers": "Careers",
    "other": "Home",
}
HUBSPOT_DATE_FORMAT = "%d/%m/%Y %H:%M:%S"


def _text(values: pd.Series, mapping: dict[str, str]) -> pd.Series:
    return values.map(lambda v: mapping.get(v, v) if isinstance(v, str) else None)


def _iso_z(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values).dt.strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def _sf_ids(prefix: str, n: int) -> np.ndarray:
    return np.array([f"{prefix}{i:015d}" for i in range(1, n + 1)], dtype=object)


def _stages(rng: np.random.Generator, n: int, *, won: str, lost: str, open_: str) -> np.ndarray:
    return rng.choice(np.array([won, lost, open_], dtype=object), size=n, p=[0.3, 0.5, 0.2])


def _won_stage(
    outcomes: pd.DataFrame, drawn: np.ndarray, *, won: str, lost: str
) -> tuple[np.ndarray, pd.Series]:
    """The simulator's won deals say ``won`` (and their won date); the others keep a drawn lost/open stage."""
    won_at = (
        pd.to_datetime(outcomes["won_at"])
        if "won_at" in outcomes
        else pd.Series(pd.NaT, index=outcomes.index)
    )
    is_won = won_at.notna().to_numpy()
    stage = np.where(is_won, won, np.where(drawn == won, lost, drawn)).astype(object)
    return stage, won_at


def to_salesforce(crm: SimulatedCRM, *, seed: int = 0) -> dict[str, pd.DataFrame]:
    """``Lead``, ``Task`` (marketing and sales activities) and ``Opportunity`` objects."""
    rng = np.random.default_rng(seed)
    leads = crm.leads
    ids = pd.Series(_sf_ids("00Q", len(leads)), index=leads.index)
    id_of = dict(zip(leads["lead_id"].astype(str), ids, strict=True))
    converted = set(crm.outcomes["lead_id"].astype(str))
    is_converted = leads["lead_id"].astype(str).isin(converted)
    lead = pd.DataFrame(
        {
            "Id": ids,
            "CreatedDate": _iso_z(leads["created_at"]),
            "LeadSource": _text(leads["channel"], SALESFORCE_SOURCES),
            "Title": leads["job_title"],
            "Seniority__c": leads["seniority"],
            "Department__c": leads["department"],
            "Country": leads["country"],
            "Industry": leads["industry"],
            "NumberOfEmployees": leads["employee_count"],
            "AnnualRevenue": leads["annual_revenue"],
            "Company_Type__c": leads["company_type"],
            "Email": leads["email"],
            "FirstName": leads["first_name"],
            "LastName": leads["last_name"],
            "Phone": leads["phone"],
            # set at export time, i.e. after the outcome: leakage the mapping marks
            "Status": np.where(is_converted, "Closed - Converted", "Working - Contacted"),
            "IsConverted": is_converted.to_numpy(),
            "OwnerId": np.where(
                is_converted, "005A0000001", rng.choice(["005A0000002", "005A0000003"], len(leads))
            ),
        }
    )
    acts = crm.activities
    task = pd.DataFrame(
        {
            "Id": _sf_ids("00T", len(acts)),
            "WhoId": acts["lead_id"].astype(str).map(id_of).to_numpy(),
            "CreatedDate": _iso_z(acts["timestamp"]).to_numpy(),
            "Type": _text(acts["activity_type"], SALESFORCE_ACTIVITIES).to_numpy(),
            "Page_URL__c": _text(acts["page_category"], SALESFORCE_PAGES).to_numpy(),
            "Campaign_Name__c": acts["campaign"].to_numpy() if "campaign" in acts else None,
        }
    )
    outcomes = crm.outcomes
    stage = _stages(rng, len(outcomes), won="Closed Won", lost="Closed Lost", open_="Negotiation/Review")
    stage, won_at = _won_stage(outcomes, stage, won="Closed Won", lost="Closed Lost")
    created = pd.to_datetime(outcomes["converted_at"])
    opportunity = pd.DataFrame(
        {
            "Id": _sf_ids("006", len(outcomes)),
            "ConvertedLeadId__c": outcomes["lead_id"].astype(str).map(id_of).to_numpy(),
            "CreatedDate": _iso_z(outcomes["converted_at"]).to_numpy(),
            "Amount": outcomes["opportunity_amount"].to_numpy(),
            "StageName": stage,
            "CloseDate": won_at.fillna(
                created + pd.to_timedelta(rng.integers(5, 120, len(outcomes)), unit="D")
            )
            .dt.strftime("%Y-%m-%d")
            .to_numpy(),
            "Probability": np.where(stage == "Closed Won", 100, np.where(stage == "Closed Lost", 0, 60)),
            "OwnerId": "005A0000001",
        }
    )
    return {"Lead": lead, "Task": task, "Opportunity": opportunity}


def to_hubspot(crm: SimulatedCRM, *, seed: int = 0) -> dict[str, pd.DataFrame]:
    """``contacts``, ``engagements`` and ``deals`` exports (semicolon-separated, decimal comma)."""
    rng = np.random.default_rng(seed)
    leads = crm.leads
    ids = pd.Series(np.arange(101, 101 + len(leads)).astype(str), index=leads.index)
    id_of = dict(zip(leads["lead_id"].astype(str), ids, strict=True))
    converted_at = crm.outcomes.set_index(crm.outcomes["lead_id"].astype(str))["converted_at"]
    became = leads["lead_id"].astype(str).map(converted_at)
    contacts = pd.DataFrame(
        {
            "Record ID": ids,
            "Create Date": pd.to_datetime(leads["created_at"]).dt.strftime(HUBSPOT_DATE_FORMAT),
            "Original Source": _text(leads["channel"], HUBSPOT_SOURCES),
            "Job Title": leads["job_title"],
            "Seniority": leads["seniority"],
            "Job function": leads["department"],
            "Country/Region": leads["country"],
            "Industry": leads["industry"],
            "Number of Employees": leads["employee_count"],
            "Annual Revenue": leads["annual_revenue"],
            "Company type": leads["company_type"],
            "Email": leads["email"],
            "First Name": leads["first_name"],
            "Last Name": leads["last_name"],
            "Phone Number": leads["phone"],
            # set after the fact: leakage the mapping marks
            "Lifecycle Stage": np.where(became.notna(), "opportunity", "lead"),
            "Became an Opportunity Date": pd.to_datetime(became).dt.strftime(HUBSPOT_DATE_FORMAT),
            "Contact owner": np.where(
                became.notna(), "Sam Seller", rng.choice(["Alex Rep", "Kim Rep"], len(leads))
            ),
        }
    )
    acts = crm.activities
    engagements = pd.DataFrame(
        {
            "Contact ID": acts["lead_id"].astype(str).map(id_of).to_numpy(),
            "Activity date": pd.to_datetime(acts["timestamp"]).dt.strftime(HUBSPOT_DATE_FORMAT).to_numpy(),
            "Activity type": _text(acts["activity_type"], HUBSPOT_ACTIVITIES).to_numpy(),
            "Page title": _text(acts["page_category"], HUBSPOT_PAGES).to_numpy(),
        }
    )
    outcomes = crm.outcomes
    stage = _stages(rng, len(outcomes), won="closedwon", lost="closedlost", open_="contractsent")
    stage, _ = _won_stage(outcomes, stage, won="closedwon", lost="closedlost")
    deals = pd.DataFrame(
        {
            "Deal ID": np.arange(9001, 9001 + len(outcomes)).astype(str),
            "Associated Contact ID": outcomes["lead_id"].astype(str).map(id_of).to_numpy(),
            "Create Date": pd.to_datetime(outcomes["converted_at"])
            .dt.strftime(HUBSPOT_DATE_FORMAT)
            .to_numpy(),
            "Amount": outcomes["opportunity_amount"].to_numpy(),
            "Deal Stage": stage,
            "Deal owner": "Sam Seller",
        }
    )
    return {"contacts": contacts, "engagements": engagements, "deals": deals}


def write_shape(
    crm: SimulatedCRM, *, shape: CrmShape, out_dir: Path, file_format: str = "csv", seed: int = 0
) -> dict[str, Path]:
    """Write the export in ``shape`` to ``out_dir`` (HubSpot: ';' separated, decimal comma)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if shape is CrmShape.NATIVE:
        from leadscore.features.simulator import write_crm

        return write_crm(crm, out_dir=out_dir, file_format=file_format)  # type: ignore[arg-type]
    frames = to_salesforce(crm, seed=seed) if shape is CrmShape.SALESFORCE else to_hubspot(crm, seed=seed)
    paths: dict[str, Path] = {}
    for name, frame in frames.items():
        path = out_dir / f"{name}.{file_format}"
        if file_format == "parquet":
            frame.to_parquet(path, index=False)
        elif shape is CrmShape.HUBSPOT:
            frame.to_csv(path, index=False, sep=";", decimal=",")
        else:
            frame.to_csv(path, index=False)
        paths[name] = path
    return paths
