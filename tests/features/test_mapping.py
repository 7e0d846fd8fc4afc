"""Flat mappings on exports as they come: separators, encodings, decimal marks, dirty rows, time axes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from leadscore.features.build import (
    FlatBuildJob,
    TableMetadata,
    TooManyRejects,
    read_table_metadata_model,
)
from leadscore.features.loading import ExportReadError
from leadscore.features.mapping import (
    ColumnMapping,
    ColumnRole,
    ExportMapping,
    FlatFeatureTransform,
    column_sentence,
    label_values,
    not_numbers,
    parse_number_text,
    parse_numbers,
    read_export,
    render_sentence,
)


def make_export(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    visits = rng.poisson(3, n)
    converted = (rng.random(n) < 0.2 + 0.05 * np.minimum(visits, 6)).astype(int)
    return pd.DataFrame(
        {
            "Lead Id": [f"{i:05d}" for i in range(n)],
            "Source": rng.choice(["web", "ads", "event"], n),
            "Visits": visits.astype(float),
            "Economy": rng.normal(-1.5, 1.0, n).round(2),  # negative numbers are fine
            "Calls": rng.choice([0, 1, 2, 999], n),  # 999 = never contacted
            "Notes": rng.choice(["a", "b"], n),
            "Converted": converted,
        }
    )


def write_mapping(folder: Path, export: Path, **extra: object) -> Path:
    mapping: dict[str, object] = {
        "name": "test",
        "source": {"path": str(export)},
        "id_column": "Lead Id",
        "label": {"column": "Converted", "positive_values": [1]},
        "columns": {
            "Source": {"role": "categorical", "label": "Source"},
            "Visits": {
                "role": "numeric",
                "family": "engagement",
                "sentence": "Visited {value:.0f} [time|times]",
            },
            "Economy": {"role": "numeric", "family": "fit"},
            "Calls": {"role": "numeric", "family": "sales", "missing_values": ["999"]},
        },
    }
    mapping.update(extra)
    path = folder / "mapping.yaml"
    path.write_text(yaml.safe_dump(mapping, sort_keys=False))
    return path


def test_plural_forms_in_sentence_templates() -> None:
    assert render_sentence("Visited {value:.0f} [time|times]", 1.0) == "Visited 1 time"
    assert render_sentence("Visited {value:.0f} [time|times]", 3.0) == "Visited 3 times"
    assert render_sentence("{value:.0f} [webinar|webinars] attended", 0.0) == "0 webinars attended"
    m = ColumnMapping(role=ColumnRole.NUMERIC, sentence="Made {value:.0f} [contact|contacts]")
    assert column_sentence("Contacts", m, 1.0) == "Made 1 contact"


def test_semicolon_export_read_with_default_options_names_file_and_separator(tmp_path: Path) -> None:
    export = tmp_path / "leads.csv"
    make_export().to_csv(export, sep=";", index=False)
    mapping_path = write_mapping(tmp_path, export, read={"delimiter": ","})
    with pytest.raises(ExportReadError) as excinfo:
        FlatBuildJob(mapping_path=mapping_path, output=tmp_path / "t.parquet").run()
    message = str(excinfo.value)
    assert str(export) in message and "read.delimiter: ';'" in message


def test_semicolon_and_decimal_comma_are_sniffed_and_read(tmp_path: Path) -> None:
    export = tmp_path / "leads.csv"
    frame = make_export()
    frame.to_csv(export, sep=";", decimal=",", index=False)
    mapping_path = write_mapping(tmp_path, export, read={"decimal": ","})
    result = FlatBuildJob(mapping_path=mapping_path, output=tmp_path / "t.parquet").run()
    table = pd.read_parquet(result.output)
    assert result.rows == len(frame) and result.rejected == 0
    np.testing.assert_allclose(table["economy"].to_numpy(), frame["Economy"].to_numpy(), rtol=1e-6)
    assert (table["economy"] < 0).any()
    # per-column placeholder: 999 means "never contacted" in Calls only
    assert table["calls"].isna().sum() == (frame["Calls"] == 999).sum()
    assert table["calls"].max() == 2


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "is empty"),
        ("Lead Id,Source,Visits,Economy,Calls,Converted\n", "has a header but no data rows"),
    ],
)
def test_empty_and_header_only_files_are_named(tmp_path: Path, content: str, expected: str) -> None:
    export = tmp_path / "leads.csv"
    export.write_text(content)
    with pytest.raises(ExportReadError) as excinfo:
        FlatBuildJob(mapping_path=write_mapping(tmp_path, export), output=tmp_path / "t.parquet").run()
    assert str(export) in str(excinfo.value) and expected in str(excinfo.value)


def test_latin1_export_gets_an_encoding_hint(tmp_path: Path) -> None:
    export = tmp_path / "leads.csv"
    frame = make_export(50)
    frame["Source"] = "Säo Paulo"
    frame.to_csv(export, index=False, encoding="latin-1")
    with pytest.raises(ExportReadError, match="latin-1"):
        read_export(export)
    mapping = ExportMapping.model_validate(
        yaml.safe_load(write_mapping(tmp_path, export, read={"encoding": "latin-1"}).read_text())
    )
    assert read_export(export, mapping=mapping)["Source"].iloc[0] == "Säo Paulo"


def test_dirty_rows_go_to_rejects_with_line_numbers_and_reason(tmp_path: Path) -> None:
    export = tmp_path / "leads.csv"
    frame = make_export(400).astype({"Visits": object})
    frame.loc[7, "Visits"] = "ten"  # line 9 of the file
    frame.loc[20, "Converted"] = None  # line 22
    frame.to_csv(export, index=False)
    mapping_path = write_mapping(tmp_path, export)
    result = FlatBuildJob(mapping_path=mapping_path, output=tmp_path / "t.parquet").run()
    assert result.rows == 398 and result.rejected == 2
    rejects = pd.read_csv(result.rejects_file)
    lines = export.read_text().splitlines()
    by_line = {int(r["line"]): r for r in rejects.to_dict(orient="records")}
    assert set(by_line) == {9, 22}
    assert "not a number, got 'ten'" in by_line[9]["problem"] and by_line[9]["value"] == "ten"
    assert "ten" in lines[9 - 1] and by_line[22]["problem"] == "missing label"
    assert "00007" not in set(pd.read_parquet(result.output)["lead_id"])


def test_an_export_as_it_comes_loses_only_what_cannot_be_read(tmp_path: Path) -> None:
    """A byte order mark, a blank line, a header repeated where two files were joined, a line with
    stray separators, a row exported twice and a quoted line break: the build goes on, every line
    set aside is named by its own line number, and nothing else is lost."""
    export = tmp_path / "leads.csv"
    frame = make_export(300)
    frame.loc[5, "Notes"] = "called twice,\nno answer"  # a quoted line break: row 5 spans 2 lines
    header = ",".join(frame.columns)
    rows = [
        frame.iloc[[i]].to_csv(header=False, index=False, lineterminator="\n").rstrip("\n")
        for i in range(300)
    ]
    body = [
        header,
        *rows[:10],
        "",
        *rows[10:20],
        header,
        *rows[20:30],
        rows[30] + ",x,y",
        rows[30],
        *rows[31:],
    ]
    body.insert(body.index(rows[40]) + 1, rows[40])  # exported twice, cell for cell
    export.write_bytes(("\ufeff" + "\n".join(body) + "\n").encode("utf-8"))
    physical = export.read_text(encoding="utf-8-sig").splitlines()
    mapping_path = write_mapping(tmp_path, export, max_reject_share=0.02)
    result = FlatBuildJob(mapping_path=mapping_path, output=tmp_path / "t.parquet").run()
    rejects = pd.read_csv(result.rejects_file)
    by_problem = {r["problem"]: r for r in rejects.to_dict(orient="records")}
    repeated = by_problem["unreadable line: the header repeated (files joined?)"]
    assert physical[int(repeated["line"]) - 1] == header
    width = len(frame.columns)
    stray = by_problem[f"unreadable line: expected {width} fields, saw {width + 2}"]
    assert physical[int(stray["line"]) - 1].endswith(",x,y")
    twice = by_problem["repeats an earlier row exactly (the first copy is kept)"]
    assert physical[int(twice["line"]) - 1] == physical[int(twice["line"]) - 2] == rows[40]
    assert len(rejects) == 3 and result.rejected == 3
    table = pd.read_parquet(result.output)
    assert len(table) == 300 and table["lead_id"].is_unique  # every lead once, none lost


def test_an_export_run_twice_is_read_once(tmp_path: Path) -> None:
    """Every row twice, cell for cell: nothing is lost, so the reject share does not stop the build."""
    export = tmp_path / "leads.csv"
    frame = make_export(200)
    pd.concat([frame, frame]).to_csv(export, index=False)
    result = FlatBuildJob(mapping_path=write_mapping(tmp_path, export), output=tmp_path / "t.parquet").run()
    table = pd.read_parquet(result.output)
    assert len(table) == 200 and table["lead_id"].is_unique
    rejects = pd.read_csv(result.rejects_file)
    assert len(rejects) == 200 and set(rejects["line"]) == set(range(202, 402))


def test_a_report_export_s_footer_is_set_aside_without_stopping_the_build(tmp_path: Path) -> None:
    """Report exports end with notes ("Generated By", a copyright line): 5 lines on 150 rows, over
    the 1% reject share, yet no data: the build goes on and lists them."""
    export = tmp_path / "leads.csv"
    make_export(150).to_csv(export, index=False)
    footer = [
        '""',
        '"Generated By:","A. Rep","11/26/2026 10:00 AM"',
        '"Acme Inc."',
        '"Copyright (c) 2000-2026 salesforce.com, inc. All rights reserved."',
        '"Confidential Information - Do Not Distribute"',
    ]
    export.write_text(export.read_text() + "\n".join(footer) + "\n")
    result = FlatBuildJob(mapping_path=write_mapping(tmp_path, export), output=tmp_path / "t.parquet").run()
    assert len(pd.read_parquet(result.output)) == 150
    rejects = pd.read_csv(result.rejects_file)
    assert rejects["line"].tolist() == [152, 153, 154, 155, 156]
    assert set(rejects["problem"]) == {
        "not data: a footer line after the table (fewer fields than the header)"
    }


def test_too_many_dirty_rows_stop_the_build_listing_every_problem(tmp_path: Path) -> None:
    export = tmp_path / "leads.csv"
    frame = make_export(200).astype({"Visits": object})
    frame.loc[[3, 4, 5], "Visits"] = "ten"
    frame.loc[10, "Lead Id"] = frame.loc[11, "Lead Id"]
    frame.to_csv(export, index=False)
    with pytest.raises(TooManyRejects) as excinfo:
        FlatBuildJob(mapping_path=write_mapping(tmp_path, export), output=tmp_path / "t.parquet").run()
    message = str(excinfo.value)
    assert "export 2.5%" in message and "1.0%" in message
    assert (
        "duplicate id" in message and "not a number, got 'ten'" in message and "at lines: 5, 6, 7" in message
    )
    # a higher allowed share lets the same file through
    path = write_mapping(tmp_path, export, max_reject_share=0.05)
    assert FlatBuildJob(mapping_path=path, output=tmp_path / "t.parquet").run().rejected == 5


def test_export_without_id_column_gets_synthetic_line_ids(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    export = tmp_path / "leads.csv"
    make_export(100).drop(columns=["Lead Id"]).to_csv(export, index=False)
    mapping = yaml.safe_load(write_mapping(tmp_path, export).read_text())
    del mapping["id_column"]
    (tmp_path / "mapping.yaml").write_text(yaml.safe_dump(mapping))
    with caplog.at_level("WARNING"):
        result = FlatBuildJob(mapping_path=tmp_path / "mapping.yaml", output=tmp_path / "t.parquet").run()
    table = pd.read_parquet(result.output)
    assert table["lead_id"].iloc[0] == "row-2" and table["lead_id"].iloc[-1] == "row-101"
    assert any("synthetic ids" in r.message for r in caplog.records)


def test_synthetic_ids_are_the_file_s_own_line_numbers_across_blank_and_set_aside_lines(
    tmp_path: Path,
) -> None:
    export = tmp_path / "leads.csv"
    lines = make_export(200).drop(columns=["Lead Id"]).to_csv(index=False).splitlines()
    lines.insert(3, "")  # a blank line: rows after it sit one line further down
    lines.insert(5, "web,1,2,3,a,0,extra,fields")  # a line with too many fields, set aside
    export.write_text("\n".join(lines) + "\n")
    mapping = yaml.safe_load(write_mapping(tmp_path, export, max_reject_share=0.5).read_text())
    del mapping["id_column"]
    (tmp_path / "mapping.yaml").write_text(yaml.safe_dump(mapping))
    result = FlatBuildJob(mapping_path=tmp_path / "mapping.yaml", output=tmp_path / "t.parquet").run()
    ids = pd.read_parquet(result.output)["lead_id"].tolist()
    assert ids[:5] == ["row-2", "row-3", "row-5", "row-7", "row-8"]
    assert len(ids) == 200 and ids[-1] == "row-203"


def test_unmapped_columns_are_listed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    export = tmp_path / "leads.csv"
    make_export(100).to_csv(export, index=False)
    with caplog.at_level("WARNING"):
        FlatBuildJob(mapping_path=write_mapping(tmp_path, export), output=tmp_path / "t.parquet").run()
    assert any("Notes" in r.message and "not in the mapping" in r.message for r in caplog.records)


@pytest.mark.parametrize(
    ("extra", "axis", "horizon"),
    [
        ({}, "none", None),
        ({"rows_in_time_order": True, "label_horizon_days": 30}, "row_order", 30),
        ({"order_column": "Seq"}, "row_order", None),
    ],
)
def test_time_axis_and_horizon_in_the_table_metadata(
    tmp_path: Path, extra: dict[str, object], axis: str, horizon: int | None
) -> None:
    export = tmp_path / "leads.csv"
    frame = make_export(120)
    frame["Seq"] = np.arange(120)[::-1] * 10  # the file is newest first
    frame.to_csv(export, index=False)
    result = FlatBuildJob(
        mapping_path=write_mapping(tmp_path, export, **extra), output=tmp_path / "t.parquet"
    ).run()
    meta = read_table_metadata_model(result.output)
    raw = json.loads(result.output.with_suffix(".meta.json").read_text())
    assert meta.time_axis == axis == raw["time_axis"]
    assert raw["snapshot_policy"]["horizon_days"] == horizon  # never 0
    table = pd.read_parquet(result.output)
    if axis == "row_order":
        assert pd.api.types.is_integer_dtype(table["row_order"].dtype)
        expected = np.arange(120)[::-1] if "order_column" in extra else np.arange(120)
        np.testing.assert_array_equal(table["row_order"].to_numpy(), expected)
    else:
        assert "row_order" not in table.columns


def test_metadata_model_rejects_contradictions() -> None:
    with pytest.raises(ValueError, match="contradicts"):
        TableMetadata(
            mode="flat", time_axis="row_order", has_time=True, snapshot_policy={"horizon_days": None}
        )
    with pytest.raises(ValueError):
        TableMetadata(mode="flat", time_axis="none", has_time=False, snapshot_policy={"horizon_days": 0})


def test_mapping_rejects_two_time_axes(tmp_path: Path) -> None:
    export = tmp_path / "leads.csv"
    data = yaml.safe_load(
        write_mapping(tmp_path, export, rows_in_time_order=True, order_column="Seq").read_text()
    )
    with pytest.raises(ValueError, match="at most one"):
        ExportMapping.model_validate(data)


def test_flat_transform_keeps_negative_numbers_and_decimal_comma_at_scoring(tmp_path: Path) -> None:
    export = tmp_path / "leads.csv"
    data = yaml.safe_load(write_mapping(tmp_path, export, read={"decimal": ","}).read_text())
    transform = FlatFeatureTransform(ExportMapping.model_validate(data))
    rows = pd.DataFrame(
        {"Lead Id": ["1"], "Source": ["web"], "Visits": ["1,5"], "Economy": [-2.25], "Calls": [999]}
    )
    features = transform.features(rows)
    assert features["visits"].iloc[0] == pytest.approx(1.5)
    assert features["economy"].iloc[0] == pytest.approx(-2.25)
    assert np.isnan(features["calls"].iloc[0])
    assert transform.sentence("visits", {"visits": 1.0}) == "Visited 1 time"


@given(
    st.text(alphabet="0123456789.,-+e _$abcinfINF", max_size=12),
    st.sampled_from([(".", None), (",", "."), (".", ","), (",", " ")]),
)
@settings(max_examples=300, deadline=None)
def test_one_value_reads_as_the_column_reads_it(text: str, marks: tuple[str, str | None]) -> None:
    """The service checks a record's value one at a time: it must read what training reads."""
    decimal, thousands = marks
    one = parse_number_text(text, decimal=decimal, thousands=thousands)
    column = parse_numbers(pd.Series([text, "1"]), decimal=decimal, thousands=thousands).iloc[0]
    assert (one is None and pd.isna(column)) or one == column


