"""The value decoders of the ZenML SQL registry: names, configuration, metadata, ids, times."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from providers.zenml_sql import as_utc, decode_configuration, decode_metadata_value, hex_id, original_name

names = st.text(alphabet=st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789_-"), min_size=1, max_size=40)
configs = st.dictionaries(st.text(min_size=1, max_size=10), st.one_of(st.text(max_size=10), st.integers(), st.booleans()))


@given(names, st.uuids(version=4))
def test_archive_suffix_is_stripped_from_archived_rows_only(name: str, suffix: uuid.UUID) -> None:
    stored = f"{name}_{suffix}"  # exactly how ZenML renames: f"{schedule.name}_{uuid.uuid4()}"
    assert original_name(stored, archived=True) == name
    assert original_name(stored, archived=False) == stored


@given(names)
def test_names_without_a_suffix_stay(name: str) -> None:
    assert original_name(name, archived=True) == name


def test_a_near_miss_suffix_stays() -> None:
    assert original_name("etl_daily_0123", archived=True) == "etl_daily_0123"
    assert original_name("etl_daily_deadbeef-0000-4000-8000-00000000000", archived=True) == (
        "etl_daily_deadbeef-0000-4000-8000-00000000000"
    )


@given(configs)
def test_configuration_base64_json_and_plain_json(config: dict[str, object]) -> None:
    encoded = json.dumps(config).encode()
    assert decode_configuration(base64.b64encode(encoded)) == config
    assert decode_configuration(encoded) == config
    assert decode_configuration(encoded.decode()) == config


def test_configuration_garbage_is_none_not_a_guess() -> None:
    assert decode_configuration(b"\xff\x00 not json") is None
    assert decode_configuration(base64.b64encode(b"[1, 2]")) is None  # not a mapping
    assert decode_configuration(None) == {}


def test_metadata_values_are_json_decoded() -> None:
    assert decode_metadata_value('"zenml-0a1b2c3d-k8s-batch"') == "zenml-0a1b2c3d-k8s-batch"
    assert decode_metadata_value('{"a": 1}') == {"a": 1}
    assert decode_metadata_value("not json") == "not json"


@given(st.uuids())
def test_ids_in_every_driver_shape(value: uuid.UUID) -> None:
    assert hex_id(value.hex) == value.hex
    assert hex_id(str(value)) == value.hex
    assert hex_id(value) == value.hex
    assert hex_id(value.bytes) == value.hex
    assert hex_id(value.hex.upper().encode()) == value.hex


def test_naive_times_are_utc_and_aware_ones_converted() -> None:
    naive = datetime(2024, 3, 1, 12, 0)
    assert as_utc(naive) == datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)
    assert as_utc(naive).tzinfo is timezone.utc  # type: ignore[union-attr]
    plus_two = datetime(2024, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    assert as_utc(plus_two) == datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)
    assert as_utc(plus_two).tzinfo is timezone.utc  # type: ignore[union-attr]
    assert as_utc(None) is None
