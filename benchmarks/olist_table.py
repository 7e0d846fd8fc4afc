"""The Olist marketing funnel as one flat lead table (until the export mapping joins leads + deals).

One function, swapped for the mapping's own join once it exists: leads joined to their closed deal,
label = won within ``horizon_days`` of ``first_contact_date``. Only ``origin`` and ``landing_page_id``
are features; every other deal column was recorded during or after the sale (leakage) and is dropped.

A label is only kept where the deals table observed the lead's whole horizon: deals are recorded from
the first ``won_date`` in the file to the last, so a lead whose window starts before the first recorded
deal could have been won unrecorded (its 0 is unknown, not "lost"), and one whose window ends after
the last could still close. Those rows are left out of the written table (the flat path has no
partial labels; the same rule as ``horizon_complete`` for CRM snapshots) and counted in the result.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

LEADS_FILE = "olist_marketing_qualified_leads_dataset.csv"
DEALS_FILE = "olist_closed_deals_dataset.csv"


def write_olist_table(*, olist_dir: Path, output: Path, horizon_days: int = 90) -> pd.DataFrame:
    """Write ``output`` (CSV: mql_id, first_contact_date, origin, landing_page_id, label).

    Returns every lead with ``label_observed`` (1 = written, its whole horizon observed).
    """
    leads = pd.read_csv(olist_dir / LEADS_FILE, dtype=str)
    deals = pd.read_csv(olist_dir / DEALS_FILE, usecols=["mql_id", "won_date"], dtype=str)
    won = pd.to_datetime(deals["won_date"])
    observed_from, observed_until = won.min(), won.max()
    table = leads.merge(deals.assign(won_date=won), on="mql_id", how="left", validate="one_to_one")
    contact = pd.to_datetime(table["first_contact_date"])
    days = (table["won_date"] - contact) / pd.Timedelta(days=1)
    # a deal dated before first contact (one row: a data error) still counts as won at contact
    table["label"] = (days.notna() & (days <= horizon_days)).astype(int)
    window_end = contact + pd.Timedelta(days=horizon_days)
    table["label_observed"] = ((contact >= observed_from) & (window_end <= observed_until)).astype(int)
    out = table.loc[
        :, ["mql_id", "first_contact_date", "origin", "landing_page_id", "label", "label_observed"]
    ]
    output.parent.mkdir(parents=True, exist_ok=True)
    out[out["label_observed"] == 1].drop(columns="label_observed").to_csv(output, index=False)
    return out


MAPPING_YAML = """\
name: olist
source: {{path: {path}, format: csv}}
id_column: mql_id
label: {{column: label, positive_values: [1]}}
created_at_column: first_contact_date
columns:
  origin: {{role: categorical, family: fit, label: Channel, sentence: "Came through {{value}}"}}
  landing_page_id: {{role: categorical, family: fit, label: Landing page,
                    sentence: "Signed up on page {{value}}"}}
"""


def write_olist_mapping(*, table_csv: Path, output: Path) -> Path:
    """A flat-export mapping for the table (created-at column, two categorical fit features)."""
    output.write_text(MAPPING_YAML.format(path=table_csv))
    return output