def test_infinite_and_float32_overflowing_numbers_are_rejected_rows() -> None:
    values = pd.Series(["1.5", "inf", "-inf", "1e39", "", "Select", "ten"])
    assert not_numbers(values, missing={"", "Select"}).tolist() == [
        False,
        True,
        True,
        True,
        False,
        False,
        True,
    ]


def test_numbers_sent_as_numbers_are_never_read_through_the_separators() -> None:
    """A JSON record mixing 1.5 with "2,5" (a decimal-comma export): 1.5 stays 1.5, not 15."""
    mixed = pd.Series([1.5, "n/a", "2,5", 3, "1.234,5"], dtype=object)
    parsed = parse_numbers(mixed, decimal=",", thousands=".")
    assert parsed.iloc[[0, 2, 3, 4]].tolist() == [1.5, 2.5, 3.0, 1234.5] and pd.isna(parsed.iloc[1])


def test_missing_text_reads_the_same_in_a_csv_and_in_records_a_crm_sends(tmp_path: Path) -> None:
    """Train/serve parity: every text the CSV reader takes for "no value" (NA, NULL, nan, #N/A...)
    is no value in a record sent to the service too, in numeric and categorical columns alike."""
    from leadscore.features.vocabulary import DEFAULT_MISSING_TEXT
    from leadscore.serving.engine import _record_value_problem

    tokens = [t for t in DEFAULT_MISSING_TEXT if t]
    export = tmp_path / "leads.csv"
    lines = ["Lead Id,Source,Visits,Economy,Calls,Notes,Converted"]
    lines += [f"{i:05d},{token},{token},1.5,2,a,{i % 2}" for i, token in enumerate(tokens)]
    lines += ["09998,web,3,1.5,2,a,1", "09999,ads,4,-1,999,b,0"]
    export.write_text("\n".join(lines) + "\n")
    mapping = ExportMapping.model_validate(yaml.safe_load(write_mapping(tmp_path, export).read_text()))
    transform = FlatFeatureTransform(mapping)
    frame = read_export(export, mapping=mapping)
    trained = transform.features(frame)
    records = [
        dict(zip(lines[0].split(","), line.split(","), strict=True)) for line in lines[1:]
    ]  # what a CRM sends: the cells' own text
    served = transform.features_from_records(pd.DataFrame.from_records(records))
    pd.testing.assert_frame_equal(served.drop(columns="as_of"), trained.drop(columns="as_of"))
    assert trained["source"].iloc[: len(tokens)].isna().all()
    assert trained["visits"].iloc[: len(tokens)].isna().all()
    assert trained["source"].iloc[-2:].tolist() == ["web", "ads"]
    for token in tokens:  # the service accepts what training read as missing
        assert _record_value_problem(token, "numeric", mapping.missing_for("Visits")) is None


def test_missing_text_can_be_narrowed_so_na_stays_a_value(tmp_path: Path) -> None:
    """``read.missing_text: ['']`` keeps "NA" (Namibia) a category, in the file and at serving."""
    export = tmp_path / "leads.csv"
    export.write_text(
        "Lead Id,Source,Visits,Economy,Calls,Notes,Converted\n00001,NA,1,0.5,2,a,1\n00002,web,,0.5,2,a,0\n"
    )
    path = write_mapping(tmp_path, export, read={"missing_text": [""]}, missing_values=[""])
    mapping = ExportMapping.model_validate(yaml.safe_load(path.read_text()))
    frame = read_export(export, mapping=mapping)
    transform = FlatFeatureTransform(mapping)
    assert transform.features(frame)["source"].tolist() == ["NA", "web"]
    record = {"Lead Id": "00001", "Source": "NA", "Visits": "1", "Economy": "0.5", "Calls": "2"}
    assert transform.features_from_records(pd.DataFrame.from_records([record]))["source"].tolist() == ["NA"]
    assert "NA" not in mapping.missing_for("Source")


def test_a_model_pickled_before_missing_text_existed_loads_with_the_default() -> None:
    """Registered models hold their mapping pickled: one saved without the field still scores."""
    import pickle

    from leadscore.features.mapping import ReadOptions
    from leadscore.features.vocabulary import DEFAULT_MISSING_TEXT

    options = ReadOptions(decimal=",")
    state = options.__getstate__()
    del state["__dict__"]["missing_text"]  # as an older version saved it
    old = ReadOptions.__new__(ReadOptions)
    old.__setstate__(state)
    assert old.missing_text == DEFAULT_MISSING_TEXT and old.decimal == ","
    assert pickle.loads(pickle.dumps(old)) == options


def test_narrowed_missing_text_keeps_placeholder_labels_missing_not_negative() -> None:
    labels = label_values(
        pd.Series(["1", "N/A", "0", "NULL", " "]), positive_values=(1,), missing_values=("N/A", "NULL")
    )
    assert labels.tolist()[:3] == [1, pd.NA, 0] and labels.isna().tolist() == [False, True, False, True, True]


def test_missing_text_holds_texts_and_always_the_empty_cell() -> None:
    from leadscore.features.mapping import ReadOptions

    assert ReadOptions(missing_text=["NA"]).missing_text == ("", "NA")
    with pytest.raises(ValueError, match="missing_values"):
        ReadOptions(missing_text=["NA", "999"])


def test_a_client_cell_is_no_value_exactly_when_the_reader_would_say_so() -> None:
    from leadscore.features.mapping import ReadOptions

    options = ReadOptions(missing_text=["NA", "NULL"])
    assert [options.is_missing_text(v) for v in (None, "", "  ", " NA ", "NULL", "null", "0", 0)] == [
        True,
        True,
        True,
        True,
        True,
        False,
        False,
        False,
    ]
